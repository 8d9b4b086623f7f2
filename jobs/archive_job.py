"""The archive job: telemetry and the stream's outputs from Kafka -> Parquet, partitioned by UTC date and host.

    augur.telemetry.v1 --PARSE_TELEMETRY, accepted only--> ROOT/telemetry/date=YYYY-MM-DD/host=H/part-*
    augur.features.v1  --read_committed-->                  ROOT/features/...
    augur.anomalies.v1 --read_committed-->                  ROOT/anomalies/...
    augur.forecasts.v1 --read_committed-->                  ROOT/forecasts/...

The layout and columns are :mod:`jobs.archive`'s (``ts``, ``series_id``, ``record``: the message as on its topic),
so ``augur backfill ROOT`` reads what this job wrote. Telemetry is parsed and checked by the stream's own JVM
function with the stream's limits: the archive holds exactly the messages the stream accepts (late ones included:
they are valid history), and what the stream dead-letters stays on the dead-letter topic.

It runs apart from the streaming job, all on the JVM (no Python worker), because Parquet files are finished at
checkpoints: the stream checkpoints every few seconds to keep its exactly-once outputs fresh, and the archive
would get a small file per partition that often. Here the interval is ``archive.checkpoint-interval-ms`` (one
minute by default), and files one checkpoint wrote to one partition are compacted into one.

Parquet comes from ``flink-sql-parquet`` with Hadoop's shaded client jars (``infra/maven/flink-connectors-pom.xml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from augur import paths
from augur.config import Config
from jobs import kafka_tables, telemetry_windows
from schemas import topics

JOB_NAME = "augur-archive"
OUTPUT_KINDS = {"features": topics.FEATURES, "anomalies": topics.ANOMALIES, "forecasts": topics.FORECASTS}


def archive_root(cfg: Config) -> str:
    """The archive's root as a URI (a local folder is created)."""
    where = cfg["archive.dir"]
    if "://" in where:
        return where.rstrip("/")
    path = Path(where) if where else paths.run_dir() / "archive"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve().as_uri()


def parquet_sink_ddl(table: str, path: str) -> str:
    """A Parquet sink in the archive layout. Flink escapes the partition values as Hive does, like
    :func:`jobs.archive.partition_dir`; a missing value goes to ``_unknown``."""
    return f"""
        CREATE TEMPORARY TABLE `{table}` (
          ts BIGINT, series_id STRING, record STRING, `date` STRING, host STRING
        ) PARTITIONED BY (`date`, host) WITH (
          'connector' = 'filesystem',
          'path' = '{path}',
          'format' = 'parquet',
          'parquet.compression' = 'ZSTD',
          'partition.default-name' = '_unknown',
          'sink.shuffle-by-partition.enable' = 'true',
          'auto-compaction' = 'true',
          'compaction.file-size' = '128MB'
        )"""


def utc_date(ts_column: str) -> str:
    return f"DATE_FORMAT(TO_TIMESTAMP_LTZ({ts_column}, 3), 'yyyy-MM-dd')"


def build(t_env, cfg: Config, bounded: bool = False):
    """Register the sources and sinks; returns the statement set of the four archive inserts."""
    telemetry_windows.register_functions(t_env)
    root = archive_root(cfg)
    statements = t_env.create_statement_set()

    group = cfg["archive.consumer-group"]
    t_env.execute_sql(kafka_tables.source_ddl(
        "archive_telemetry_source", topics.TELEMETRY.name, cfg, group, bounded,
        "k STRING, v BYTES, appended TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL"))
    t_env.execute_sql(parquet_sink_ddl("archive_telemetry", f"{root}/telemetry"))
    # the series_id column is the record's Kafka key, which the telemetry topic's contract makes its series id
    statements.add_insert_sql(f"""
        INSERT INTO archive_telemetry
        SELECT p.ts, k, CAST(v AS STRING), {utc_date("p.ts")}, p.host
        FROM (SELECT k, v, {telemetry_windows.parse_call(cfg)} AS p FROM archive_telemetry_source)
        WHERE p.reject IS NULL""")

    for kind, topic in OUTPUT_KINDS.items():
        t_env.execute_sql(kafka_tables.source_ddl(f"archive_{kind}_source", topic.name, cfg, group, bounded,
                                                  "k STRING, v STRING", committed_only=True))
        t_env.execute_sql(parquet_sink_ddl(f"archive_{kind}", f"{root}/{kind}"))
        statements.add_insert_sql(f"""
            INSERT INTO archive_{kind}
            SELECT ts, JSON_VALUE(v, '$.series_id'), v, {utc_date("ts")}, JSON_VALUE(v, '$.host')
            FROM (SELECT v, TRY_CAST(JSON_VALUE(v, '$.ts') AS BIGINT) AS ts FROM archive_{kind}_source)""")
    return statements


def main(argv: list[str] | None = None) -> int:
    from jobs.flink_env import create_stream_env, job_arguments
    cfg, bounded = job_arguments("augur archive", __doc__, argv)
    from pyflink.table import StreamTableEnvironment
    env = create_stream_env(cfg, checkpoint_interval_ms=cfg["archive.checkpoint-interval-ms"])
    statements = build(StreamTableEnvironment.create(env), cfg, bounded=bounded)
    print(f"augur archive: starting {JOB_NAME}, archiving {topics.TELEMETRY.name} and the stream's outputs from "
          f"{cfg['kafka.bootstrap-servers']} into {archive_root(cfg)}", file=sys.stderr, flush=True)
    statements.attach_as_datastream()
    env.execute(JOB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
