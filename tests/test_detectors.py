"""The ensemble's detectors against their references: NumPy, Prophet, scikit-learn and torch, on seeded data."""

import math

import numpy as np
import pytest

from models import iforest_export, seasonal_prophet
from models.artifacts import Artifact, ArtifactError
from udfs import calibration, ewma_cusum, lstm, seasonal


def test_ewma_matches_numpy_reference():
    rng = np.random.default_rng(3)
    xs = rng.normal(5.0, 2.0, size=600)
    state = ewma_cusum.init_state()
    means, variances = ewma_cusum.reference_ewma(xs, 0.05)
    for i, x in enumerate(xs):
        z, _ = ewma_cusum.step(state, x, 0.05, 10, 0.5, math.inf, math.inf, 0.0)
        if i < 10:
            assert math.isnan(z)
        else:
            assert z == pytest.approx((x - means[i - 1]) / math.sqrt(variances[i - 1]), rel=1e-12)
        assert state[ewma_cusum.MEAN] == pytest.approx(means[i], rel=1e-12)
        assert state[ewma_cusum.VAR] == pytest.approx(variances[i], rel=1e-12)


def test_cusum_flags_a_level_shift_once_and_noise_never():
    rng = np.random.default_rng(4)
    xs = rng.normal(0.0, 1.0, size=3000)
    xs[2000:] += 3.0       # a step that stays
    state = ewma_cusum.init_state()
    _, change = ewma_cusum.step_batch(state, xs, 0.01, 50, 0.5, 12.0, 4.0, 0.0)
    alarms = np.flatnonzero(change > 1.0)
    assert alarms.size == 1, alarms
    assert 2000 <= alarms[0] < 2020          # found within a few points of the step


def test_seasonal_kernel_equals_prophet_predict():
    import pandas as pd
    from prophet import Prophet
    rng = np.random.default_rng(5)
    t = 1_600_000_000 + np.arange(0, 21 * 86400, 1800, dtype=np.float64)
    y = 50 + 1e-5 * (t - t[0]) + 8 * np.sin(2 * np.pi * t / 86400) + 3 * np.cos(2 * np.pi * t / (7 * 86400)) \
        + rng.normal(0, 1, t.size)
    y[t > t[0] + 12 * 86400] += 2e-5 * (t[t > t[0] + 12 * 86400] - t[0] - 12 * 86400)   # a trend change
    params = seasonal_prophet.fit(t, y)
    model = Prophet(yearly_seasonality=False, uncertainty_samples=0).fit(
        pd.DataFrame({"ds": pd.to_datetime(t.astype(np.int64), unit="s"), "y": y}))
    future = t[-1] + np.arange(-5 * 86400, 3 * 86400, 900, dtype=np.float64)   # in and beyond the history
    expected = model.predict(pd.DataFrame({"ds": pd.to_datetime(future.astype(np.int64), unit="s")}))["yhat"]
    np.testing.assert_allclose(seasonal.predict_batch(params, future), expected.to_numpy(), rtol=1e-9, atol=1e-9)


def test_seasonal_without_a_model_tracks_the_level():
    state = seasonal.init_state()
    for x in np.full(100, 7.0):
        z, expected = seasonal.step(state, np.empty(0), x, 0.0, 0.05, 10, 0.1, 4.0)
    assert expected == pytest.approx(7.0, rel=1e-3)
    z, _ = seasonal.step(state, np.empty(0), 17.0, 0.0, 0.05, 10, 0.1, 4.0)
    assert z > 20


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_iforest_kernel_equals_sklearn_score_samples(max_features):
    from sklearn.ensemble import IsolationForest
    rng = np.random.default_rng(6)
    train = rng.normal(size=(3000, 7))
    test = np.vstack([rng.normal(size=(400, 7)) * 1.5, rng.normal(6, 1, size=(20, 7))])
    forest = IsolationForest(n_estimators=80, max_features=max_features, random_state=1).fit(train)
    ours = iforest_export.score(iforest_export.export(forest), test)
    np.testing.assert_allclose(ours, forest.score_samples(test), rtol=1e-12, atol=1e-15)
    assert ours[-20:].mean() < ours[:400].mean()


def test_lstm_kernel_equals_torch_forward():
    torch = pytest.importorskip("torch", reason="the LSTM's reference is torch: install the 'train' extra")
    from models import lstm_train
    rng = np.random.default_rng(7)
    y = np.sin(np.arange(800) / 9.0) * 4 + rng.normal(0, 0.3, 800) + 20
    model, weights = lstm_train.fit(y[:600], hidden=8, steps=120, seed=3)
    mu, sd = weights[1], weights[2]
    u = np.clip((y - mu) / sd, -8.0, 8.0)
    with torch.no_grad():
        expected = mu + sd * model(torch.tensor(u)[None, :, None]).numpy()[0]
    np.testing.assert_allclose(lstm.forecast_sequence(weights, y, 8.0), expected, rtol=1e-10, atol=1e-10)
    # and it learned something: one-step forecasts beat "same as last value" on the held-out part
    pred = lstm.forecast_sequence(weights, y, 8.0)
    assert np.mean(np.abs(pred[600:-1] - y[601:])) < np.mean(np.abs(y[600:-1] - y[601:]))


