"""The streaming job: telemetry from Kafka -> event-time window features -> scoring and forecasts -> Kafka.

    augur.telemetry.v1 -parse/validate-> watermarks -> tumbling windows per series -> features -+-> scoring
          |                                                  |                           |       |       |
          +-- bad input --------------------+--- late -------+                           |       |   augur.anomalies.v1
                                            v                                            |       +-> forecasts (series
                                   augur.deadletter.v1                    augur.features.v1      |   with a capacity)
                                                                                                 augur.forecasts.v1

Everything up to the windows runs on the JVM (:mod:`jobs.telemetry_windows`); Python starts at one row per series
per window, behind the JVM operator that keeps the source's idleness out of the Python stages
(:func:`jobs.telemetry_windows.for_python`, which every SQL table handed to Python goes through). Scoring is per
series (the ensemble) and per host (the Isolation Forest over the host's signals, :mod:`jobs.host_state`); both
write to the anomalies topic. With checkpointing on
(the default), the Kafka sinks are exactly-once: a consumer reading them with ``isolation.level=read_committed`` sees
each record once, after the checkpoint that covers it completes.

Runs on the embedded Flink mini-cluster by default (``augur stream``).
"""

from __future__ import annotations

import sys

from augur.config import Config
from schemas import topics

JOB_NAME = "augur-stream"


def build(env, cfg: Config, bounded: bool = False):
    """Add the job's operators to ``env``; returns the StreamTableEnvironment holding the sinks' statement set."""
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    from jobs import flink_functions as fn
    from jobs import host_state, kafka_tables
    from jobs import telemetry_windows

    t_env = StreamTableEnvironment.create(env)
    windows, rejected, late = telemetry_windows.build(t_env, cfg, bounded)
    values = cfg.to_dict()
    features = (telemetry_windows.for_python(t_env, windows, "keep-active")
                .map(fn.WindowToFeatures(values), output_type=Types.PICKLED_BYTE_ARRAY())
                .uid("window-features").name("window-features"))
    dead = (telemetry_windows.for_python(t_env, rejected, "keep-active-rejected")
            .map(fn.RejectedToDeadLetter(values), output_type=fn.KEYED_JSON)
            .uid("rejected-records").name("rejected-records")
            .union(telemetry_windows.for_python(t_env, late, "keep-active-late")
                   .map(fn.LateToDeadLetter(), output_type=fn.KEYED_JSON)
                   .uid("late-records").name("late-records")))

    anomalies = (features.key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ScoreFeatures(values), output_type=fn.KEYED_JSON)
                 .uid("score-robust-z").name("score-ensemble"))
    host_anomalies = (features.filter(host_state.relevant)
                      .key_by(lambda f: f["host"], key_type=Types.STRING())
                      .process(fn.ScoreHosts(values), output_type=fn.KEYED_JSON)
                      .uid("score-hosts").name("score-hosts"))
    forecasts = (features.filter(fn.Forecaster.applies_to)
                 .key_by(lambda f: f["series_id"], key_type=Types.STRING())
                 .process(fn.ForecastResources(values), output_type=fn.KEYED_JSON)
                 .uid("forecast-resources").name("forecast-resources"))
    feature_rows = features.map(fn.features_row, output_type=fn.KEYED_JSON).uid("features-json")

    statements = t_env.create_statement_set()
    for table, topic, stream in (("features_sink", topics.FEATURES, feature_rows),
                                 ("anomalies_sink", topics.ANOMALIES, anomalies.union(host_anomalies)),
                                 ("forecasts_sink", topics.FORECASTS, forecasts),
                                 ("deadletter_sink", topics.DEADLETTER, dead)):
        t_env.execute_sql(kafka_tables.sink_ddl(table, topic.name, cfg))
        statements.add_insert(table, t_env.from_data_stream(stream))
    statements.attach_as_datastream()
    return t_env


def main(argv: list[str] | None = None) -> int:
    from jobs.flink_env import create_stream_env, job_arguments
    cfg, bounded = job_arguments("augur stream", __doc__, argv)
    env = create_stream_env(cfg)
    build(env, cfg, bounded=bounded)
    print(f"augur stream: starting {JOB_NAME} (the embedded Flink mini-cluster, or the cluster `augur submit` "
          f"names), reading {topics.TELEMETRY.name} from {cfg['kafka.bootstrap-servers']}", file=sys.stderr,
          flush=True)
    env.execute(JOB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
