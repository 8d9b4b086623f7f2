"""Multivariate host scoring: one Isolation Forest per host over the host's signals at each window.

The univariate ensemble judges each series alone; a host can also be wrong as a whole (I/O latency, run-queue
latency and HTTP latency all a little up at once) with no series anomalous on its own. Per host and window:

1. the host's feature records are reduced to one row of :data:`SIGNALS` (each the mean, over the host's series of
   that metric, of the variance-stabilised primary value; ``http_errors`` = 5xx / all requests);
2. each signal becomes its robust z against its own trailing ``host.window`` windows (:mod:`udfs.host_residuals`);
3. the host's forest from the registry (trained by ``augur train`` on the same rows, :mod:`models.iforest_export`)
   scores the row in numba (:mod:`udfs.iforest`); a row scoring below the lowest training score (minus
   ``host.margin``) is an anomaly, emitted on ``augur.anomalies.v1`` as the series ``augur.host.state`` of the host;
4. so is a row with a signal beyond its envelope: further from its recent median than in any training row, and at
   least ``ensemble.outlier-z`` robust sigmas. A forest cannot judge there: it never splits on a signal that was
   flat in training, and a point far beyond the training range lands in the leaves of its most extreme training
   points, so an error burst on a host that never had an error, or a retransmit storm, scores like a normal window.
   The record lists both detectors (``iforest``, ``envelope``) and their votes.

A host without a forest is still followed (so its residuals are warm when a forest arrives) but never judged.
Engines feed the host's feature records of a window in any order: contributions are kept per series and summed in
series-id order when the window closes, so the Flink job, the reference run and the backfill agree to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from augur.config import Config
from jobs.steps import JOB_PRODUCER
from models.artifacts import digest_tag
from models.registry import HostForest, ModelRegistry
from schemas import series
from udfs import host_residuals, iforest, robust_zscore
from udfs.transforms import SCALE_FLOORS, stabilize

HOST_METRIC = "augur.host.state"
SIGNALS = ("cpu", "runq_p99", "io_p99", "retrans", "http_p99", "http_errors", "memory", "filesystem")
METRIC_SIGNAL = {"system.cpu.utilization": "cpu", "ebpf.runqueue.latency": "runq_p99",
                 "ebpf.block.io.latency": "io_p99", "ebpf.tcp.retransmits": "retrans",
                 "http.server.request.duration": "http_p99", "system.memory.usage": "memory",
                 "system.filesystem.usage": "filesystem"}
# signals that count events: the collectors report a count as 0 only for a while after its port was active
# (collect.zero-fill-ms), so a window of the host with no sample of one had none (not "unknown": a quiet signal that
# starts counting is then judged against its zeros)
ZERO_WHEN_ABSENT = ("retrans",)
REQUESTS_METRIC = "http.server.requests"
REQUESTS, ERRORS = "requests", "errors_5xx"
# each signal's smallest trusted scale on its stabilised axis (the floors of its metric's type)
_TYPE = {"cpu": "gauge", "runq_p99": "histogram", "io_p99": "histogram", "retrans": "counter",
         "http_p99": "histogram", "memory": "gauge", "filesystem": "gauge"}
REL_FLOORS = np.array([SCALE_FLOORS[_TYPE[s]][0] if s in _TYPE else 0.0 for s in SIGNALS])
ABS_FLOORS = np.array([SCALE_FLOORS[_TYPE[s]][1] if s in _TYPE else 0.01 for s in SIGNALS])

Parts = dict[str, dict[str, float]]  # part (signal, or the request counts) -> series id -> value


def relevant(feature: dict) -> bool:
    """Whether the feature record feeds its host's row."""
    return feature["metric"] in METRIC_SIGNAL or feature["metric"] == REQUESTS_METRIC


def add_contribution(parts: Parts, feature: dict) -> None:
    """Add one feature record of the window to its host's parts (a record without a value adds nothing)."""
    v = feature["value"]
    if v is None:
        return
    metric = feature["metric"]
    if metric == REQUESTS_METRIC:
        parts.setdefault(REQUESTS, {})[feature["series_id"]] = float(v)
        if feature["attrs"].get(series.HTTP_STATUS_CLASS) == "5xx":
            parts.setdefault(ERRORS, {})[feature["series_id"]] = float(v)
        return
    signal = METRIC_SIGNAL.get(metric)
    if signal is not None:
        x = stabilize(feature["type"], float(v), feature["window_end"] - feature["window_start"])
        parts.setdefault(signal, {})[feature["series_id"]] = x


