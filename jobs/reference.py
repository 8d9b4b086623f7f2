"""An in-process, single-threaded run of the pipeline steps over in-order samples: the reference the engines are
checked against, and a quick way to see what the detectors make of a scenario. Not for large inputs."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from jobs import steps
from schemas import series


def run(samples: Iterable[dict], window_ms: int, scorer: steps.RobustScorer) -> tuple[list[dict], list[dict]]:
    """Tumbling windows aligned to the epoch, every sample on time; returns ``(features, anomalies)``."""
    windows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in samples:
        sid = series.series_id(s["host"], s["metric"], s["attrs"])
        windows[(sid, s["ts"] - s["ts"] % window_ms)].append(s)
    features, anomalies = [], []
    states: dict[str, object] = {}
    for (sid, start) in sorted(windows, key=lambda k: (k[1], k[0])):
        feat = steps.features_record(sid, start, start + window_ms, windows[(sid, start)])
        features.append(feat)
        state = states.setdefault(sid, scorer.init_state())
        anomaly = scorer.score(state, feat)
        if anomaly is not None:
            anomalies.append(anomaly)
    return features, anomalies
