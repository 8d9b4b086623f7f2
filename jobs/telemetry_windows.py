"""The JVM side of the stream: raw telemetry from Kafka -> parsed, validated, event-time windows per series.

Every raw sample stays on the JVM (Flink SQL over Augur's Java functions in ``jvm/``); Python sees one row per
series per window, plus the rare rejected or late message:

    telemetry_source (raw bytes, broker append time; event time + watermarks per partition)
        -> PARSE_TELEMETRY (JSON parsed once, checked against schemas/json/augur.telemetry.v1.json)
        -> +-- rejected (reject is not null) .............................. -> rejected()  (Python: dead-letter reason)
           +-- late (its window already closed at this watermark) ........ -> late()      (Python: reason "late")
           +-- on time -> TUMBLE(event time) per (host, metric, attrs) -> SERIES_WINDOW -> windows()

A message is in exactly one of the three: the late test uses this operator's watermark, which is never behind the
window operator's, so a message judged on time here is on time there too. The window stage keeps no allowed
lateness: a window is emitted once, when the watermark passes its end (the out-of-orderness bound is the knob).
"""

from __future__ import annotations

import json

from augur.config import Config
from jobs import kafka_tables
from schemas import codec, topics

FUNCTIONS = {  # SQL name -> class in jvm/src/main/java
    "TELEMETRY_EVENT_TIME": "dev.augur.flink.TelemetryEventTime",
    "PARSE_TELEMETRY": "dev.augur.flink.ParseTelemetry",
    "SERIES_WINDOW": "dev.augur.flink.SeriesWindow",
}


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def interval(ms: int) -> str:
    if ms % 1000 == 0:
        return f"INTERVAL '{ms // 1000}' SECOND"
    return f"INTERVAL '{ms / 1000:.3f}' SECOND(3)"


def source_ddl(cfg: Config, bounded: bool) -> str:
    """The raw telemetry source. Event time is read on the JVM, per Kafka partition, so watermarks advance per
    partition; a message without a usable ``ts``, or stamped beyond the allowed skew after the broker appended it,
    gets event time 0 and cannot move the watermark (PARSE_TELEMETRY dead-letters it).

    Fetches per partition are kept small: the source emits one partition's fetched batch at a time, and while the
    pipeline drains a large batch of one partition the others emit nothing; past the idle timeout they would be
    marked idle, the watermark would jump ahead with the busy partition, and their records would arrive late."""
    return kafka_tables.source_ddl(
        "telemetry_source", topics.TELEMETRY.name, cfg, cfg["stream.consumer-group"], bounded, with_key=False,
        columns=f"""
          v BYTES,
          appended TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
          event_time AS TO_TIMESTAMP_LTZ(
            TELEMETRY_EVENT_TIME(v, appended, CAST({cfg["stream.max-future-skew-ms"]} AS BIGINT)), 3),
          WATERMARK FOR event_time AS event_time - {interval(cfg["stream.out-of-orderness-ms"])}""",
        extra_options=f"'properties.max.partition.fetch.bytes' = '{cfg['stream.max-partition-fetch-bytes']}',")


def register_functions(t_env) -> None:
    """Augur's JVM functions, and UTC as the session's time zone (windows and archive dates align to UTC days,
    like the reference's)."""
    t_env.get_config().set("table.local-time-zone", "UTC")
    for name, cls in FUNCTIONS.items():
        t_env.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {name} AS '{cls}' LANGUAGE JAVA")


def register_source(t_env, cfg: Config, bounded: bool = False) -> None:
    """The session settings, Augur's JVM functions and the ``telemetry_source`` table."""
    register_functions(t_env)
    t_env.get_config().set("table.exec.source.idle-timeout", f"{cfg['stream.idle-timeout-ms']} ms")
    t_env.execute_sql(source_ddl(cfg, bounded))