def _ordered_sum(values: dict[str, float]) -> float:
    return math.fsum(values[k] for k in sorted(values))


def host_row(parts: Parts) -> np.ndarray:
    """The window's row of :data:`SIGNALS`: NaN where the host reported nothing for a signal, except 0 for the event
    counts of :data:`ZERO_WHEN_ABSENT` (and an error ratio of 0 for requests without a 5xx)."""
    row = np.full(len(SIGNALS), np.nan)
    for i, name in enumerate(SIGNALS):
        if name == "http_errors":
            total = _ordered_sum(parts.get(REQUESTS, {}))
            if total > 0:
                row[i] = _ordered_sum(parts.get(ERRORS, {})) / total
        elif parts.get(name):
            row[i] = _ordered_sum(parts[name]) / len(parts[name])
        elif name in ZERO_WHEN_ABSENT:
            row[i] = 0.0
    return row


@dataclass(frozen=True)
class HostParams:
    window: int = 60
    min_history: int = 15
    outlier_z: float = 6.0
    margin: float = 0.0

    @classmethod
    def from_config(cls, cfg: Config) -> "HostParams":
        return cls(cfg["host.window"], cfg["host.min-history"], cfg["ensemble.outlier-z"], cfg["host.margin"])


# the residual state's meaning: bump it when that changes and its size does not (the tag below then differs)
HOST_STATE_VERSION = 1


class HostScorer:
    """Scores a host's windows over one explicit state array per host (keyed state, or the runners' memory): the
    residual kernel's state (:mod:`udfs.host_residuals`) followed by :attr:`tag`, which names its layout."""

    def __init__(self, params: HostParams, registry: ModelRegistry):
        self.params = params
        self.registry = registry
        self.size = host_residuals.state_size(len(SIGNALS), params.window)
        layout = f"host-residuals/{HOST_STATE_VERSION}/{','.join(SIGNALS)}/{params.window}/{robust_zscore.HEADER}"
        self.tag = digest_tag(layout.encode())

    @classmethod
    def from_config(cls, cfg: Config) -> "HostScorer":
        return cls(HostParams.from_config(cfg), ModelRegistry(cfg["models.dir"] or None, cfg["models.recheck-s"]))

    def init_state(self) -> np.ndarray:
        return np.append(host_residuals.init_state(len(SIGNALS), self.params.window), self.tag)

    def restored(self, stored) -> np.ndarray:
        """A host's state from keyed state: kept when it carries this layout's tag; a state kept before states were
        tagged (this meaning, one value shorter) gets the tag; any other (another ``host.window``, another signal
        list or version) starts fresh, as the numba kernel would read it out of place."""
        if stored is not None:
            state = np.asarray(stored, dtype=np.float64)
            if state.shape[0] == self.size + 1 and state[-1] == self.tag:
                return state
            if state.shape[0] == self.size:
                return np.append(state, self.tag)
        return self.init_state()

    def residuals(self, state: np.ndarray, parts: Parts) -> tuple[np.ndarray, bool]:
        """The window's row as deviations (and whether every reported signal was warm), learned into ``state``."""
        z = np.empty(len(SIGNALS))
        ready = host_residuals.step(state[:-1], host_row(parts), self.params.min_history, self.params.outlier_z,
                                    REL_FLOORS, ABS_FLOORS, z)
        return z, ready

    def score(self, state: np.ndarray, host: str, window_start: int, window_end: int, parts: Parts) -> dict | None:
        """Learn the host's window; return its anomaly record if the host's forest finds it anomalous, or a signal
        is beyond its training envelope."""
        z, ready = self.residuals(state, parts)
        forest = self.registry.forest_for(host, len(SIGNALS))
        if forest is None or not ready:
            return None
        s = float(forest_scores(forest, z[None, :])[0])
        isolated = s < forest.threshold - self.params.margin
        excess = envelope_excess(forest, z, self.params.outlier_z)
        if not isolated and not excess.max() > 1.0:
            return None
        return anomaly_record(host, window_start, window_end, s, isolated, excess, z, forest)


def envelope_excess(forest: HostForest, z: np.ndarray, floor: float) -> np.ndarray:
    """Per signal, ``|z| / bound``, the bound being the signal's training envelope but at least ``floor`` (> 1:
    beyond it); zeros for a forest saved without an envelope."""
    if forest.envelope is None:
        return np.zeros(len(z))
    return np.abs(z) / np.maximum(forest.envelope, floor)


