"""The streaming job: telemetry from Kafka -> event-time window features -> scoring and forecasts -> Kafka.

    augur.telemetry.v1 -parse/validate-> watermarks -> tumbling windows per series -> features -+-> scoring
          |                                                  |                           |       |       |
          +-- bad input --------------------+--- late -------+                           |       |   augur.anomalies.v1
                                            v                                            |       +-> forecasts (series
                                   augur.deadletter.v1                    augur.features.v1      |   with a capacity)
                                                                                                 augur.forecasts.v1

Everything up to the windows runs on the JVM (:mod:`jobs.telemetry_windows`); Python starts at one row per series
per window. With checkpointing on (the default), the Kafka sinks are exactly-once: a consumer reading them with
``isolation.level=read_committed`` sees each record once, after the checkpoint that covers it completes.

Runs on the embedded Flink mini-cluster by default (``augur stream``).
"""

from __future__ import annotations

import argparse
import sys

from augur.config import Config, parse_set_args
from schemas import topics

JOB_NAME = "augur-stream"


def kafka_sink_ddl(table: str, topic: str, cfg: Config) -> str:
    """A Kafka sink; exactly-once (Kafka transactions committed with each checkpoint) when checkpointing is on."""
    exactly_once = cfg["stream.checkpoint-interval-ms"] > 0
    guarantee = (f"""'sink.delivery-guarantee' = 'exactly-once',
          'sink.transactional-id-prefix' = '{cfg["stream.transactional-id-prefix"]}-{table}',
          'properties.transaction.timeout.ms' = '{cfg["stream.transaction-timeout-ms"]}',"""
                 if exactly_once else "'sink.delivery-guarantee' = 'at-least-once',")
    return f"""
        CREATE TEMPORARY TABLE `{table}` (k STRING, v STRING) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          'properties.bootstrap.servers' = '{cfg["kafka.bootstrap-servers"]}',
          {guarantee}
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY'
        )"""


def build(env, cfg: Config, bounded: bool = False):
    """Add the job's operators to ``env``; returns the StreamTableEnvironment holding the sinks' statement set."""
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    from jobs import flink_functions as fn
    from jobs import telemetry_windows

    t_env = StreamTableEnvironment.create(env)
    windows, rejected, late = telemetry_windows.build(t_env, cfg, bounded)
    values = cfg.to_dict()
    features = (t_env.to_data_stream(windows)
                .map(fn.WindowToFeatures(values), output_type=Types.PICKLED_BYTE_ARRAY())
                .uid("window-features").name("window-features"))
    dead = (t_env.to_data_stream(rejected).map(fn.RejectedToDeadLetter(values), output_type=fn.KEYED_JSON)
            .uid("rejected-records").name("rejected-records")
            .union(t_env.to_data_stream(late).map(fn.LateToDeadLetter(), output_type=fn.KEYED_JSON)
                   .uid("late-records").name("late-records")))

    anomalies = (features.key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ScoreFeatures(values), output_type=fn.KEYED_JSON)
                 .uid("score-robust-z").name("score-ensemble"))
    forecasts = (features.filter(fn.Forecaster.applies_to)
                 .key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ForecastResources(values), output_type=fn.KEYED_JSON)
                 .uid("forecast-resources").name("forecast-resources"))
    feature_rows = features.map(fn.features_row, output_type=fn.KEYED_JSON).uid("features-json")

    statements = t_env.create_statement_set()
    for table, topic, stream in (("features_sink", topics.FEATURES, feature_rows),
                                 ("anomalies_sink", topics.ANOMALIES, anomalies),
                                 ("forecasts_sink", topics.FORECASTS, forecasts),
                                 ("deadletter_sink", topics.DEADLETTER, dead)):
        t_env.execute_sql(kafka_sink_ddl(table, topic.name, cfg))
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
    print(f"augur stream: starting {JOB_NAME} (the embedded Flink mini-cluster, or the cluster `augur submit` "
          f"names), reading {topics.TELEMETRY.name} from {cfg['kafka.bootstrap-servers']}", file=sys.stderr,
          flush=True)
    env.execute(JOB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
