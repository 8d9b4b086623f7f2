"""PyFlink functions that run the pipeline steps (:mod:`jobs.steps`) inside Flink operators."""

from __future__ import annotations

import time

import orjson
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from augur.config import Config
from jobs import host_state, steps
from jobs.forecasting import Forecaster
from schemas import codec, topics

KEYED_JSON = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
NO_DATA_IDENTITY = ("series_id", "host", "metric", "attrs", "window_end")
END_OF_INPUT_WATERMARK = 2 ** 62  # a bounded source ends with the largest watermark (Long.MAX_VALUE)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class WindowToFeatures(MapFunction):
    """One series' window from the JVM window stage (:mod:`jobs.telemetry_windows`) -> its features record."""

    def __init__(self, cfg: dict):
        self.window_ms = cfg["stream.window-size-ms"]

    def map(self, row):
        window_start, host, metric, attrs_json, w = row
        return steps.collected_window_record(host, metric, orjson.loads(attrs_json), window_start,
                                             window_start + self.window_ms, *w)


class CountedDeadLetters(MapFunction):
    """Base of the operators that write dead letters: counts them per reason as the Flink metric
    ``deadletter_<reason>`` (REST API, web UI, metric reporters)."""

    def open(self, runtime_context: RuntimeContext):
        self.metrics = runtime_context.get_metrics_group()
        self.counters: dict = {}

    def counted(self, key: str, value: str) -> Row:
        """The ``(reason, json)`` dead letter as a row, counted under its reason (the key)."""
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = self.metrics.counter(f"deadletter_{key}")
        counter.inc()
        return Row(key, value)


class RejectedToDeadLetter(CountedDeadLetters):
    """A message the JVM parser refused -> its dead-letter record, with the Python codec's reason."""

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        super().open(runtime_context)
        self.cfg = Config(self.cfg_values)

    def map(self, row):
        payload, jvm_reason = row
        return self.counted(*steps.jvm_rejected_deadletter(bytes(payload), jvm_reason, now_ms(), self.cfg))


class LateToDeadLetter(CountedDeadLetters):
    """A message whose window had closed -> its dead-letter record (reason ``late``)."""

    def map(self, row):
        payload = bytes(row[0])
        try:
            rejected = steps.late(codec.decode(topics.TELEMETRY.name, payload)["ts"])
        except codec.Rejected as refused:  # the two validators disagree: the codec has the last word
            rejected = refused
        return self.counted(*steps.deadletter(rejected, payload, now_ms()))


class ScoreFeatures(KeyedProcessFunction):
    """Per-series detector state in keyed state (plain float arrays); emits anomaly records, and a ``no_data``
    record when an event-time timer finds the series silent for ``stream.no-data-after-ms``.

    Everything a series keeps is one value (the kernel's array and its last window as JSON): PyFlink writes every
    changed state of a bundle back to the JVM with one synchronous round trip each, which is what this stage's rate
    is bound by. For the same reason the timer is not moved on every window: one timer is pending per series, and
    when it fires before the series has been silent long enough it is set again for its last window's deadline."""

    STATE = Types.ROW_NAMED(["kernel", "last"], [Types.PRIMITIVE_ARRAY(Types.DOUBLE()), Types.STRING()])

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        cfg = Config(self.cfg_values)
        self.scorer = steps.EnsembleFeatureScorer.from_config(cfg)
        self.no_data_after = cfg["stream.no-data-after-ms"]
        # the kernel's state, and the last window's identity and end plus the pending timer (JSON, or null)
        self.state = runtime_context.get_state(ValueStateDescriptor("series_state", self.STATE))

    def process_element(self, feature: dict, ctx: KeyedProcessFunction.Context):
        stored = self.state.value()
        kernel = self.scorer.restored(None if stored is None else stored[0])
        anomaly = self.scorer.score(kernel, feature)
        last = None
        if self.no_data_after:
            timer = None if stored is None or stored[1] is None else orjson.loads(stored[1])["timer"]
            if timer is None:
                timer = feature["window_end"] + self.no_data_after
                ctx.timer_service().register_event_time_timer(timer)
            last = orjson.dumps({k: feature[k] for k in NO_DATA_IDENTITY} | {"timer": timer}).decode()
        self.state.update(Row(kernel.tolist(), last))
        if anomaly is not None:
            yield Row(anomaly["series_id"], codec.encode(topics.ANOMALIES.name, anomaly, check=False).decode())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        stored = self.state.value()
        if stored is None or stored[1] is None:
            return
        last = orjson.loads(stored[1])
        if last["timer"] != timestamp:
            return  # not the pending timer (one restored from an older state)
        if not self.no_data_after:  # switched off since the timer was set
            self.state.update(Row(stored[0], None))
            return
        deadline = last["window_end"] + self.no_data_after
        if deadline > timestamp:  # windows came since the timer was set: wait for the last one's deadline
            ctx.timer_service().register_event_time_timer(deadline)
            last["timer"] = deadline
            self.state.update(Row(stored[0], orjson.dumps(last).decode()))
            return
        last["timer"] = None  # the next window sets a timer again
        self.state.update(Row(stored[0], orjson.dumps(last).decode()))
        if ctx.timer_service().current_watermark() >= END_OF_INPUT_WATERMARK:
            return  # the end of a bounded input is not a silence
        record = steps.no_data_record(last, timestamp)
        yield Row(record["series_id"], codec.encode(topics.ANOMALIES.name, record, check=False).decode())


