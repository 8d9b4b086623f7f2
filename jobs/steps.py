"""The engine-independent steps of the pipeline: parse -> window features -> score.

Every engine (the Flink stream, the Beam backfill, the CLI) calls these same functions, so they give the same
answers on the same data. They work on plain dicts and NumPy arrays and know nothing of Kafka or Flink.
"""

from __future__ import annotations

import math
import socket
from dataclasses import replace

import numpy as np

from augur import __version__
from augur.config import Config
from augur.timeparse import format_ms
from models.ensemble_scorer import EnsembleScorer, detectors_list, explain
from models.registry import ModelRegistry
from schemas import codec, series, topics
from udfs import ensemble as ens
from udfs.ensemble import VERDICT_ANOMALY
from udfs.ensemble_params import EnsembleParams
from udfs.transforms import SCALE_FLOORS, stabilize, unstabilize
from udfs import histogram
from udfs.window_features import finite_or_none, window_features

JOB_PRODUCER = {"name": "augur-stream", "version": __version__, "instance": socket.gethostname()}
PRIMARY_FEATURE = {"gauge": "mean", "counter": "rate", "delta": "rate", "histogram": "p99"}


def parse_telemetry(raw: bytes | str, now_ms: int, cfg: Config) -> tuple[str, dict]:
    """Decode one telemetry message into ``(series_id, record)``; raise :class:`codec.Rejected` if unusable."""
    record = codec.decode(topics.TELEMETRY.name, raw, max_bytes=cfg["stream.max-message-bytes"])
    skew = record["ts"] - now_ms
    if skew > cfg["stream.max-future-skew-ms"]:
        raise codec.Rejected("clock_skew", f"event time is {skew / 1000:.1f} s ahead of this job's clock "
                             f"(limit {cfg['stream.max-future-skew-ms'] / 1000:.0f} s)", record["ts"])
    return series.series_id(record["host"], record["metric"], record["attrs"]), record


def deadletter_record(rejected: codec.Rejected, payload: bytes | str, now_ms: int,
                      source_topic: str = topics.TELEMETRY.name) -> dict:
    """The dead-letter record for a rejected input."""
    return codec.deadletter_record(rejected, payload, source_topic, now_ms, JOB_PRODUCER["instance"], JOB_PRODUCER)


def deadletter(rejected: codec.Rejected, payload: bytes | str, now_ms: int,
               source_topic: str = topics.TELEMETRY.name) -> tuple[str, str]:
    """``(key, json)`` of the dead-letter record for a rejected input."""
    rec = deadletter_record(rejected, payload, now_ms, source_topic)
    return rec["reason"], codec.encode(topics.DEADLETTER.name, rec, check=False).decode()


def jvm_rejected_deadletter(payload: bytes, jvm_reason: str, now_ms: int, cfg: Config) -> tuple[str, str]:
    """``(key, json)`` of the dead-letter record of a message the stream's JVM parser refused (``jvm_reason``).

    The reason and detail come from the Python codec, the reference every engine shares; should it accept a
    message the JVM refused (the two validators disagree, or the clock moved between the two skew checks), the
    message is still dead-lettered, with the JVM's reason."""
    try:
        parse_telemetry(payload, now_ms, cfg)
    except codec.Rejected as rejected:
        return deadletter(rejected, payload, now_ms)
    reason, _, detail = jvm_reason.partition(":")
    if reason not in codec.DEADLETTER_REASONS:
        reason, detail = "schema_violation", jvm_reason
    return deadletter(codec.Rejected(reason, f"refused by the stream's JVM parser: {detail.strip() or reason}"),
                      payload, now_ms)


def late(event_ts: int) -> codec.Rejected:
    """The rejection of a sample whose window has already closed."""
    return codec.Rejected("late", "arrived after its window had closed (the watermark, event time minus the "
                          "allowed out-of-orderness, had passed the window's end)", event_ts)


def features_record(sid: str, window_start: int, window_end: int, samples: list[dict]) -> dict:
    """The ``augur.features.v1`` record of one series' window (``samples`` all belong to ``sid``)."""
    samples = sorted(samples, key=lambda s: s["ts"])
    first = samples[0]
    histogram_type = first["type"] == "histogram"
    return window_record(
        sid, first["host"], first["metric"], first["attrs"], first["type"], window_start, window_end,
        ts=np.fromiter((s["ts"] for s in samples), dtype=np.int64, count=len(samples)),
        values=None if histogram_type else np.fromiter((s["value"] for s in samples), dtype=np.float64,
                                                       count=len(samples)),
        merged=histogram.merge([s["hist"]["counts"] for s in samples]) if histogram_type else None,
        hist_sums=np.fromiter((s["hist"]["sum"] for s in samples), dtype=np.float64, count=len(samples))
        if histogram_type else None,
        capacity=samples[-1].get("capacity"))


def collected_window_record(host: str, metric: str, attrs: dict, window_start: int, window_end: int, mtype: str,
                            ts, vals, counts, hsums, capacity: float | None) -> dict:
    """The features record of a window the stream's JVM stage collected (SERIES_WINDOW: sorted timestamps, values
    and histogram sums, merged histogram counts, the latest capacity)."""
    histogram_type = mtype == "histogram"
    return window_record(
        series.series_id(host, metric, attrs), host, metric, attrs, mtype, window_start, window_end,
        ts=np.asarray(ts, dtype=np.int64), values=None if histogram_type else np.asarray(vals, dtype=np.float64),
        merged=np.asarray(counts, dtype=np.float64) if histogram_type else None,
        hist_sums=np.asarray(hsums, dtype=np.float64) if histogram_type else None, capacity=capacity)


