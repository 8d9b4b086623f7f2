"""The forecasting step: feature records of resources with a capacity -> ``augur.forecasts.v1`` records.

Engine-independent like :mod:`jobs.steps`: the Flink job, the reference run, the backfill and the benchmark call
:meth:`Forecaster.update` with one series' features in event-time order and its state array.

A forecast is **raised** (``state: active``) when the earliest plausible exhaustion falls inside the horizon and
the growth is clear at ``forecast.confirm-steps`` consecutive steps, **re-sent** while raised when its predicted
time moves by more than ``forecast.update-fraction`` of the time left, and **retracted** (``state: retracted``)
when the risk is gone for as many steps (see :func:`udfs.forecast.at_risk`). Nothing is sent for resources that
were never at risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from augur.config import Config
from augur.timeparse import format_duration_ms
from jobs.steps import JOB_PRODUCER
from schemas import series
from udfs import forecast as fk

MIN_UPDATE_MS = 15 * 60_000
SEARCH_HORIZONS = 2.0  # exhaustion is searched step by step this many horizons ahead, estimated beyond


def usage_of(feature: dict) -> float:
    """The value forecast for a feature: its window's maximum for gauges (peaks exhaust a resource)."""
    feats = feature.get("features") or {}
    x = feats.get("max") if feature.get("type") == "gauge" else None
    if x is None:
        x = feature.get("value")
    return math.nan if x is None else float(x)


def _ts(x: float) -> int | None:
    return None if math.isnan(x) else int(x)


@dataclass(frozen=True)
class Forecaster:
    step_ms: int
    history_steps: int
    min_points: int
    horizon_ms: int
    season_ms: int
    recent_ms: int
    z: float
    min_trend: float
    peak_quantile: float
    hysteresis: float
    update_fraction: float
    confirm_steps: int

    @classmethod
    def from_config(cls, cfg: Config) -> "Forecaster":
        return cls(step_ms=cfg["forecast.step-ms"], history_steps=cfg["forecast.history-steps"],
                   min_points=max(3, math.ceil(cfg["forecast.min-history-ms"] / cfg["forecast.step-ms"])),
                   horizon_ms=cfg["forecast.horizon-ms"], season_ms=cfg["forecast.season-ms"],
                   recent_ms=cfg["forecast.recent-ms"],
                   z=NormalDist().inv_cdf(0.5 + cfg["forecast.confidence"] / 2),
                   min_trend=cfg["forecast.min-trend"], peak_quantile=cfg["forecast.peak-quantile"],
                   hysteresis=cfg["forecast.hysteresis"], update_fraction=cfg["forecast.update-fraction"],
                   confirm_steps=cfg["forecast.confirm-steps"])

    @staticmethod
    def applies_to(feature: dict) -> bool:
        return feature.get("capacity") is not None

    def init_state(self) -> np.ndarray:
        return fk.init_state(self.history_steps)

    def restored(self, stored) -> np.ndarray:
        """A resource's state from keyed state: as kept, resized to ``forecast.history-steps`` if a savepoint was
        taken with another (its newest steps kept), or fresh."""
        if stored is None:
            return self.init_state()
        state = np.asarray(stored, dtype=np.float64)
        if state.shape[0] != fk.HEADER + 2 * self.history_steps:
            state = fk.resized(state, self.history_steps)
        return state

    def fit(self, state: np.ndarray, now: float) -> np.ndarray:
        return fk.fit_state(state, float(now), self.min_points, float(self.season_ms), float(self.recent_ms),
                            SEARCH_HORIZONS * float(self.horizon_ms), self.z, self.peak_quantile)

    def update(self, state: np.ndarray, feature: dict) -> tuple[np.ndarray | None, dict | None]:
        """Learn one feature; when it closes a step, refit and return ``(fit, record or None)``."""
        cap = feature.get("capacity")
        closed = fk.observe(state, float(feature["window_start"]), usage_of(feature),
                            math.nan if cap is None else float(cap), float(self.step_ms))
        if not closed:
            return None, None
        now = float(state[fk.CUR_START])  # the end of the step that just closed
        f = self.fit(state, now)
        was_active = state[fk.ACTIVE] == 1.0
        risk = fk.at_risk(f, now, float(self.horizon_ms), self.min_trend, was_active, self.hysteresis)
        # a change of state must be confirmed by consecutive evaluations (a near miss does not flap)
        state[fk.STREAK] = 0.0 if risk == was_active else state[fk.STREAK] + 1.0
        if risk != was_active and state[fk.STREAK] < self.confirm_steps:
            return f, None
        state[fk.STREAK] = 0.0
        if risk:
            point = f[fk.POINT_TS]
            last = state[fk.LAST_POINT]
            moved = (math.isnan(last) != math.isnan(point) or
                     (not math.isnan(point) and not (point <= now and last <= now) and
                      abs(point - last) > max(self.update_fraction * (last - now), MIN_UPDATE_MS)))
            if was_active and not moved:
                return f, None
            state[fk.ACTIVE] = 1.0
            state[fk.LAST_POINT] = point
            return f, self.record(feature, f, now, "active", fk.last_closed(state))
        if was_active:
            state[fk.ACTIVE] = 0.0
            state[fk.LAST_POINT] = math.nan
            return f, self.record(feature, f, now, "retracted", fk.last_closed(state))
        return f, None

    def record(self, feature: dict, f: np.ndarray, now: float, state: str, usage: float) -> dict:
        method = fk.METHODS[int(f[fk.METHOD])]
        name = series.describe(feature["metric"], feature["attrs"])
        cap = float(feature["capacity"])
        growth_h = f[fk.SLOPE] * 3_600_000
        if state == "active":
            point = f[fk.POINT_TS]
            when = ("its peaks already reach capacity at this trend" if point <= now
                    else f"full in {format_duration_ms(point - now)}")
            explanation = (f"{name} on {feature['host']} grows {growth_h / cap * 100:.2f}% of capacity per hour "
                           f"({method}); {when}")
        else:
            explanation = (f"{name} on {feature['host']}: no longer expected to fill within "
                           f"{format_duration_ms(self.horizon_ms)} (growth {growth_h / cap * 100:.2f}%/h)")
        active = state == "active"
        return {
            "v": 1, "ts": int(now), "host": feature["host"], "producer": JOB_PRODUCER,
            "series_id": feature["series_id"], "metric": feature["metric"], "attrs": feature["attrs"],
            "resource": name[:256], "usage": float(usage) if math.isfinite(usage) else 0.0, "capacity": cap,
            "state": state,
            "exhaustion_ts": _ts(f[fk.POINT_TS]) if active else None,
            "exhaustion_lower_ts": _ts(f[fk.LOWER_TS]) if active else None,
            "exhaustion_upper_ts": _ts(f[fk.UPPER_TS]) if active else None,
            "growth_per_s": float(f[fk.SLOPE] * 1000) if math.isfinite(f[fk.SLOPE]) else None,
            "method": method, "horizon_ms": self.horizon_ms, "explanation": explanation[:512],
        }