class ScoreHosts(KeyedProcessFunction):
    """Per-host forest scoring (:mod:`jobs.host_state`), keyed by host: the host's feature records of a window are
    gathered, and an event-time timer at the window's last millisecond scores the window once every window
    operator has passed it (the watermark is the minimum over them), so the row is whole whatever the parallelism.

    Two states: the residual kernel's array, written only when a window is scored, and the open windows' parts,
    one JSON entry per window end in a map state, so a record reads and writes its own window's entry only (with
    one JSON value for all open windows, as before, a backlog of N windows waiting for the watermark cost O(N) per
    record: 299 windows were open in the end-to-end test's burst). Windows that a savepoint of the old layout
    holds are moved into the map when their host is next seen; their timers are in the savepoint already
    (tests/test_host_stage_restore.py)."""

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        self.scorer = host_state.HostScorer.from_config(Config(self.cfg_values))
        self.kernel = runtime_context.get_state(
            ValueStateDescriptor("host_kernel", Types.PRIMITIVE_ARRAY(Types.DOUBLE())))
        self.windows = runtime_context.get_map_state(
            MapStateDescriptor("host_open_windows", Types.LONG(), Types.STRING()))
        self.legacy = runtime_context.get_state(ValueStateDescriptor("host_windows", Types.STRING()))
        self.legacy_checked = set()   # hosts whose old state this task has looked at (once each, not per record)

    def _adopt_legacy(self, host: str) -> None:
        """Move the open windows of a savepoint taken before the map state (one JSON object) into the map."""
        if host in self.legacy_checked:
            return
        self.legacy_checked.add(host)
        stored = self.legacy.value()
        if not stored:
            return
        for end, entry in orjson.loads(stored).items():
            self.windows.put(int(end), orjson.dumps(entry).decode())
        self.legacy.clear()

    def process_element(self, feature: dict, ctx: KeyedProcessFunction.Context):
        self._adopt_legacy(ctx.get_current_key())
        end = feature["window_end"]
        stored = self.windows.get(end)
        if stored is None:
            entry = {"start": feature["window_start"], "parts": {}}
            ctx.timer_service().register_event_time_timer(end - 1)
        else:
            entry = orjson.loads(stored)
        host_state.add_contribution(entry["parts"], feature)
        self.windows.put(end, orjson.dumps(entry).decode())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        self._adopt_legacy(ctx.get_current_key())
        end = timestamp + 1
        stored = self.windows.get(end)
        if stored is None:
            return
        self.windows.remove(end)
        entry = orjson.loads(stored)
        kernel = self.scorer.restored(self.kernel.value())
        record = self.scorer.score(kernel, ctx.get_current_key(), entry["start"], end, entry["parts"])
        self.kernel.update(kernel.tolist())
        if record is not None:
            yield Row(record["series_id"], codec.encode(topics.ANOMALIES.name, record, check=False).decode())


class ForecastResources(KeyedProcessFunction):
    """Per-resource forecaster state in keyed state (one plain float array); emits forecasts and retractions."""

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        self.forecaster = Forecaster.from_config(Config(self.cfg_values))
        self.state = runtime_context.get_state(
            ValueStateDescriptor("forecast_state", Types.PRIMITIVE_ARRAY(Types.DOUBLE())))

    def process_element(self, feature: dict, ctx: KeyedProcessFunction.Context):
        stored = self.state.value()
        state = self.forecaster.restored(stored)
        _, forecast = self.forecaster.update(state, feature)
        self.state.update(state.tolist())
        if forecast is not None:
            yield Row(forecast["series_id"], codec.encode(topics.FORECASTS.name, forecast, check=False).decode())


def features_row(feature: dict) -> Row:
    return Row(feature["series_id"], codec.encode(topics.FEATURES.name, feature, check=False).decode())


