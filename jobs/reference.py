"""An in-process, single-threaded run of the pipeline steps over in-order samples: the reference the engines are
checked against, and a quick way to see what the detectors make of a scenario. Not for large inputs."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, NamedTuple

from jobs import steps
from jobs.forecasting import Forecaster
from jobs.series_runner import SeriesRunner
from schemas import series


class Outputs(NamedTuple):
    features: list[dict]
    anomalies: list[dict]
    forecasts: list[dict]


def run(samples: Iterable[dict], window_ms: int, scorer: steps.EnsembleFeatureScorer,
        forecaster: Forecaster | None = None) -> Outputs:
    """Tumbling windows aligned to the epoch, every sample on time."""
    windows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in samples:
        sid = series.series_id(s["host"], s["metric"], s["attrs"])
        windows[(sid, s["ts"] - s["ts"] % window_ms)].append(s)
    out = Outputs([], [], [])
    runner = SeriesRunner(window_ms, scorer, forecaster)
    for (sid, start) in sorted(windows, key=lambda k: (k[1], k[0])):
        feature, anomaly, forecast = runner.close_window(sid, start, windows[(sid, start)])
        out.features.append(feature)
        if anomaly is not None:
            out.anomalies.append(anomaly)
        if forecast is not None:
            out.forecasts.append(forecast)
    return out
