"""The streaming job: telemetry from Kafka -> event-time window features -> scoring and forecasts -> Kafka.

    augur.telemetry.v1 -parse/validate-> watermarks -> tumbling windows per series -> features -+-> scoring
          |                                                  |                           |       |       |
          +-- bad input --------------------+--- late -------+                           |       |   augur.anomalies.v1
                                            v                                            |       +-> forecasts (series
                                   augur.deadletter.v1                    augur.features.v1      |   with a capacity)
                                                                                                 augur.forecasts.v1

Runs on the embedded Flink mini-cluster by default (``augur stream``).
"""

from __future__ import annotations

import argparse
import sys

from augur.config import Config, ConfigError, parse_set_args
from schemas import topics

JOB_NAME = "augur-stream"


def kafka_sink_ddl(table: str, topic: str, bootstrap: str) -> str:
    return f"""
        CREATE TEMPORARY TABLE `{table}` (k STRING, v STRING) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          'properties.bootstrap.servers' = '{bootstrap}',
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY',
          'sink.delivery-guarantee' = 'at-least-once'
        )"""


def telemetry_source_ddl(cfg: Config, bounded: bool) -> str:
    """The raw telemetry source. Event time is read from the JSON on the JVM, per Kafka partition, so watermarks
    advance per partition; a record without a usable ``ts``, or one stamped beyond the allowed clock skew, gets
    event time 0 and cannot move the watermark (the parse step then dead-letters it with its reason).

    Fetches per partition are kept small: the source emits one partition's fetched batch at a time, and while a
    slow (Python) pipeline drains a large batch of one partition the others emit nothing; past the idle timeout
    they would be marked idle, the watermark would jump ahead with the busy partition, and their records would
    arrive late. Small batches keep every partition's turn well inside the idle timeout."""
    ts = "TRY_CAST(JSON_VALUE(v, '$.ts') AS BIGINT)"
    skew = cfg["stream.max-future-skew-ms"]
    ooo_s = cfg["stream.out-of-orderness-ms"] / 1000.0
    bounded_opt = "'scan.bounded.mode' = 'latest-offset'," if bounded else ""
    start = cfg["stream.start-from"]
    if start.isdigit():
        startup = f"'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{start}',"
    elif start in ("group-offsets", "earliest", "latest"):
        startup = f"'scan.startup.mode' = '{start if start == 'group-offsets' else start + '-offset'}',"
    else:
        raise ConfigError(f"stream.start-from: expected group-offsets, earliest, latest or epoch ms, got {start!r}")
    return f"""
        CREATE TEMPORARY TABLE telemetry_source (
          v STRING,
          event_time AS TO_TIMESTAMP_LTZ(
            CASE WHEN {ts} BETWEEN 0 AND UNIX_TIMESTAMP() * 1000 + {skew} THEN {ts} ELSE 0 END, 3),
          WATERMARK FOR event_time AS event_time - INTERVAL '{ooo_s:.3f}' SECOND
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{topics.TELEMETRY.name}',
          'properties.bootstrap.servers' = '{cfg["kafka.bootstrap-servers"]}',
          'properties.group.id' = '{cfg["stream.consumer-group"]}',
          'properties.auto.offset.reset' = 'earliest',
          'properties.max.partition.fetch.bytes' = '{cfg["stream.max-partition-fetch-bytes"]}',
          {startup}
          {bounded_opt}
          'value.format' = 'raw'
        )"""


def build(env, cfg: Config, bounded: bool = False):
    """Add the job's operators to ``env``; returns the StreamTableEnvironment holding the sinks' statement set."""
    from pyflink.common import Time, Types
    from pyflink.datastream.window import TumblingEventTimeWindows
    from pyflink.table import StreamTableEnvironment

    from jobs import flink_functions as fn

    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", f"{cfg['stream.idle-timeout-ms']} ms")
    t_env.execute_sql(telemetry_source_ddl(cfg, bounded))
    # keep the rowtime column: it is what carries event time and watermarks into the DataStream
    raw = t_env.to_data_stream(t_env.from_path("telemetry_source"))

    values = cfg.to_dict()
    parsed = raw.process(fn.ParseTelemetry(values), output_type=Types.PICKLED_BYTE_ARRAY()) \
        .uid("parse-telemetry").name("parse-telemetry")
    rejected = parsed.get_side_output(fn.DEADLETTER_TAG)

    features = (parsed.key_by(lambda sv: sv[0], key_type=Types.STRING())
                .window(TumblingEventTimeWindows.of(Time.milliseconds(cfg["stream.window-size-ms"])))
                .allowed_lateness(cfg["stream.allowed-lateness-ms"])
                .side_output_late_data(fn.LATE_TAG)
                .process(fn.WindowFeatures(), output_type=Types.PICKLED_BYTE_ARRAY())
                .uid("window-features").name("window-features"))
    late = features.get_side_output(fn.LATE_TAG).map(fn.late_row, output_type=fn.KEYED_JSON).uid("late-records")

    anomalies = (features.key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ScoreFeatures(values), output_type=fn.KEYED_JSON)
                 .uid("score-robust-z").name("score-robust-z"))
    forecasts = (features.filter(fn.Forecaster.applies_to)
                 .key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ForecastResources(values), output_type=fn.KEYED_JSON)
                 .uid("forecast-resources").name("forecast-resources"))
    feature_rows = features.map(fn.features_row, output_type=fn.KEYED_JSON).uid("features-json")

    statements = t_env.create_statement_set()
    for table, topic, stream in (("features_sink", topics.FEATURES, feature_rows),
                                 ("anomalies_sink", topics.ANOMALIES, anomalies),
                                 ("forecasts_sink", topics.FORECASTS, forecasts),
                                 ("deadletter_sink", topics.DEADLETTER, rejected.union(late))):
        t_env.execute_sql(kafka_sink_ddl(table, topic.name, cfg["kafka.bootstrap-servers"]))
        statements.add_insert(table, t_env.from_data_stream(stream))
    statements.attach_as_datastream()
    return t_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="augur stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one option")
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the offsets that are the latest when the job starts (for tests and replays)")
    args = parser.parse_args(argv)
    cfg = Config.load(args.config, parse_set_args(args.set))
    from infra.kafka_topics import ensure_topics
    ensure_topics(cfg["kafka.bootstrap-servers"])
    from jobs.flink_env import create_stream_env
    env = create_stream_env(cfg)
    build(env, cfg, bounded=args.bounded)
    print(f"augur stream: running {JOB_NAME} on the embedded Flink mini-cluster, reading {topics.TELEMETRY.name} "
          f"from {cfg['kafka.bootstrap-servers']}", file=sys.stderr, flush=True)
    env.execute(JOB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
