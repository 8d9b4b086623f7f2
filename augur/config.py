"""Augur's configuration: every option declared once, here, with its type, default and meaning.

Values come from, in increasing priority: the defaults below, a YAML file (``--config`` or ``$AUGUR_CONFIG``),
environment variables (``kafka.bootstrap-servers`` -> ``AUGUR_KAFKA_BOOTSTRAP_SERVERS``) and explicit
``--set key=value`` overrides. Unknown keys and values of the wrong type are errors, not silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass(frozen=True)
class Option:
    type: Callable[[Any], Any]
    default: Any
    help: str


def _positive_int(v: Any) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError(f"must be > 0, got {n}")
    return n


def _non_negative_int(v: Any) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"must be >= 0, got {n}")
    return n


def _int_between(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        n = int(v)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {n}")
        return n
    return check


def _positive_float(v: Any) -> float:
    x = float(v)
    if not x > 0:
        raise ValueError(f"must be > 0, got {x}")
    return x


def _fraction(v: Any) -> float:
    x = float(v)
    if not 0 < x < 1:
        raise ValueError(f"must be between 0 and 1 (exclusive), got {x}")
    return x


def _non_negative_float(v: Any) -> float:
    x = float(v)
    if not x >= 0:
        raise ValueError(f"must be >= 0, got {x}")
    return x


def _cgroup_paths(v: Any) -> tuple[str, ...]:
    """``"/system.slice/nginx.service,/kubepods.slice"`` (or a list) -> normalised paths below the cgroup v2 mount,
    none inside another (a socket in both would run the programs twice); empty: none given."""
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    out: list[str] = []
    for item in (str(x).strip() for x in items):
        if not item:
            continue
        parts = [p for p in item.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{item!r}: a cgroup path may not contain '..'")
        path = "/" + "/".join(parts)
        if path not in out:
            out.append(path)
    for a in out:
        for b in out:
            if a != b and (a == "/" or b.startswith(a + "/")):
                raise ValueError(f"{a} contains {b}: list only {a}, whose programs already see {b}'s sockets")
    return tuple(out)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


OPTIONS: dict[str, Option] = {
    "kafka.bootstrap-servers": Option(str, "127.0.0.1:9092", "Kafka brokers that jobs, collectors and tools use"),
    "infra.kafka.port": Option(_positive_int, 9092, "client port of the broker `augur infra up` starts"),
    "infra.kafka.controller-port": Option(_positive_int, 9093, "KRaft controller port of that broker"),
    "infra.kafka.heap-mb": Option(_positive_int, 512, "JVM heap of that broker"),
    "infra.flink.rest-port": Option(_positive_int, 8081, "REST port of the cluster `augur cluster up` starts"),
    "infra.flink.rpc-port": Option(_positive_int, 6123, "JobManager RPC port of that cluster"),
    "infra.flink.taskmanagers": Option(_positive_int, 2, "TaskManagers of that cluster"),
    "infra.flink.slots": Option(_positive_int, 2, "task slots per TaskManager (a parallelism-2 job keeps room to "
                                "recover when one TaskManager is lost)"),
    "stream.window-size-ms": Option(_positive_int, 60_000, "tumbling event-time window of the feature stage"),
    "stream.out-of-orderness-ms": Option(_non_negative_int, 20_000, "bounded out-of-orderness of watermarks"),
    "stream.no-data-after-ms": Option(_non_negative_int, 300_000, "a series silent this long (event time, as the "
                                      "watermark says) gets one no_data record on the anomalies topic (0: never)"),
    "stream.idle-timeout-ms": Option(_positive_int, 30_000, "a source split idle this long stops holding back "
                                     "watermarks (too short, and a split slowed by backpressure counts as idle: its "
                                     "samples then arrive late)"),
    "stream.max-future-skew-ms": Option(_non_negative_int, 300_000, "records stamped further than this after the "
                                        "broker appended them are rejected (clock_skew)"),
    "stream.max-message-bytes": Option(_positive_int, 65_536, "larger telemetry messages are rejected (oversized)"),
    "stream.max-partition-fetch-bytes": Option(_positive_int, 65_536, "bytes fetched per Kafka partition at a "
                                               "time: small, so that no partition waits past the idle timeout "
                                               "while another's backlog drains"),
    "stream.parallelism": Option(_positive_int, 1, "parallelism of the streaming job"),
    "stream.checkpoint-interval-ms": Option(_non_negative_int, 2_000, "checkpoint interval; the exactly-once sinks "
                                            "commit with each checkpoint, so read_committed consumers see output "
                                            "this late at most (0 disables checkpoints: at-least-once sinks)"),
    "stream.checkpoint-dir": Option(str, "", "checkpoint folder or URI (default: <cache>/run/checkpoints)"),
    "stream.transactional-id-prefix": Option(str, "augur-stream", "prefix of the Kafka transactional ids of the "
                                             "exactly-once sinks: unique per job, stable across its restarts"),
    "stream.transaction-timeout-ms": Option(_positive_int, 600_000, "Kafka transaction timeout of the sinks (at "
                                            "most the broker's transaction.max.timeout.ms, 15 min by default)"),
    "stream.start-from": Option(str, "group-offsets", "where a job without committed offsets starts: group-offsets "
                                "(committed, else earliest), earliest, latest, or an epoch-ms record timestamp"),
    "stream.consumer-group": Option(str, "augur-stream", "Kafka consumer group of the streaming job"),
    "archive.dir": Option(str, "", "root (folder or URI) of the Parquet archive the archive job writes and the "
                          "backfill reads (default: <cache>/run/archive)"),
    "archive.checkpoint-interval-ms": Option(_positive_int, 60_000, "checkpoint interval of the archive job: "
                                             "Parquet files are finished at each checkpoint, so the archive lags "
                                             "this much and writes a file per partition this often"),
    "archive.consumer-group": Option(str, "augur-archive", "Kafka consumer group of the archive job"),
    "collect.interval-ms": Option(_positive_int, 10_000, "collectors flush their in-kernel aggregates this often"),
    "collect.host": Option(str, "", "host name put on collected telemetry (default: this machine's hostname)"),
    "collect.max-pids": Option(_positive_int, 16_384, "bound of per-thread BPF maps (in-flight wakeups, requests)"),
    "collect.max-keys": Option(_positive_int, 4_096, "bound of per-key aggregation maps (processes, devices, ports)"),
    "collect.zero-fill-ms": Option(_non_negative_int, 3_600_000, "TCP and HTTP event counts (a port's "
                                   "retransmits, a route's 5xx answers) are reported as 0 while quiet, until quiet "
                                   "this long (0: only counts with events are reported)"),
    "collect.http-exact-rate": Option(_non_negative_int, 10_000, "HTTP requests per second per CPU (counted in 10 ms "
                                      "windows) that are all timed and counted, each once"),
    "collect.http-sample-every": Option(_positive_int, 16, "beyond collect.http-exact-rate, one HTTP request in this "
                                        "many, at random, is timed and counted this many times (1: every request, "
                                        "always)"),
    "collect.http-cgroups": Option(_cgroup_paths, (), "cgroup v2 paths (comma-separated, below its mount, e.g. "
                                   "/system.slice/nginx.service) whose sockets the HTTP programs watch, and only "
                                   "theirs: no other packet runs them (empty: the root, every socket of the host)"),
    "collect.profile-hz": Option(_int_between(1, 1000), 49, "profile signal: on-CPU stacks sampled this many "
                                 "times a second on every CPU (49, not 50, so the samples do not beat with timers "
                                 "of round rates)"),
    "collect.profile-max-stacks": Option(_int_between(1, 999), 100, "profile signal: stacks kept per process and "
                                         "interval, most frequent first; the rest are counted as one "
                                         "'[other stacks]'"),
    "collect.top-processes": Option(_positive_int, 20, "processes reported by name per interval; the rest as 'other'"),
    "collect.events-per-second": Option(_positive_int, 200, "rate limit of one-by-one events (exec, exit, ...)"),
    "collect.buffer-records": Option(_positive_int, 100_000, "records buffered while Kafka is unreachable; "
                                     "beyond it the oldest are dropped and counted"),
    "collect.buffer-bytes": Option(_positive_int, 64 << 20, "bytes of encoded records buffered per topic while Kafka "
                                   "is unreachable (a bound for profiles, which are large); beyond it the oldest "
                                   "are dropped and counted"),
    "collect.prometheus-port": Option(_non_negative_int, 9464, "collector self-metrics endpoint (0 disables)"),
    "host.window": Option(_positive_int, 60, "host forest: each signal's deviation is taken against its last this "
                          "many windows (median and MAD)"),
    "host.min-history": Option(_positive_int, 15, "host forest: windows a signal needs before a host is judged"),
    "host.margin": Option(_non_negative_float, 0.0, "host forest: an anomaly scores this much below the lowest "
                          "training score (score_samples units; 0: any window more isolated than all of training)"),
    "models.dir": Option(str, "", "model registry: trained models per series (empty: online detectors only)"),
    "models.recheck-s": Option(_positive_float, 60.0, "the registry is looked at again this often, so new model "
                               "versions reach a running job without a restart"),
    "forecast.step-ms": Option(_positive_int, 1_200_000, "forecasts resample usage to its maximum per step"),
    "forecast.history-steps": Option(_positive_int, 576, "steps of history kept per resource (576 x 20 min = 8 days)"),
    "forecast.min-history-ms": Option(_positive_int, 24 * 3_600_000, "history needed before a first forecast "
                                      "(a full daily cycle, so a morning ramp is not taken for a fill)"),
    "forecast.horizon-ms": Option(_positive_int, 24 * 3_600_000, "a forecast is raised when the earliest plausible "
                                  "exhaustion falls within this horizon"),
    "forecast.season-ms": Option(_positive_int, 24 * 3_600_000, "the usage's main cycle (daily); acceleration is "
                                 "only judged over at least one cycle"),
    "forecast.recent-ms": Option(_positive_int, 4 * 3_600_000, "growth 'stopped' is judged on this recent span "
                                 "(longer than the gaps between batch writes)"),
    "forecast.confidence": Option(_fraction, 0.9, "two-sided confidence of the exhaustion bounds"),
    "forecast.min-trend": Option(_fraction, 0.5, "how clearly pairs of points must agree on growth (0..1)"),
    "forecast.peak-quantile": Option(_fraction, 0.98, "quantile of the residuals taken as the usage's peaks"),
    "forecast.hysteresis": Option(_non_negative_float, 0.25, "a raised forecast is retracted only when the "
                                  "earliest exhaustion is beyond horizon x (1 + hysteresis)"),
    "forecast.confirm-steps": Option(_positive_int, 2, "consecutive steps that must agree before a forecast is "
                                     "raised or retracted"),
    "actions.dry-run": Option(_bool, True, "audit what the closed loop would do without doing it"),
    "actions.on": Option(str, "forecasts,anomalies", "topics whose records trigger actions (forecasts, anomalies)"),
    "actions.webhook-url": Option(str, "", "Alertmanager-compatible endpoint, e.g. http://am:9093/api/v2/alerts"),
    "actions.command": Option(str, "", "local command run (no shell) for each raised forecast or anomaly"),
    "actions.timeout-ms": Option(_positive_int, 30_000, "timeout of one webhook call or command"),
    "actions.min-interval-ms": Option(_non_negative_int, 900_000, "at most one action per series and kind this often"),
    "actions.max-per-minute": Option(_positive_int, 30, "at most this many actions per minute in all"),
    "actions.audit-file": Option(str, "", "JSONL audit of every action taken or skipped "
                                 "(default: <run dir>/actions.audit.jsonl)"),
    "actions.consumer-group": Option(str, "augur-actions", "Kafka consumer group of `augur act`"),
    "forecast.update-fraction": Option(_fraction, 0.1, "a raised forecast is re-sent when its predicted time "
                                       "moves by this fraction of the time left"),
}


def _weights(v: Any) -> tuple:
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    out = tuple(float(x) for x in items)
    if any(not w >= 0 for w in out):
        raise ValueError(f"weights must be >= 0, got {v!r}")
    return out


def _ensemble_options() -> dict[str, Option]:
    """The ensemble's options, declared once with their defaults in :class:`udfs.ensemble_params.EnsembleParams`."""
    from udfs.ensemble_params import option_types
    types = {"int": _positive_int, "float": _non_negative_float, "str": str, "tuple": _weights}
    return {key: Option(types[t], default, help_text) for key, (t, default, help_text) in option_types().items()}


