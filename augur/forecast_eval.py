"""Forecaster vs the predict_linear rule on the resource scenarios: lead time, false alerts, misses, errors.

Definitions (the same for both):

* an **alert** is a raised forecast (ours: ``state: active`` until ``retracted``; the baseline: the warning or the
  critical rule firing). Alert episodes are maximal runs of consecutive raised evaluations.
* **lead time**: exhaustion time minus the start of the episode still raised when the resource fills up.
* **missed**: the resource filled up and no alert was raised at that moment.
* **false alert**: an episode after whose start the resource does not fill up within the horizon (24 h, with a 10%
  tolerance so that an alert raised 24.3 h ahead of a real exhaustion is not called false), per scenario-day.
* **error at h**: |predicted - true exhaustion time| from the prediction made h before the true exhaustion (ours:
  the point estimate; the baseline: where its 6 h least-squares line reaches zero), whether or not raised.
* **retract delay**: for a fill that stops, how long after the stop a raised forecast was retracted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from collectors.resource_scenarios import SCENARIOS, ResourceScenario
from jobs.forecasting import Forecaster
from schemas import series
from udfs import forecast as fk
from udfs.predict_linear import filling_up_alerts

H = 3_600_000
ERROR_HORIZONS_H = (24, 12, 4, 1)
FALSE_TOLERANCE = 1.1


@dataclass
class Timeline:
    """Raised/not raised and the predicted exhaustion at each evaluation time."""

    t: np.ndarray
    raised: np.ndarray
    predicted: np.ndarray
    records: list = field(default_factory=list)

    def episodes(self) -> list[tuple[int, int]]:
        """``(start, end)`` evaluation times of each raised run (end = first time not raised, or last time)."""
        out, start = [], None
        for ts, r in zip(self.t, self.raised):
            if r and start is None:
                start = int(ts)
            elif not r and start is not None:
                out.append((start, int(ts)))
                start = None
        if start is not None:
            out.append((start, int(self.t[-1])))
        return out

    def predicted_at(self, ts: float) -> float:
        k = np.searchsorted(self.t, ts, side="right") - 1
        return float(self.predicted[k]) if k >= 0 else math.nan


def features_of(scenario: ResourceScenario, host: str = "scenario-host") -> list[dict]:
    """Minimal feature records (one per sample, window = sample interval), as the stream's feature stage makes."""
    t, used = scenario.series()
    sid = series.series_id(host, scenario.metric, scenario.attrs)
    cap = float(scenario.capacity)
    return [{"series_id": sid, "host": host, "metric": scenario.metric, "attrs": scenario.attrs, "type": "gauge",
             "window_start": int(ts), "window_end": int(ts) + scenario.step_ms, "value": float(u),
             "capacity": cap, "features": {"max": float(u)}} for ts, u in zip(t, used)]


def run_forecaster(scenario: ResourceScenario, forecaster: Forecaster) -> Timeline:
    state = forecaster.init_state()
    ts, raised, predicted, records = [], [], [], []
    for feat in features_of(scenario):
        f, rec = forecaster.update(state, feat)
        if f is None:
            continue
        ts.append(state[fk.CUR_START])
        raised.append(state[fk.ACTIVE] == 1.0)
        predicted.append(f[fk.POINT_TS])
        if rec is not None:
            records.append(rec)
    return Timeline(np.array(ts), np.array(raised, dtype=bool), np.array(predicted), records)


def run_baseline(scenario: ResourceScenario) -> Timeline:
    t, used = scenario.series()
    tf = t.astype(np.float64)
    alerts = filling_up_alerts(tf, used, np.full(t.shape, float(scenario.capacity)), tf)
    return Timeline(tf, alerts["warning"] | alerts["critical"], alerts["predicted_exhaustion"])


@dataclass
class Outcome:
    scenario: str
    lead_h: float | None
    missed: bool
    false_alerts: int
    days: float
    errors_h: dict[int, float]
    retract_delay_h: float | None = None


