"""PyFlink functions that run the pipeline steps (:mod:`jobs.steps`) inside Flink operators."""

from __future__ import annotations

import time

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.state import ValueStateDescriptor

from augur.config import Config
from jobs import steps
from jobs.forecasting import Forecaster
from schemas import codec, topics

KEYED_JSON = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
DEADLETTER_TAG = OutputTag("deadletter", KEYED_JSON)
LATE_TAG = OutputTag("late", Types.PICKLED_BYTE_ARRAY())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ParseTelemetry(ProcessFunction):
    """Raw message -> ``(series_id, record)``; anything unusable goes to the dead-letter side output."""

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        self.cfg = Config(self.cfg_values)

    def process_element(self, row, ctx: ProcessFunction.Context):
        value = row[0]
        now = now_ms()
        try:
            yield steps.parse_telemetry(value, now, self.cfg)
        except codec.Rejected as rejected:
            yield DEADLETTER_TAG, Row(*steps.deadletter(rejected, value, now))


class WindowFeatures(ProcessWindowFunction):
    """All samples of one series in one window -> its ``augur.features.v1`` record."""

    def process(self, key: str, context: ProcessWindowFunction.Context, elements):
        window = context.window()
        yield steps.features_record(key, window.start, window.end, [record for _, record in elements])


class ScoreFeatures(KeyedProcessFunction):
    """Per-series detector state in keyed state (plain float arrays); emits anomaly records."""

    def __init__(self, cfg: dict):
        self.cfg_values = cfg

    def open(self, runtime_context: RuntimeContext):
        self.scorer = steps.EnsembleFeatureScorer.from_config(Config(self.cfg_values))
        self.state = runtime_context.get_state(
            ValueStateDescriptor("ensemble_state", Types.PRIMITIVE_ARRAY(Types.DOUBLE())))

    def process_element(self, feature: dict, ctx: KeyedProcessFunction.Context):
        stored = self.state.value()
        state = np.asarray(stored, dtype=np.float64) if stored is not None else self.scorer.init_state()
        anomaly = self.scorer.score(state, feature)
        self.state.update(state.tolist())
        if anomaly is not None:
            yield Row(anomaly["series_id"], codec.encode(topics.ANOMALIES.name, anomaly, check=False).decode())


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
        state = np.asarray(stored, dtype=np.float64) if stored is not None else self.forecaster.init_state()
        _, forecast = self.forecaster.update(state, feature)
        self.state.update(state.tolist())
        if forecast is not None:
            yield Row(forecast["series_id"], codec.encode(topics.FORECASTS.name, forecast, check=False).decode())


def features_row(feature: dict) -> Row:
    return Row(feature["series_id"], codec.encode(topics.FEATURES.name, feature, check=False).decode())


def late_row(value) -> Row:
    return Row(*steps.late_deadletter(value[1], now_ms()))
