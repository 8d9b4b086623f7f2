"""The ensemble kernel: one point at a time equals whole arrays, warm-up, incidents with hysteresis, gaps, models
arriving mid-stream, and `augur detect`'s causality."""

import csv
import math

import numpy as np
import pytest

from augur.detect import TrainingPolicy, detect, read_series, InputError
from models.ensemble_scorer import EnsembleScorer, Models, detectors_list, explain
from udfs import ensemble as ens, lstm
from udfs.ensemble_params import DETECTORS, EnsembleParams

T0 = 1_700_000_000.0


def _series(n=3000, seed=11):
    rng = np.random.default_rng(seed)
    t = T0 + 300.0 * np.arange(n)
    y = 100 + 10 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 1, n)
    return t, y


def test_point_by_point_equals_batch_and_fills_every_detector():
    t, y = _series()
    y[1500:1520] += 30
    y[::97] = np.nan
    params = EnsembleParams()
    season = np.array([T0, 86400.0 * 10, 1.0, 0.0, 100.0, 0.0, 1.0, 1.0, 0.0, 10.0])   # a known model
    a = EnsembleScorer(params, Models(season=season))
    batch = a.score(y, t)
    b = EnsembleScorer(params, Models(season=season))
    p = params.to_array()
    raw, probs = np.empty(ens.N_DET), np.empty(ens.N_DET)
    for i in range(len(y)):
        score, verdict, onset, expected = ens.step(b.state, p, season, np.empty(0), y[i], t[i], raw, probs)
        assert (math.isnan(score) and math.isnan(batch.score[i])) or score == batch.score[i]
        assert verdict == batch.verdict[i] and onset == batch.onset[i]
        np.testing.assert_array_equal(probs, batch.probs[i])
    np.testing.assert_array_equal(a.state, b.state)
    ready = batch.probs[-1]
    assert np.isfinite(ready[:4]).all() and math.isnan(ready[4])     # no LSTM model: it abstains
    assert np.all((batch.score[np.isfinite(batch.score)] >= 0) & (batch.score[np.isfinite(batch.score)] <= 1))


def test_warm_up_then_one_incident_for_a_long_anomaly():
    t, y = _series()
    y[2000:2100] += 40                      # a level shift of 100 points (8 h)
    s = EnsembleScorer(EnsembleParams()).score(y, t)
    assert (s.verdict[:20] == ens.VERDICT_WARMUP).all()
    inside = s.onset[2000:2100]
    assert inside.sum() == 1 and inside[:3].any()       # flagged at once, as one incident, not once per point
    assert (s.verdict[2000:2006] == ens.VERDICT_ANOMALY).all()
    assert s.onset[:2000].sum() <= 2                    # quiet before


def test_nan_and_inf_inputs_do_not_poison_the_state():
    t, y = _series(1000)
    scorer = EnsembleScorer(EnsembleParams())
    scorer.score(y[:500], t[:500])
    before = scorer.state.copy()
    s = scorer.score(np.array([np.nan]), t[500:501])
    assert math.isnan(s.score[0]) or s.score[0] >= 0
    assert np.isfinite(scorer.state[np.isfinite(before)]).all()
    after = scorer.score(y[501:], t[501:])
    assert np.isfinite(after.score[-100:]).all()


def test_models_can_arrive_without_changing_the_state_layout():
    t, y = _series(1200)
    scorer = EnsembleScorer(EnsembleParams())
    scorer.score(y[:600], t[:600])
    size = scorer.state.shape
    weights = np.concatenate([[8, 100.0, 7.0], np.zeros(lstm.weights_size(8) - 3)])
    assert lstm.hidden_size(weights[:-1]) == 0          # a truncated model is no model (never read past its end)
    scorer.adopt(Models(lstm=weights, version="test"), y[500:600])
    assert scorer.state.shape == size
    s = scorer.score(y[600:], t[600:])
    assert np.isfinite(s.probs[-1, DETECTORS.index("lstm")])