def score(scenario: ResourceScenario, tl: Timeline, horizon_ms: int) -> Outcome:
    exhaust = scenario.exhaustion_ts
    eps = tl.episodes()
    lead, missed = None, False
    if exhaust is not None:
        covering = [s for s, e in eps if s <= exhaust and (e >= exhaust or e == int(tl.t[-1]))]
        missed = not covering
        lead = (exhaust - covering[-1]) / H if covering else None
    false = sum(1 for s, _ in eps if exhaust is None or exhaust - s > FALSE_TOLERANCE * horizon_ms)
    errors = {}
    if exhaust is not None:
        for h in ERROR_HORIZONS_H:
            at = exhaust - h * H
            if at >= tl.t[0]:
                p = tl.predicted_at(at)
                errors[h] = abs(p - exhaust) / H if math.isfinite(p) else math.inf
    retract = None
    if scenario.stops_growing_at_h is not None:
        stop = scenario.start_ms + scenario.stops_growing_at_h * H
        ends = [e for _, e in eps if stop < e < int(tl.t[-1])]
        retract = math.inf if tl.raised[-1] else ((ends[0] - stop) / H if ends else 0.0)
    days = (tl.t[-1] - tl.t[0]) / (24 * H) if len(tl.t) else scenario.days
    return Outcome(scenario.name, lead, missed, false, days, errors, retract)


def compare(forecaster: Forecaster, scenarios=SCENARIOS) -> list[tuple[ResourceScenario, Outcome, Outcome, Timeline]]:
    out = []
    for sc in scenarios:
        ours = run_forecaster(sc, forecaster)
        base = run_baseline(sc)
        out.append((sc, score(sc, ours, forecaster.horizon_ms), score(sc, base, forecaster.horizon_ms), ours))
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "never"
    return f"{x:.{digits}f}"


def table(results) -> str:
    head = (f"{'scenario':<22} {'exhausts':>8} | {'lead h':>7} {'base':>7} | {'false':>5} {'base':>5} | "
            + " ".join(f"{'err@' + str(h) + 'h':>8} {'base':>6}" for h in ERROR_HORIZONS_H) + " | retract h")
    lines = [head, "-" * len(head)]
    for sc, ours, base, _ in results:
        exh = "-" if sc.exhaustion_ts is None else f"{(sc.exhaustion_ts - sc.start_ms) / H:.1f}h"
        lead = "MISSED" if ours.missed else _fmt(ours.lead_h)
        blead = "MISSED" if base.missed else _fmt(base.lead_h)
        errs = " ".join(f"{_fmt(ours.errors_h.get(h)):>8} {_fmt(base.errors_h.get(h)):>6}" for h in ERROR_HORIZONS_H)
        lines.append(f"{sc.name:<22} {exh:>8} | {lead:>7} {blead:>7} | {ours.false_alerts:>5} {base.false_alerts:>5} | "
                     f"{errs} | {_fmt(ours.retract_delay_h)} (base {_fmt(base.retract_delay_h)})")
    return "\n".join(lines)


def summary(results) -> dict:
    leads = [(o.lead_h, b.lead_h) for _, o, b, _ in results if o.lead_h is not None and b.lead_h is not None]
    days = sum(o.days for _, o, _, _ in results)
    return {
        "lead_time_ratio": (sum(o for o, _ in leads) / sum(b for _, b in leads)) if leads else math.nan,
        "lead_h": sum(o.lead_h or 0 for _, o, _, _ in results),
        "base_lead_h": sum(b.lead_h or 0 for _, _, b, _ in results),
        "false_alerts": sum(o.false_alerts for _, o, _, _ in results),
        "base_false_alerts": sum(b.false_alerts for _, _, b, _ in results),
        "false_per_day": sum(o.false_alerts for _, o, _, _ in results) / days,
        "base_false_per_day": sum(b.false_alerts for _, _, b, _ in results) / days,
        "missed": sum(o.missed for _, o, _, _ in results),
        "base_missed": sum(b.missed for _, _, b, _ in results),
    }


def throughput(forecaster: Forecaster, n_series: int = 2000, seconds: float = 3.0) -> float:
    """Fits per second of the kernel on full histories (what one core does for each resource each step)."""
    rng = np.random.default_rng(3)
    steps = forecaster.history_steps
    states = []
    for i in range(min(n_series, 256)):
        st = forecaster.init_state()
        for k in range(steps + 1):
            fk.observe(st, float(k * forecaster.step_ms), float(50 + 0.01 * k + rng.normal()), 100.0,
                       float(forecaster.step_ms))
        states.append(st)
    now = float((steps + 1) * forecaster.step_ms)
    forecaster.fit(states[0], now)  # compile
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for st in states:
            forecaster.fit(st, now)
        done += len(states)
    return done / (time.perf_counter() - t0)
