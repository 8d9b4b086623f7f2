"""Kafka tables of Augur's Flink SQL jobs: the one place their connector options are written.

Every source reads the record key (``k``, raw) and value (``v``, raw bytes or text) of one topic; every sink
writes ``(k, v)`` as they are, exactly-once (Kafka transactions committed with each checkpoint) when the job
checkpoints."""

from __future__ import annotations

from augur.config import Config, ConfigError


def startup_options(start: str) -> str:
    if start.isdigit():
        return f"'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{start}',"
    if start in ("group-offsets", "earliest", "latest"):
        return f"'scan.startup.mode' = '{start if start == 'group-offsets' else start + '-offset'}',"
    raise ConfigError(f"stream.start-from: expected group-offsets, earliest, latest or epoch ms, got {start!r}")


def source_ddl(table: str, topic: str, cfg: Config, group: str, bounded: bool, columns: str,
               with_key: bool = True, committed_only: bool = False, extra_options: str = "") -> str:
    """A raw Kafka source. ``columns`` are the table's columns (``v`` the value; ``k`` the key when
    ``with_key``); where a job without committed offsets starts is ``stream.start-from``; ``bounded`` stops at the
    offsets that are the latest when the job starts; ``committed_only`` reads with ``read_committed`` (the
    outputs of exactly-once sinks)."""
    key = ("'key.format' = 'raw', 'key.fields' = 'k', 'value.fields-include' = 'EXCEPT_KEY',"
           if with_key else "")
    return f"""
        CREATE TEMPORARY TABLE `{table}` ({columns}) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          'properties.bootstrap.servers' = '{cfg["kafka.bootstrap-servers"]}',
          'properties.group.id' = '{group}',
          'properties.auto.offset.reset' = 'earliest',
          {"'properties.isolation.level' = 'read_committed'," if committed_only else ""}
          {startup_options(cfg["stream.start-from"])}
          {"'scan.bounded.mode' = 'latest-offset'," if bounded else ""}
          {extra_options}
          {key}
          'value.format' = 'raw'
        )"""


def sink_ddl(table: str, topic: str, cfg: Config) -> str:
    """A Kafka sink of ``(k STRING, v STRING)``; exactly-once when checkpointing is on."""
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