def test_calibration_bins_by_counting_edges_are_the_log_spaced_bins():
    """A score's bin comes from counting the bin edges at or below it (no log per score): the same bin as the log
    formula's, but for scores within rounding of an edge."""
    from numba import njit
    bin_at = njit(calibration.bin_at.py_func)
    rng = np.random.default_rng(3)
    n_bins, lo, hi = 96, 1e-3, 1e4
    e = calibration.edges(n_bins, lo, hi)
    raws = np.concatenate([np.exp(rng.uniform(np.log(lo) - 1, np.log(hi) + 1, 100_000)), [lo, hi, 0.0, np.inf]])
    got = np.array([bin_at(r, n_bins, lo, hi, e, 0) for r in raws])
    inside = (raws > lo) & (raws < hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(inside, (np.log(raws) - np.log(lo)) / (np.log(hi) - np.log(lo)) * (n_bins - 2), 0.5)
    expected = np.where(raws <= lo, 0, np.where(raws >= hi, n_bins - 1, 1 + np.floor(frac).astype(int)))
    near_edge = np.abs(frac - np.round(frac)) < 1e-9
    assert np.array_equal(got[~near_edge], expected[~near_edge]) and near_edge.sum() < 5
    assert np.all(np.abs(got - expected) <= 1)


def test_calibration_is_the_rank_among_past_scores():
    rng = np.random.default_rng(8)
    raws = rng.exponential(1.0, size=5000)
    state = calibration.init_state(256)
    for r in raws:
        calibration.step(state, r, 1e-3, 1e3, 50, 1e9, 2.0)
    for q in (0.5, 0.9, 0.99):
        probe = float(np.quantile(raws, q))
        p = calibration.step(state.copy(), probe, 1e-3, 1e3, 50, 1e9, 2.0)
        assert p == pytest.approx(q, abs=0.02)
    top = raws.max()
    just_above = calibration.step(state.copy(), top * 1.01, 1e-3, 1e3, 50, 1e9, 2.0)
    far_above = calibration.step(state.copy(), top * 3, 1e-3, 1e3, 50, 1e9, 2.0)
    assert 0.9998 < just_above < far_above < 1.0
    assert 1 - far_above == pytest.approx(0.5 / 5001 / 9, rel=1e-6)   # the Pareto tail, index 2
    fresh = calibration.init_state(256)
    assert math.isnan(calibration.step(fresh, 1.0, 1e-3, 1e3, 50, 1e9, 2.0))     # warm-up


def test_artifacts_round_trip_and_refuse_foreign_files(tmp_path):
    art = Artifact("lstm", "lstm/1", {"weights": np.arange(5.0)}, {"series_id": "s"})
    path = art.save(tmp_path / "m.npz")
    back = Artifact.load(path, "lstm")
    np.testing.assert_array_equal(back.arrays["weights"], np.arange(5.0))
    assert back.meta == {"series_id": "s"} and back.version == "lstm/1"
    with pytest.raises(ArtifactError, match="not 'iforest'"):
        Artifact.load(path, "iforest")
    pickled = tmp_path / "evil.npz"
    np.savez(pickled, __meta__=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="not an Augur model"):
        Artifact.load(pickled, "lstm")
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.load(tmp_path / "missing.npz", "lstm")


def reference_surprise(xs: np.ndarray, bins: int, length: int, decay: float, min_history: int) -> np.ndarray:
    """Context novelty the slow, obvious way: levels from the range seen so far, every count decayed every point."""
    counts, total, lo, hi, levels, out = np.zeros(bins ** length), 0.0, np.inf, -np.inf, [], []
    for i, x in enumerate(xs):
        levels.append(0 if not hi > lo else min(max(int((x - lo) / (hi - lo) * bins), 0), bins - 1))
        lo, hi = min(lo, x), max(hi, x)
        if i + 1 < length:
            out.append(np.nan)
            continue
        ctx = 0
        for b in levels[-length:]:
            ctx = ctx * bins + b
        out.append(-math.log((counts[ctx] + 0.1) / (total + 0.1 * bins ** length)) if i + 1 > min_history
                   else np.nan)
        counts *= decay
        total = total * decay + 1.0
        counts[ctx] += 1.0
    return np.array(out)


def test_context_novelty_is_the_surprise_of_the_recent_levels_and_flags_a_pattern_never_seen():
    from udfs import context_novelty
    day = np.r_[np.full(12, 10.0), np.full(12, 50.0)]          # a daily square wave, 24 points a day
    xs = np.tile(day, 30) + np.random.default_rng(3).normal(0, 0.5, 720)
    xs[600:624] = 30.0 + np.random.default_rng(4).normal(0, 0.5, 24)   # day 25: stuck half-way, within range
    state = context_novelty.init_state(6, 3)
    got = np.array([context_novelty.step(state, x, 6, 3, 0.99, 24) for x in xs])
    np.testing.assert_allclose(got, reference_surprise(xs, 6, 3, 0.99, 24), rtol=1e-9, equal_nan=True)
    assert np.all(np.isnan(got[:24])) and np.all(np.isfinite(got[24:]))
    # the usual pattern, its jumps included, is soon unsurprising; a level held where the series only ever passed
    # through is a pattern never seen, though no value is out of range
    assert got[600:606].max() > 1.5 * np.nanmax(got[400:600]) and got[610] < got[601]
    assert np.isnan(context_novelty.step(state, np.nan, 6, 3, 0.99, 24))


def test_each_detector_steps_the_same_on_its_own_state_and_at_an_offset_inside_a_larger_array():
    """The ensemble keeps every detector's state in one array and steps each where it lies (``step_at``); that must
    be the detector's own ``step`` on a state of its own, and must not touch its neighbours."""
    from udfs import context_novelty, robust_zscore
    rng = np.random.default_rng(11)
    xs = rng.normal(50.0, 5.0, size=700)
    xs[300:320] += 40.0
    xs[[5, 400]] = np.nan
    weights = np.concatenate([[4.0, 50.0, 5.0], rng.normal(0, 0.3, lstm.weights_size(4) - 3)])
    season = np.array([0.0, 86400.0, 50.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1, 0.01, 0.02])
    cases = {
        "robust_z": (robust_zscore.init_state(32),
                     lambda s, x: robust_zscore.step(s, x, 24, 6.0, 1e-3, 1e-9),
                     lambda b, o, x: robust_zscore.step_at(b, o, 32, x, 24, 6.0, 1e-3, 1e-9)),
        "ewma_cusum": (ewma_cusum.init_state(),
                       lambda s, x: ewma_cusum.step(s, x, 0.02, 24, 0.5, 12.0, 4.0, 1e-9),
                       lambda b, o, x: ewma_cusum.step_at(b, o, x, 0.02, 24, 0.5, 12.0, 4.0, 1e-9)),
        "seasonal": (seasonal.init_state(),
                     lambda s, x: seasonal.step(s, season, x, 3600.0 * x, 0.01, 24, 1e-3, 4.0),
                     lambda b, o, x: seasonal.step_at(b, o, season, x, 3600.0 * x, 0.01, 24, 1e-3, 4.0)),
        "lstm": (lstm.init_state(4),
                 lambda s, x: lstm.step(s, weights, x, 0.01, 24, 1e-3, 8.0),
                 lambda b, o, x: lstm.step_at(b, o, weights, x, 0.01, 24, 1e-3, 8.0)),
        "context": (context_novelty.init_state(4, 2),
                    lambda s, x: context_novelty.step(s, x, 4, 2, 0.99, 24),
                    lambda b, o, x: context_novelty.step_at(b, o, x, 4, 2, 0.99, 24)),
        "calibration": (calibration.init_state(32),
                        lambda s, x: calibration.step(s, abs(x - 50.0), 1e-3, 1e3, 50, 300.0, 2.0),
                        lambda b, o, x: calibration.step_at(b, o, 32, abs(x - 50.0), 1e-3, 1e3,
                                                            calibration.edges(32, 1e-3, 1e3), 0, 50, 300.0, 2.0)),
    }
    for name, (init, own, at) in cases.items():
        alone = init.copy()
        base = 7
        buf = np.full(base + init.shape[0] + 5, -123.0)
        buf[base:base + init.shape[0]] = init
        got_alone = [own(alone, float(x)) for x in xs]
        got_at = [at(buf, base, float(x)) for x in xs]
        np.testing.assert_array_equal(np.array(got_at, dtype=float), np.array(got_alone, dtype=float),
                                      err_msg=name)
        np.testing.assert_array_equal(buf[base:base + init.shape[0]], alone, err_msg=name)
        assert (buf[:base] == -123.0).all() and (buf[base + init.shape[0]:] == -123.0).all(), name
        assert np.isfinite(np.array(got_alone, dtype=float)).sum() > 300, name   # it did score, not only warm up
