"""The Parquet archive layout: records of one kind, partitioned by UTC date and host.

    ROOT/<kind>/date=YYYY-MM-DD/host=<host>/<file>      columns: ts (int64), series_id, record (JSON)

The Python writers name files ``*.parquet``; the stream's archive job (Flink's filesystem sink, see
:mod:`jobs.archive_job`) names them ``part-*`` / ``compacted-part-*`` and hides files it is still writing behind a
leading ``.``, so readers take every file of a partition whose name starts with neither ``.`` nor ``_``
(:func:`data_files`, :func:`partition_rows`). Rows of one partition are not in time order across files (parallel
writers, several checkpoints): a reader that needs order sorts a partition's rows by ``ts``, as the backfill does.

``kind`` is ``telemetry``, ``features``, ``anomalies``, ``forecasts`` or ``deadletter``. The record column holds
the message exactly as on its Kafka topic (the JSON Schemas in ``schemas/json`` are the contract); the other
columns exist to filter without parsing. The backfill reads ``telemetry`` partitions and writes the others with
:func:`replace_range`, which rewrites only the rows of the backfilled time range.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("ts", pa.int64()), ("series_id", pa.string()), ("record", pa.string())])
KINDS = ("telemetry", "features", "anomalies", "forecasts", "deadletter")
DAY_MS = 86_400_000


def date_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


# characters escaped in partition values as %XX, as Hive and Flink's filesystem sink escape them, so the Python
# writers and the archive job put a host in the same folder
_ESCAPED = frozenset(chr(c) for c in range(0x20)) | frozenset('"#%\'*/:=?\\\x7f{[]^')


def escape_partition_value(value: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def partition_dir(root: Path, kind: str, date: str, host: str) -> Path:
    return Path(root) / kind / f"date={date}" / f"host={escape_partition_value(host)}"


def partitions(root: Path, kind: str) -> Iterator[tuple[str, str, Path]]:
    """``(date, host, dir)`` of every partition of ``kind``, in date then host order."""
    base = Path(root) / kind
    if not base.is_dir():
        return
    for ddir in sorted(base.glob("date=*")):
        for hdir in sorted(ddir.glob("host=*")):
            yield ddir.name[5:], unquote(hdir.name[5:]), hdir


def data_files(pdir: Path) -> list[Path]:
    """The finished data files of one partition folder, in name order (hidden and marker files left out)."""
    if not pdir.is_dir():
        return []
    return sorted(f for f in pdir.iterdir() if f.is_file() and not f.name.startswith((".", "_")))


def partition_rows(pdir: Path) -> Iterator[tuple[int, str, str]]:
    """``(ts, series_id, record_json)`` of every finished file of one partition folder, file by file (so not in
    time order across files)."""
    for f in data_files(pdir):
        yield from read_rows(f)


def write_rows(directory: Path, rows: list[tuple[int, str, str]], name: str | None = None) -> Path:
    """Write ``(ts, series_id, record_json)`` rows as one Parquet file (atomically: temp file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    # default names sort by their first row's time, so a partition's files read in name order are in time order
    first = min((r[0] for r in rows), default=0)
    path = directory / (name or f"part-{first:016d}-{uuid.uuid4().hex[:8]}.parquet")
    tmp = directory / f".{path.name}.tmp"
    table = pa.table({"ts": [r[0] for r in rows], "series_id": [r[1] for r in rows],
                      "record": [r[2] for r in rows]}, schema=SCHEMA)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def read_rows(path: Path, batch_rows: int = 65_536) -> Iterator[tuple[int, str, str]]:
    """Rows of one file, a batch at a time (bounded memory). Raises ``pyarrow.ArrowInvalid``/``OSError`` if corrupt."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["ts", "series_id", "record"]):
        cols = batch.to_pydict()
        yield from zip(cols["ts"], cols["series_id"], cols["record"])


def write_archive(root: Path, kind: str, records: Iterable[tuple[int, str, str, str]]) -> list[Path]:
    """Write ``(ts, host, series_id, record_json)`` into date/host partitions (one new file per partition)."""
    groups: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for ts, host, sid, rec in records:
        groups.setdefault((date_of(ts), host), []).append((ts, sid, rec))
    return [write_rows(partition_dir(root, kind, d, h), rows) for (d, h), rows in sorted(groups.items())]


def replace_range(root: Path, kind: str, date: str, host: str, new_files: list[Path], start_ms: int,
                  end_ms: int) -> int:
    """Make the partition hold its old rows outside ``[start_ms, end_ms)`` plus the rows of ``new_files``.

    The result is written as one new file, then the old files are removed, so a re-run of the same range leaves
    exactly one copy of its rows. Returns the partition's row count.
    """
    pdir = partition_dir(root, kind, date, host)
    old = data_files(pdir)
    rows = [r for f in old for r in read_rows(f) if not start_ms <= r[0] < end_ms]
    rows += [r for f in new_files for r in read_rows(f)]
    rows.sort(key=lambda r: (r[0], r[1]))
    written = write_rows(pdir, rows)
    for f in old:
        if f != written:
            f.unlink()
    return len(rows)
