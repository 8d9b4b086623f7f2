"""Recordings: a collector session saved as JSONL(.gz) lines ``{"topic": ..., "record": ...}`` that replay plays
back into Kafka later, re-timed, so real kernel telemetry can be shown on a machine without root."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Iterator

import orjson

from collectors.output import Output
from schemas import codec, topics


class RecordingWriter:
    def __init__(self, path: str | Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")
        self.path = path

    def output(self, topic: topics.Topic) -> Output:
        writer = self

        class _Out(Output):
            def write(self, record: dict) -> None:
                codec.validate(topic.name, record)
                writer._fh.write(orjson.dumps({"topic": topic.name, "record": record}) + b"\n")
                self.sent += 1

            def flush(self) -> None:
                writer._fh.flush()

            def close(self) -> None:
                self.flush()

        return _Out(topic)

    def close(self) -> None:
        self._fh.close()


def read_recording(path: str | Path) -> Iterator[tuple[topics.Topic, dict]]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                topic = topics.BY_NAME[doc["topic"]]
                codec.validate(topic.name, doc["record"])
            except (orjson.JSONDecodeError, KeyError, TypeError, codec.Rejected) as e:
                raise ValueError(f"{path}:{n}: not a valid recording line ({e})") from None
            yield topic, doc["record"]


def retime(records: list[tuple[topics.Topic, dict]], end_ms: int) -> list[tuple[topics.Topic, dict]]:
    """Shift every record by the same offset so that the last one is stamped ``end_ms``."""
    if not records:
        return []
    offset = end_ms - max(r["ts"] for _, r in records)
    return [(t, {**r, "ts": r["ts"] + offset}) for t, r in records]