def window_record(sid: str, host: str, metric: str, attrs: dict, mtype: str, window_start: int, window_end: int,
                  ts: np.ndarray, values: np.ndarray | None, merged: np.ndarray | None,
                  hist_sums: np.ndarray | None, capacity: float | None) -> dict:
    """The ``augur.features.v1`` record of one series' window from its samples' arrays, sorted by event time (what
    the stream's JVM window stage hands over, and what :func:`features_record` builds from sample records)."""
    value, feats = window_features(mtype, ts, values, merged, hist_sums, window_end - window_start)
    return {
        "v": 1, "ts": window_end, "host": host, "producer": JOB_PRODUCER, "series_id": sid,
        "metric": metric, "type": mtype, "attrs": dict(sorted(attrs.items())),
        "window_start": window_start, "window_end": window_end, "count": int(ts.size),
        "value": finite_or_none(value), "capacity": None if capacity is None else float(capacity),
        "features": {k: (v if k == "obs_count" else finite_or_none(v)) for k, v in feats.items()},
    }


def no_data_record(last_feature: dict, noticed_at: int) -> dict:
    """The ``augur.anomalies.v1`` record (verdict ``no_data``) of a series whose last window was ``last_feature``
    and which had sent nothing more by event time ``noticed_at``."""
    silent_s = (noticed_at - last_feature["window_end"]) / 1000
    name = series.describe(last_feature["metric"], last_feature["attrs"])
    return {
        "v": 1, "ts": noticed_at, "host": last_feature["host"], "producer": JOB_PRODUCER,
        "series_id": last_feature["series_id"], "metric": last_feature["metric"], "attrs": last_feature["attrs"],
        "window_start": last_feature["window_end"], "window_end": noticed_at, "value": None, "score": 1.0,
        "verdict": "no_data", "detectors": [],
        "explanation": (f"{name} on {last_feature['host']}: no samples for {silent_s:.0f} s, since "
                        f"{format_ms(last_feature['window_end'])}")[:512],
    }


class EnsembleFeatureScorer:
    """Scores feature records with the ensemble kernel over one explicit state array per series.

    The feature's primary value is variance-stabilised by its type first (:mod:`udfs.transforms`), with that type's
    scale floors; models come from the registry (``models.dir``), looked at again every ``models.recheck-s``.
    Emits the ``augur.anomalies.v1`` record of every window whose verdict is "anomaly" (an incident's windows).
    """

    def __init__(self, params: EnsembleParams, registry: ModelRegistry):
        self.params = params
        self.registry = registry
        self.by_type = {t: replace(params, rel_floor=rel, abs_floor=abs_) for t, (rel, abs_) in SCALE_FLOORS.items()}
        self.arrays = {t: p.to_array() for t, p in self.by_type.items()}
        self.packed = params.to_array()   # the layout's sizes (the types' arrays differ in their floors only)
        fresh = self.init_state()
        self.layout = (fresh.shape[0], fresh[ens.S_LAYOUT])   # what a state of this layout has, checked per record

    @classmethod
    def from_config(cls, cfg: Config) -> "EnsembleFeatureScorer":
        return cls(EnsembleParams.from_options(cfg.section("ensemble")),
                   ModelRegistry(cfg["models.dir"] or None, cfg["models.recheck-s"]))

    def init_state(self) -> np.ndarray:
        return EnsembleScorer(self.params).state

    def restored(self, stored) -> np.ndarray:
        """A series' kernel state from keyed state: as kept, carried over from an earlier layout, or fresh when
        it has another layout (:func:`udfs.ensemble.restore`)."""
        if stored is not None:
            state = np.asarray(stored, dtype=np.float64)
            if (state.shape[0], state[ens.S_LAYOUT]) == self.layout:
                return state
            state = ens.restore(state, self.packed)
            if state is not None:
                return state
        return self.init_state()

    def score(self, state: np.ndarray, feature: dict) -> dict | None:
        """Score one window causally (then learn it); return the anomaly record if the verdict is 'anomaly'."""
        raw = feature["value"]
        x = math.nan if raw is None else float(raw)
        mtype = feature["type"]
        window_ms = feature["window_end"] - feature["window_start"]
        params = self.by_type[mtype]
        scorer = EnsembleScorer(params, state=state, packed=self.arrays[mtype])
        scorer.use(self.registry.models_for(feature["series_id"]))
        out = scorer.score(np.array([stabilize(mtype, x, window_ms)]), np.array([feature["window_end"] / 1000.0]))
        if out.verdict[0] != VERDICT_ANOMALY:
            return None
        name = series.describe(feature["metric"], feature["attrs"])
        expected = unstabilize(mtype, float(out.expected[0]), window_ms)
        explanation = (f"{PRIMARY_FEATURE[mtype]} of " + explain(name, x, expected, out.probs[0], params))
        # an incident's later windows are anomalies too (hysteresis), whatever their own score: say which this is
        explanation += ("; opens an incident" if out.onset[0] else
                        f"; continues an open incident, which closes after {params.exit_after} windows in a row "
                        f"below {params.exit:g}")
        return {
            "v": 1, "ts": feature["window_end"], "host": feature["host"], "producer": JOB_PRODUCER,
            "series_id": feature["series_id"], "metric": feature["metric"], "attrs": feature["attrs"],
            "window_start": feature["window_start"], "window_end": feature["window_end"], "value": x,
            "score": float(out.score[0]), "verdict": "anomaly",
            "detectors": detectors_list(out.raw[0], out.probs[0], params, scorer.detector_versions()),
            "explanation": explanation[:512],
        }