def test_combiners_and_explanation():
    probs = np.array([0.999, 0.9999, np.nan, 0.2, 0.5, np.nan])
    for name, expected in (("mean", (0.999 + 0.9999 + 0.2 + 0.5) / 4), ("max", 0.9999), ("vote", 0.5),
                           ("top2", (0.9999 + 0.999) / 2), ("views", (0.9999 + 0.999) / 2)):
        p = EnsembleParams(combiner=name)
        score, ready = ens.combine(p.to_array(), probs)
        assert ready == 4 and score == pytest.approx(expected)
    # the forecast-residual detectors (ewma, seasonal, lstm) agreeing are one kind of evidence: one view
    residuals_only = np.array([0.1, 0.9999, 0.2, 0.999, 0.9995, 0.3])
    assert ens.combine(EnsembleParams(combiner="top2").to_array(), residuals_only)[0] == pytest.approx(0.99970)
    assert ens.combine(EnsembleParams(combiner="views").to_array(), residuals_only)[0] == pytest.approx(
        (0.9999 + 0.3) / 2)
    assert ens.combine(EnsembleParams(combiner="views").to_array(), np.array([np.nan, 0.9, np.nan, 0.8, np.nan,
                                                                             np.nan])) == (0.9, 2)  # one view ready
    p = EnsembleParams()
    listed = detectors_list(np.array([9.0, 8.0, np.nan, 1.0, 2.0, np.nan]), probs, p, ["a", "b", "c", "d", "e", "f"])
    assert [d["name"] for d in listed] == ["robust_z", "ewma", "seasonal", "lstm"]
    assert [d["vote"] for d in listed] == [True, True, False, False]
    text = explain("cpu busy", 97.0, 40.0, probs, p)
    assert "above the expected 40" in text and "2 of 4 detectors vote anomaly" in text and "ewma 1.000" in text


def test_only_one_detector_for_ablation():
    p = EnsembleParams().only("cusum")
    assert p.weights == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0) and p.min_detectors == 1
    with pytest.raises(ValueError):
        EnsembleParams(combiner="median")


def test_detect_is_causal_a_prefix_scores_the_same():
    t, y = _series(1400, seed=12)
    y[1000:1010] -= 25
    policy = TrainingPolicy(train_after=300, retrain_every=400)
    full = detect(t, y, EnsembleParams(), policy)
    prefix = detect(t[:1050], y[:1050], EnsembleParams(), policy)
    np.testing.assert_array_equal(prefix.score, full.score[:1050])
    np.testing.assert_array_equal(prefix.probs, full.probs[:1050])
    assert np.isfinite(full.probs[-1]).all()            # all five detectors ready once models are trained
    assert full.onset[1000:1012].any()


def test_detect_cli_writes_one_row_per_input_row(tmp_path, capsys):
    from augur.cli import main
    t, y = _series(900)
    src = tmp_path / "in.csv"
    with open(src, "w") as f:
        f.write("timestamp,value\n")
        for ti, yi in zip(t, y):
            f.write(f"{int(ti)},{yi}\n")
        f.write(f"{int(t[-1]) + 300},not-a-number\n")
    out = tmp_path / "out.csv"
    assert main(["detect", "--input", str(src), "--output", str(out), "--no-lstm", "--train-after", "300"]) == 0
    assert "901 rows (1 without a usable value, scored as gaps)" in capsys.readouterr().err
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 901
    assert set(rows[0]) >= {"timestamp", "value", "anomaly_score", "is_anomaly", *[f"score_{d}" for d in DETECTORS]}
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert rows[-1]["value"] == "" and rows[-1]["score_ewma"] == ""      # the unreadable value is a gap
    back = tmp_path / "bad.csv"
    back.write_text("timestamp,value\n2024-01-01 00:05:00,1\n2024-01-01 00:00:00,2\n")
    with pytest.raises(InputError, match="backwards at row 3"):
        read_series(back)
    assert main(["detect", "--input", str(back)]) == 2
    assert "backwards" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n")
    assert main(["detect", "--input", str(empty)]) == 2
    assert "no rows" in capsys.readouterr().err
    assert main(["detect", "--input", str(src), "--train-after", "0"]) == 2