def parse_call(cfg: Config) -> str:
    """The SQL that parses and validates one raw message, the columns ``v`` and ``appended`` of a Kafka source (a
    ROW, see ``ParseTelemetry.java``): the one place the stream and the archive job set its limits."""
    schema = sql_string(json.dumps(codec.load_schema(topics.TELEMETRY.name), separators=(",", ":")))
    return (f"PARSE_TELEMETRY(v, {cfg['stream.max-message-bytes']}, appended, "
            f"CAST({cfg['stream.max-future-skew-ms']} AS BIGINT), {schema})")


def for_python(t_env, table, uid: str):
    """``table`` (Flink SQL) as the DataStream that Python operators read, through Augur's ``KeepActive`` operator:
    the same records and watermarks, and an output that never turns idle (see
    ``jvm/src/main/java/dev/augur/flink/KeepActive.java``). A Python operator fed straight from SQL would drop the
    watermark whenever the source turned idle while a bundle of its was open, so the job reads every SQL table it
    hands to Python through here (the operator's ``uid``: the windows' is ``keep-active``, as before this helper,
    so savepoints map)."""
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    j_stream = t_env.to_data_stream(table)._j_data_stream
    operator = get_gateway().jvm.dev.augur.flink.KeepActive()
    return DataStream(j_stream.transform("keep-active", j_stream.getType(), operator)).uid(uid)


def build(t_env, cfg: Config, bounded: bool = False):
    """Register the source and the views; returns ``(windows, rejected, late)`` tables.

    ``windows``: (window_start_ms BIGINT, host, metric, attrs JSON, w ROW<mtype, ts[], vals[], counts[], hsums[],
    capacity>); ``rejected``: (v BYTES, reject STRING); ``late``: (v BYTES)."""
    from pyflink.table import Schema

    register_source(t_env, cfg, bounded)
    # one phase: the window stage keys by series anyway, and a local pre-aggregation would ship whole sample lists
    t_env.get_config().set("table.optimizer.agg-phase-strategy", "ONE_PHASE")
    parsed = t_env.sql_query(f"SELECT v, event_time, {parse_call(cfg)} AS p FROM telemetry_source")
    # Through a (JVM) DataStream and back: the message is parsed once, however many branches read the result (the
    # planner would otherwise give each branch its own copy of the parse).
    t_env.create_temporary_view("parsed_telemetry", t_env.from_data_stream(
        t_env.to_data_stream(parsed),
        Schema.new_builder().column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)", "rowtime")
        .watermark("rowtime", "SOURCE_WATERMARK()").build()))
    size = cfg["stream.window-size-ms"]
    closed = (f"CURRENT_WATERMARK(rowtime) IS NOT NULL AND "
              f"CURRENT_WATERMARK(rowtime) >= TO_TIMESTAMP_LTZ(p.ts - MOD(p.ts, {size}) + {size} - 1, 3)")
    # the event time the source read (for watermarks) and the parsed one agree for every accepted message; the
    # guard makes sure a disagreement could only ever dead-letter a message, never drop it
    usable = "p.reject IS NULL AND rowtime = TO_TIMESTAMP_LTZ(p.ts, 3)"
    t_env.create_temporary_view("on_time_telemetry", t_env.sql_query(
        f"SELECT rowtime, p FROM parsed_telemetry WHERE {usable} AND NOT ({closed})"))
    windows = t_env.sql_query(f"""
        SELECT MIN(p.ts - MOD(p.ts, {size})) AS window_start_ms, p.host, p.metric, p.attrs,
               SERIES_WINDOW(p.ts, p.val, p.counts, p.hsum, p.capacity, p.mtype) AS w
        FROM TABLE(TUMBLE(TABLE on_time_telemetry, DESCRIPTOR(rowtime), {interval(size)}))
        GROUP BY window_start, window_end, p.host, p.metric, p.attrs""")
    rejected = t_env.sql_query(f"""
        SELECT v, COALESCE(p.reject, 'malformed: its event time could not be read') AS reject
        FROM parsed_telemetry WHERE NOT ({usable})""")
    late = t_env.sql_query(f"SELECT v FROM parsed_telemetry WHERE {usable} AND {closed}")
    return windows, rejected, late
