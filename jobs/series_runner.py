"""Closed windows of each series -> features -> anomaly score -> forecast, with the per-series state kept here.

The reference run and the Beam backfill both drive a :class:`SeriesRunner`; the Flink job runs the same steps
(:mod:`jobs.steps`, :mod:`jobs.forecasting`) with the state in Flink keyed state. Each series' windows must be
given in event-time order; series are independent of each other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jobs import steps
from jobs.forecasting import Forecaster


class WindowOutputs(NamedTuple):
    feature: dict
    anomaly: dict | None
    forecast: dict | None


class SeriesRunner:
    def __init__(self, window_ms: int, scorer: steps.EnsembleFeatureScorer, forecaster: Forecaster | None = None):
        self.window_ms = window_ms
        self.scorer = scorer
        self.forecaster = forecaster
        self.score_states: dict[str, np.ndarray] = {}
        self.forecast_states: dict[str, np.ndarray] = {}

    def close_window(self, sid: str, start: int, samples: list[dict]) -> WindowOutputs:
        feature = steps.features_record(sid, start, start + self.window_ms, samples)
        state = self.score_states.get(sid)
        if state is None:
            state = self.score_states[sid] = self.scorer.init_state()
        anomaly = self.scorer.score(state, feature)
        forecast = None
        if self.forecaster is not None and self.forecaster.applies_to(feature):
            fstate = self.forecast_states.get(sid)
            if fstate is None:
                fstate = self.forecast_states[sid] = self.forecaster.init_state()
            _, forecast = self.forecaster.update(fstate, feature)
        return WindowOutputs(feature, anomaly, forecast)
