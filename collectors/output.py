"""Where telemetry goes: Kafka (idempotent, batched, compressed, bounded buffer that counts what it drops),
JSONL files (for backfills and recordings), or stdout. Shared by the synthetic generator and the eBPF collectors."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path
from typing import IO

import orjson

from schemas import codec, topics


class Output:
    """A sink for records of one topic. ``sent`` counts records accepted, ``dropped`` records lost (with why)."""

    def __init__(self, topic: topics.Topic):
        self.topic = topic
        self.sent = 0
        self.dropped = 0

    def write(self, record: dict) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class KafkaOutput(Output):
    def __init__(self, topic: topics.Topic, bootstrap: str, client_id: str = "augur-producer",
                 validate: bool = True):
        super().__init__(topic)
        from kafka import KafkaProducer
        self.validate = validate
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
            compression_type="zstd", linger_ms=20, batch_size=256 << 10, max_block_ms=10_000, retries=2**31 - 1, delivery_timeout_ms=120_000)
        self.errors: list[str] = []

    def _failed(self, exc: Exception) -> None:
        self.dropped += 1
        if len(self.errors) < 10:
            self.errors.append(repr(exc))

    def write(self, record: dict) -> None:
        value = codec.encode(self.topic.name, record, check=self.validate)
        future = self._producer.send(self.topic.name, key=codec.key_for(self.topic.name, record), value=value)
        future.add_errback(self._failed)
        self.sent += 1

    def write_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (for tests that feed malformed input on purpose)."""
        self._producer.send(self.topic.name, key=key, value=value).add_errback(self._failed)
        self.sent += 1

    def flush(self) -> None:
        self._producer.flush(timeout=60)

    def close(self) -> None:
        self.flush()
        self._producer.close(timeout=10)


class JsonlOutput(Output):
    """One JSON document per line; ``.gz`` paths are gzip-compressed."""

    def __init__(self, topic: topics.Topic, path: str | Path, validate: bool = True):
        super().__init__(topic)
        self.validate = validate
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")

    def write(self, record: dict) -> None:
        self._fh.write(codec.encode(self.topic.name, record, check=self.validate) + b"\n")
        self.sent += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class StdoutOutput(Output):
    def __init__(self, topic: topics.Topic, stream: io.TextIOBase | None = None):
        super().__init__(topic)
        self._stream = stream or sys.stdout

    def write(self, record: dict) -> None:
        self._stream.write(orjson.dumps(record).decode() + "\n")
        self.sent += 1

    def flush(self) -> None:
        self._stream.flush()


def read_jsonl(path: str | Path):
    """Records of a JSONL(.gz) file written by :class:`JsonlOutput`."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)