def test_keyed_state_of_another_layout_starts_fresh_rather_than_being_read_out_of_place():
    from augur.config import Config
    from jobs import host_state, steps
    scorer = steps.EnsembleFeatureScorer.from_config(Config())
    fresh = scorer.init_state()
    assert scorer.restored(None).shape == fresh.shape
    kept = fresh.copy()
    kept[0] = 1.0
    assert scorer.restored(kept.tolist())[0] == 1.0                 # the same layout: kept as it is
    old = np.ones(685)                                               # a savepoint of the five-detector kernel
    assert np.array_equal(scorer.restored(old.tolist()), fresh, equal_nan=True)
    hosts = host_state.HostScorer(host_state.HostParams(window=30), None)
    assert np.array_equal(hosts.restored(host_state.HostScorer(host_state.HostParams(), None).init_state()),
                          hosts.init_state(), equal_nan=True)


def test_the_alert_score_is_the_score_except_inside_an_open_incident():
    t, y = _series()
    y[1500:1540] += 30                                                # a long anomaly
    s = EnsembleScorer(EnsembleParams()).score(y, t)
    alert = s.alert()
    inside = (s.verdict == ens.VERDICT_ANOMALY) & ~s.onset
    assert s.onset[1500:1510].any() and inside[1500:1540].sum() >= 3
    assert np.all(alert[inside] == 0.0)
    np.testing.assert_array_equal(alert[~inside], s.score[~inside])  # NaN (warm-up) included
    assert np.all(alert[s.onset] >= EnsembleParams().enter)           # an incident's first point keeps its score


def test_a_state_of_layout_1_is_carried_over_and_scores_on_exactly_as_it_would_have():
    """``tests/data/ensemble_layout1.npz`` was written by the ensemble of be3fb22 (layout 1: Fenwick trees in the
    calibrators, no layout tag), with counts halved every 300 scores so that the carried-over counts are halved
    ones: a series' state after 2,000 points, what that code gave for the next 1,000 (an incident and a gap among
    them) and its state after them. A savepoint of the stream holds such states."""
    from pathlib import Path
    from udfs import calibration
    from udfs.ensemble_params import N_PARAMS, P_BINS, P_CAL_HI, P_CAL_LO
    f = np.load(Path(__file__).parent / "data" / "ensemble_layout1.npz", allow_pickle=False)
    p = f["params"]   # packed by that code, before the calibrators' bin edges joined the array
    with pytest.raises(ValueError, match="bin edges"):
        ens.init_state(p)
    p = np.concatenate([p[:N_PARAMS], calibration.edges(int(p[P_BINS]), p[P_CAL_LO], p[P_CAL_HI])])
    state = ens.restore(f["state"], p)
    assert state is not None and state.shape[0] == f["state"].shape[0] + 1
    assert state[ens.S_LAYOUT] == ens.init_state(p)[ens.S_LAYOUT]
    scores, verdicts, _, _, _, probs = ens.score_batch(state, p, f["season"], f["lstm"], f["x"], f["t"])
    assert (f["verdicts"] == ens.VERDICT_ANOMALY).sum() >= 10 and np.isnan(f["x"]).any()
    np.testing.assert_array_equal(verdicts, f["verdicts"])
    np.testing.assert_array_equal(scores, f["scores"])
    np.testing.assert_array_equal(probs, f["probs"])
    np.testing.assert_array_equal(state, ens.restore(f["state_after"], p))
    # the same length with other sizes (a 61-point window, 97 bins) is not read out of place, in either layout
    other = EnsembleParams(window=61, bins=97).to_array()
    assert ens.init_state(other).shape == ens.init_state(p).shape
    assert ens.restore(ens.init_state(p), other) is None and ens.restore(f["state"], other) is None
    assert ens.restore(state, p) is state