def forest_scores(forest: HostForest, rows: np.ndarray) -> np.ndarray:
    a = forest.arrays
    return iforest.score_samples(a["roots"], a["feature"], a["threshold"], a["left"], a["right"], a["leaf_value"],
                                 float(a["denominator"][0]), np.ascontiguousarray(rows, dtype=np.float64))


def anomaly_record(host: str, window_start: int, window_end: int, s: float, isolated: bool, excess: np.ndarray,
                   z: np.ndarray, forest: HostForest) -> dict:
    beyond = float(excess.max())
    strength = min(max(-s, 0.0), 1.0)   # score_samples is in (-1, 0): its negation is the forest's anomaly score
    detectors = [{"name": "iforest", "score": strength, "raw": s, "vote": isolated, "model_version": forest.version}]
    if forest.envelope is not None:     # x / (1 + x): 0.5 at the envelope, towards 1 far beyond it
        detectors.append({"name": "envelope", "score": beyond / (1.0 + beyond), "raw": beyond, "vote": beyond > 1.0,
                          "model_version": forest.version})
    top = sorted(range(len(SIGNALS)), key=lambda i: -abs(z[i]))[:3]
    odd = ", ".join(f"{SIGNALS[i]} {z[i]:+.1f}" for i in top if z[i] != 0.0) or "no single signal"
    why = []
    if isolated:
        why.append(f"more isolated than any window its forest was trained on ({strength:.3f} > "
                   f"{-forest.threshold:.3f})")
    if beyond > 1.0:
        out = ", ".join(SIGNALS[i] for i in np.argsort(-excess, kind="stable") if excess[i] > 1.0)
        why.append(f"{out} beyond anything in its training (up to {beyond:.1f}x its envelope)")
    return {
        "v": 1, "ts": window_end, "host": host, "producer": JOB_PRODUCER,
        "series_id": series.series_id(host, HOST_METRIC, {}), "metric": HOST_METRIC, "attrs": {},
        "window_start": window_start, "window_end": window_end, "value": strength,
        "score": max(d["score"] for d in detectors if d["vote"]), "verdict": "anomaly", "detectors": detectors,
        "explanation": (f"state of host {host}: {'; '.join(why)}; furthest from their recent medians (robust z): "
                        f"{odd}")[:512],
    }


class HostRunner:
    """Hosts' windows in memory for the in-process engines (the reference run, the backfill): feature records in,
    each host's window scored once :meth:`close_until` says it is complete."""

    def __init__(self, scorer: HostScorer):
        self.scorer = scorer
        self.states: dict[str, np.ndarray] = {}
        self.pending: dict[str, dict[int, tuple[int, Parts]]] = {}

    def add(self, feature: dict) -> None:
        if relevant(feature):
            windows = self.pending.setdefault(feature["host"], {})
            _, parts = windows.setdefault(feature["window_end"], (feature["window_start"], {}))
            add_contribution(parts, feature)

    def close_until(self, window_end: int) -> list[dict]:
        """Score every pending host window ending at or before ``window_end``, in time order; their anomalies."""
        out = []
        for host in sorted(self.pending):
            windows = self.pending[host]
            for end in sorted(e for e in windows if e <= window_end):
                start, parts = windows.pop(end)
                state = self.states.get(host)
                if state is None:
                    state = self.states[host] = self.scorer.init_state()
                record = self.scorer.score(state, host, start, end, parts)
                if record is not None:
                    out.append(record)
        return out


def training_rows(features: list[dict], params: HostParams) -> dict[str, np.ndarray]:
    """Per host, the residual rows the scorer would compute over these feature records (in any order), past warm-up:
    what ``augur train`` fits the host's forest on."""
    scorer = HostScorer(params, ModelRegistry(None))
    windows: dict[str, dict[int, Parts]] = {}
    for f in features:
        if relevant(f):
            add_contribution(windows.setdefault(f["host"], {}).setdefault(f["window_end"], {}), f)
    out = {}
    for host, by_end in sorted(windows.items()):
        state, rows = scorer.init_state(), []
        for end in sorted(by_end):
            z, ready = scorer.residuals(state, by_end[end])
            if ready:
                rows.append(z)
        out[host] = np.array(rows).reshape(-1, len(SIGNALS))
    return out