OPTIONS.update(_ensemble_options())


def env_name(key: str) -> str:
    return "AUGUR_" + key.upper().replace(".", "_").replace("-", "_")


class Config(Mapping[str, Any]):
    """An immutable, validated view of all options."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        merged = {k: o.default for k, o in OPTIONS.items()}
        for k, v in (values or {}).items():
            merged[k] = _coerce(k, v)
        self._values = merged

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> "Config":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = path or environ.get("AUGUR_CONFIG")
        if path:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: expected a mapping of option keys to values")
            values.update(_flatten(raw))
        for key in OPTIONS:
            if env_name(key) in environ:
                values[key] = environ[env_name(key)]
        values.update(overrides or {})
        return cls(values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        return Config({**self._values, **overrides})

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(f"unknown option {key!r}")
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def section(self, prefix: str) -> dict[str, Any]:
        """The options under ``prefix.`` (e.g. ``section("ensemble")``)."""
        return {k: v for k, v in self._values.items() if k.startswith(prefix + ".")}

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """Turn ``["a.b=1", ...]`` (from ``--set``) into a dict, rejecting malformed pairs."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _coerce(key: str, value: Any) -> Any:
    if key not in OPTIONS:
        raise ConfigError(f"unknown option {key!r}; known options: {', '.join(sorted(OPTIONS))}")
    try:
        return OPTIONS[key].type(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"option {key!r}: invalid value {value!r} ({e})") from None
