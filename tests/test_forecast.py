"""Forecasting kernels, the forecasting step, the predict_linear baseline, and the scenario suite's acceptance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augur import forecast_eval as ev
from augur.config import Config
from collectors.resource_scenarios import SCENARIOS, by_name
from jobs.forecasting import Forecaster
from schemas import topics
from tests.test_schemas import reference_validator
from udfs import forecast as fk
from udfs.predict_linear import filling_up_alerts, predict_linear

H = 3_600_000
STEP = 600_000.0


def fit_line(t, y, capacity, now, min_points=6):
    return fk.fit(np.asarray(t, float), np.asarray(y, float), float(capacity), float(now), min_points,
                  float(24 * H), float(4 * H), float(48 * H), 1.645, 0.98)


def test_observe_keeps_each_steps_maximum_and_closes_steps_in_order():
    st = fk.init_state(4)
    closed = [fk.observe(st, t, y, 100.0, 1000.0) for t, y in ((0, 5), (400, 9), (900, 7), (1000, 1), (2500, 3))]
    assert closed == [False, False, False, True, True]
    t, y = fk.history(st)
    assert t.tolist() == [0.0, 1000.0] and y.tolist() == [9.0, 1.0]
    assert st[fk.CAPACITY] == 100.0
    assert not fk.observe(st, 2600, math.nan, 120.0, 1000.0)  # a NaN is not learned, the capacity is
    assert st[fk.CAPACITY] == 120.0 and fk.history(st)[1].tolist() == [9.0, 1.0]


def test_ring_keeps_the_latest_steps():
    st = fk.init_state(3)
    for k in range(10):
        fk.observe(st, k * 1000.0, float(k), 100.0, 1000.0)
    assert fk.history(st)[1].tolist() == [6.0, 7.0, 8.0]


def test_a_kept_state_follows_a_new_history_length_with_its_newest_steps():
    st = fk.init_state(5)
    for k in range(8):
        fk.observe(st, k * 1000.0, float(k), 100.0, 1000.0)    # steps 0..6 closed, 7 open; the ring holds 2..6
    fk.observe(st, 7100.0, 7.5, 100.0, 1000.0)
    st[fk.ACTIVE], st[fk.LAST_POINT], st[fk.STREAK] = 1.0, 9e6, 2.0
    shorter, longer = fk.resized(st, 3), fk.resized(st, 8)
    assert fk.history(shorter)[1].tolist() == [4.0, 5.0, 6.0] and shorter.shape == fk.init_state(3).shape
    assert fk.history(longer)[0].tolist() == [2000.0, 3000.0, 4000.0, 5000.0, 6000.0]
    for s in (shorter, longer):
        np.testing.assert_array_equal(s[fk.CUR_START:fk.HEADER], st[fk.CUR_START:fk.HEADER])  # the open step too
        assert fk.observe(s, 8000.0, 8.0, 100.0, 1000.0) and fk.last_closed(s) == 7.5
    assert fk.history(longer)[1].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.5]
    fc = Forecaster.from_config(Config({"forecast.history-steps": "3"}))
    assert fk.history(fc.restored(st.tolist()))[1].tolist() == [4.0, 5.0, 6.0]
    assert fc.restored(None).shape == fc.init_state().shape
    np.testing.assert_array_equal(fc.restored(shorter.tolist()), shorter)     # the configured length: as kept


def test_a_clean_line_gives_its_slope_and_exhaustion_time():
    t = np.arange(0, 48 * H, STEP)
    y = 40.0 + 1.0 * t / H  # 1 unit per hour, capacity 100 -> full at 60 h
    now = t[-1] + STEP
    f = fit_line(t, y, 100.0, now)
    assert f[fk.SLOPE] * H == pytest.approx(1.0)
    assert f[fk.METHOD] == 1 and f[fk.TREND] == 1.0
    assert abs(f[fk.POINT_TS] - 60 * H) <= STEP
    assert f[fk.LOWER_TS] <= f[fk.POINT_TS] <= f[fk.UPPER_TS]


def test_noisy_growth_has_bounds_around_the_point_and_no_growth_has_no_exhaustion():
    rng = np.random.default_rng(1)
    t = np.arange(0, 30 * H, STEP)
    f = fit_line(t, 50 + 0.5 * t / H + rng.normal(0, 0.5, t.size), 100.0, t[-1] + STEP)
    assert f[fk.LOWER_TS] < f[fk.POINT_TS] < f[fk.UPPER_TS]
    flat = fit_line(t, 50 + rng.normal(0, 0.5, t.size), 100.0, t[-1] + STEP)
    assert abs(flat[fk.TREND]) < 0.3
    assert not fk.at_risk(flat, t[-1] + STEP, 24.0 * H, 0.5, False, 0.25)


def test_too_little_history_gives_no_forecast():
    f = fit_line([0.0, STEP], [1.0, 2.0], 10.0, 2 * STEP)
    assert f[fk.METHOD] == 0 and math.isnan(f[fk.POINT_TS])


def test_a_fill_that_stops_is_judged_on_its_recent_slope():
    t = np.arange(0, 30 * H, STEP)
    y = 30 + 2.0 * np.minimum(t / H, 24.0)  # stops at 24 h, 6 h ago
    f = fit_line(t, y, 100.0, t[-1] + STEP)
    assert fk.METHODS[int(f[fk.METHOD])] == "theil-sen/stopped"
    assert abs(f[fk.SLOPE]) * H < 0.05


def test_state_survives_a_round_trip_through_plain_lists():
    fc = Forecaster.from_config(Config())
    sc = by_name("linear_fill")
    feats = ev.features_of(sc)
    a, b = fc.init_state(), fc.init_state()
    out_a, out_b = [], []
    for i, feat in enumerate(feats):
        out_a.append(fc.update(a, feat)[1])
        b = np.asarray(b.tolist(), dtype=np.float64)  # what Flink's keyed state hands back
        out_b.append(fc.update(b, feat)[1])
    assert [r for r in out_a if r] == [r for r in out_b if r] and any(out_a)


def test_predict_linear_is_least_squares_over_the_range():
    rng = np.random.default_rng(2)
    t = np.arange(0, 20 * H, 60_000, dtype=float)
    v = 1000 - 3 * t / H + rng.normal(0, 2, t.size)
    e = np.array([10 * H, 19 * H])
    pred, slope, count = predict_linear(t, v, e, 6 * H, 24 * H)
    for k, at in enumerate(e):
        sel = (t > at - 6 * H) & (t <= at)
        b, a = np.polyfit((t[sel] - at) / 1000, v[sel], 1)
        assert count[k] == sel.sum()
        assert pred[k] == pytest.approx(a + b * 24 * 3600, rel=1e-9)
        assert slope[k] * 1000 == pytest.approx(b, rel=1e-9)


def test_the_rules_for_clause_needs_an_hour_of_the_condition():
    t = np.arange(0, 10 * H, 60_000, dtype=float)
    used = np.where(t < 5 * H, 50.0, 70.0 + (t - 5 * H) / H * 5)  # jumps to 70% and grows 5%/h from 5 h
    alerts = filling_up_alerts(t, used, np.full(t.size, 100.0), t)
    fired = t[alerts["warning"]]
    assert fired.size and fired[0] >= 5 * H + H  # the condition can hold from 5 h: firing only an hour later
    crit = t[alerts["critical"]]
    assert crit.size and crit[0] >= 7 * H + H  # available below 20% from 7 h (used 80%), firing an hour later


@pytest.fixture(scope="module")
def suite():
    return {sc.name: (sc, ours, base, tl) for sc, ours, base, tl in ev.compare(Forecaster.from_config(Config()))}


def test_no_exhaustion_is_missed(suite):
    filling = [name for name, (sc, *_) in suite.items() if sc.exhaustion_ts is not None]
    assert len(filling) >= 4
    assert [name for name in filling if suite[name][1].missed] == []


def test_no_forecast_for_resources_that_do_not_fill(suite):
    for name in ("logrotate_no_growth", "weekly_seasonal", "stable_high_memory", "batch_writes_cleanup"):
        sc, ours, base, tl = suite[name]
        assert not sc.must_alert
        assert tl.records == [], (name, tl.records[:2])


def test_more_lead_time_than_predict_linear_on_every_exhaustion(suite):
    for name, (sc, ours, base, _) in suite.items():
        if sc.exhaustion_ts is not None:
            assert ours.lead_h >= base.lead_h, (name, ours.lead_h, base.lead_h)


def test_fewer_false_alerts_than_predict_linear(suite):
    s = ev.summary(suite.values())
    assert s["base_false_alerts"] > 0
    assert s["false_alerts"] < s["base_false_alerts"] / 5


def test_a_fill_that_stops_is_retracted(suite):
    sc, ours, _, tl = suite["fill_stops_halfway"]
    states = [r["state"] for r in tl.records]
    assert states[0] == "active" and states[-1] == "retracted"
    assert 0 < ours.retract_delay_h < 12


def test_forecast_records_follow_the_contract(suite):
    validator = reference_validator(topics.FORECASTS.name)
    records = [r for *_, tl in suite.values() for r in tl.records]
    assert len(records) > 10
    for r in records:
        assert validator.is_valid(r), r
        if r["state"] == "active":
            assert r["exhaustion_lower_ts"] <= r["exhaustion_ts"]
            assert r["exhaustion_upper_ts"] is None or r["exhaustion_ts"] <= r["exhaustion_upper_ts"]
        else:
            assert r["exhaustion_ts"] is None


def test_every_scenario_has_its_truth():
    names = {sc.name for sc in SCENARIOS}
    assert len(names) == len(SCENARIOS) >= 9
    for sc in SCENARIOS:
        assert (sc.exhaustion_ts is not None) == sc.must_alert, sc.name
