"""Where a backfill's telemetry comes from, cut into shards that can be processed independently.

* the **Parquet archive** (``ROOT/telemetry/date=.../host=...``, see :mod:`jobs.archive`): one shard per host, its
  partitions in date order, each partition's rows sorted by time; dates missing between a host's first and last
  date in the range are reported as gaps;
* **files** from the synthetic generator or ``augur record`` (``.jsonl``, ``.jsonl.gz``, or ``.parquet`` with a
  ``record`` column): one shard, read in the order given (a series may span files, so they are not split);
* a bounded **Kafka** range: one shard per partition (a series lives in one partition), from the offsets of the
  start time to those of the end time, resolved once when the backfill starts.

Every shard yields raw messages in the order stored; what is in it is validated later, message by message.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

from jobs import archive


class CorruptInput(Exception):
    """A file that cannot be read (bad Parquet, truncated gzip): reported with its path."""


@dataclass(frozen=True)
class Shard:
    name: str
    files: tuple[str, ...] = ()
    kafka: tuple | None = None  # (bootstrap, topic, partition, start_offset, end_offset)
    size: int = 0  # bytes (files) or messages (Kafka), for progress


@dataclass
class Plan:
    shards: list[Shard] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)


def _is_archive(path: Path) -> bool:
    return path.is_dir() and (path / "telemetry").is_dir()


def _days(start: str, end: str) -> list[str]:
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def _size(path: str) -> int:
    """Bytes of a file, or of an archive partition's data files."""
    p = Path(path)
    return sum(f.stat().st_size for f in archive.data_files(p)) if p.is_dir() else p.stat().st_size


def plan_files(inputs: list[str], start_ms: int | None = None, end_ms: int | None = None) -> Plan:
    plan = Plan()
    loose: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if _is_archive(path):
            by_host: dict[str, list[tuple[str, Path]]] = {}
            for d, host, pdir in archive.partitions(path, "telemetry"):
                if start_ms is not None and d < archive.date_of(start_ms):
                    continue
                if end_ms is not None and d > archive.date_of(end_ms - 1):
                    continue
                by_host.setdefault(host, []).append((d, pdir))
            for host, parts in sorted(by_host.items()):
                dirs = [str(pdir) for _, pdir in parts]
                present = {d for d, _ in parts}
                first = archive.date_of(start_ms) if start_ms is not None else parts[0][0]
                last = archive.date_of(end_ms - 1) if end_ms is not None else parts[-1][0]
                plan.gaps += [f"{path}: no telemetry for host {host} on {d}" for d in _days(first, last)
                              if d not in present]
                plan.shards.append(Shard(f"archive:{host}", tuple(dirs), size=sum(_size(d) for d in dirs)))
        elif path.is_file():
            loose.append(str(path))
        else:
            raise FileNotFoundError(f"backfill input {raw!r} is neither a file nor an archive folder "
                                    f"(expected ROOT/telemetry/date=YYYY-MM-DD/host=NAME/<parquet files>)")
    if loose:
        plan.shards.append(Shard("files", tuple(loose), size=sum(_size(f) for f in loose)))
    return plan


def plan_kafka(bootstrap: str, topic: str, start_ms: int, end_ms: int) -> Plan:
    """One shard per partition: offsets of the first record at or after ``start_ms`` up to ``end_ms``."""
    from kafka import KafkaConsumer, TopicPartition
    cons = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="augur-backfill-plan")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic) or ())]
        if not parts:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
        ends = cons.end_offsets(parts)
        starts = cons.offsets_for_times({tp: start_ms for tp in parts})
        stops = cons.offsets_for_times({tp: end_ms for tp in parts})
        plan = Plan()
        for tp in parts:
            first = starts[tp].offset if starts[tp] is not None else ends[tp]
            last = stops[tp].offset if stops[tp] is not None else ends[tp]
            if last > first:
                plan.shards.append(Shard(f"kafka:{topic}/{tp.partition}",
                                         kafka=(bootstrap, topic, tp.partition, first, last), size=last - first))
        return plan
    finally:
        cons.close()


def _jsonl_lines(path: str) -> Iterator[tuple[bytes, int]]:
    """Non-empty lines and how many bytes of the file (compressed, for .gz) are read so far."""
    try:
        with open(path, "rb") as raw:
            fh = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            for n, line in enumerate(fh):
                line = line.strip()
                if line:
                    yield line, (raw.tell() if n % 1024 == 0 else -1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CorruptInput(f"{path}: {e}") from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    try:
        yield from archive.read_rows(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        if isinstance(e, CorruptInput):
            raise
        raise CorruptInput(f"{path}: not a readable Parquet file of the archive layout ({e})") from None


def _parquet_records(path: str) -> Iterator[tuple[str, int]]:
    for _, _, rec in _parquet_rows(Path(path)):
        yield rec, -1


def _partition_records(pdir: str, on_corrupt: str, skipped: list[str]) -> Iterator[tuple[str, int]]:
    """One archive partition's records in ``ts`` order: its files may overlap in time (the stream's archive job
    writes one file per parallel writer and checkpoint), so the partition (one host's day) is read whole and
    sorted. A corrupt file is raised, or skipped (listed in ``skipped``) while the partition's other files are
    read."""
    rows: list[tuple[int, str, str]] = []
    for f in archive.data_files(Path(pdir)):
        try:
            rows.extend(_parquet_rows(f))
        except CorruptInput as e:
            if on_corrupt != "skip":
                raise
            skipped.append(str(e))
    rows.sort(key=lambda r: r[0])
    for _, _, rec in rows:
        yield rec, -1


def _kafka_messages(bootstrap: str, topic: str, partition: int, first: int, last: int) -> Iterator[bytes]:
    from kafka import KafkaConsumer, TopicPartition
    cons = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="augur-backfill",
                         isolation_level="read_committed")
    tp = TopicPartition(topic, partition)
    try:
        cons.assign([tp])
        cons.seek(tp, first)
        while cons.position(tp) < last:
            for batch in cons.poll(timeout_ms=1000).values():
                for msg in batch:
                    if msg.offset >= last:
                        return
                    yield msg.value
    finally:
        cons.close()


def read_shard(shard: Shard, on_corrupt: str, skipped: list[str]) -> Iterator[tuple[bytes | str, int]]:
    """``(raw message, bytes or messages consumed so far)``. A corrupt file raises :class:`CorruptInput`, or with
    ``on_corrupt='skip'`` is appended to ``skipped`` (with the reason) and passed over."""
    if shard.kafka is not None:
        for n, raw in enumerate(_kafka_messages(*shard.kafka), 1):
            yield raw, n
        return
    done = 0
    for path in shard.files:
        size = _size(path)
        if Path(path).is_dir():
            reader = _partition_records(path, on_corrupt, skipped)
        else:
            reader = _parquet_records(path) if path.endswith(".parquet") else _jsonl_lines(path)
        at = done
        try:
            for raw, pos in reader:
                if pos >= 0:
                    at = done + pos
                yield raw, at
        except CorruptInput as e:
            if on_corrupt != "skip":
                raise
            skipped.append(str(e))
        done += size
    return

