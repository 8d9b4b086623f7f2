"""An in-process, single-threaded run of the pipeline steps over in-order samples: the reference the engines are
checked against, and a quick way to see what the detectors make of a scenario. Not for large inputs."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, NamedTuple

from jobs import host_state, steps
from jobs.forecasting import Forecaster
from jobs.series_runner import SeriesRunner
from schemas import series


class Outputs(NamedTuple):
    features: list[dict]
    anomalies: list[dict]
    forecasts: list[dict]


def tumbling_windows(samples: Iterable[dict], window_ms: int) -> dict[tuple[str, int], list[dict]]:
    """``{(series_id, window start): samples}`` of tumbling windows aligned to the epoch, in window-start order and
    by series id within a window (the order the reference closes them in)."""
    windows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in samples:
        sid = series.series_id(s["host"], s["metric"], s["attrs"])
        windows[(sid, s["ts"] - s["ts"] % window_ms)].append(s)
    return {k: windows[k] for k in sorted(windows, key=lambda k: (k[1], k[0]))}


def features(samples: Iterable[dict], window_ms: int) -> list[dict]:
    """The windows' feature records alone, in the same order as :func:`run`'s (no scoring: what training needs)."""
    return [steps.features_record(sid, start, start + window_ms, group)
            for (sid, start), group in tumbling_windows(samples, window_ms).items()]


def run(samples: Iterable[dict], window_ms: int, scorer: steps.EnsembleFeatureScorer,
        forecaster: Forecaster | None = None, hosts: host_state.HostScorer | None = None) -> Outputs:
    """Tumbling windows aligned to the epoch, every sample on time. Hosts are scored with ``hosts`` (default: the
    default parameters and ``scorer``'s model registry); their anomalies follow each window's series' ones."""
    windows = tumbling_windows(samples, window_ms)
    out = Outputs([], [], [])
    runner = SeriesRunner(window_ms, scorer, forecaster)
    host_runner = host_state.HostRunner(hosts or host_state.HostScorer(host_state.HostParams(), scorer.registry))
    keys = list(windows)
    for i, (sid, start) in enumerate(keys):
        feature, anomaly, forecast = runner.close_window(sid, start, windows[(sid, start)])
        out.features.append(feature)
        host_runner.add(feature)
        if anomaly is not None:
            out.anomalies.append(anomaly)
        if forecast is not None:
            out.forecasts.append(forecast)
        if i + 1 == len(keys) or keys[i + 1][1] != start:   # the last series of this window: its hosts are whole
            out.anomalies.extend(host_runner.close_until(start + window_ms))
    return out
