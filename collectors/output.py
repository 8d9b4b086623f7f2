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


def kafka_producer(bootstrap: str, client_id: str, **timeouts):
    """Augur's producer settings (all replicas acknowledge, idempotent, zstd, large batches) plus the caller's
    timeouts and linger."""
    from kafka import KafkaProducer
    return KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
                         compression_type="zstd", batch_size=256 << 10, **timeouts)


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
        self.validate = validate
        self._producer = kafka_producer(bootstrap, client_id, linger_ms=20, max_block_ms=10_000,
                                        delivery_timeout_ms=120_000)
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


class BufferedKafkaOutput(Output):
    """Never blocks the caller: records wait in a bounded queue that a sender thread drains into Kafka. While
    Kafka is unreachable the queue fills; beyond ``capacity`` records or ``max_bytes`` encoded bytes the oldest
    records are dropped and counted in ``dropped`` (a profile record can weigh a thousand samples)."""

    def __init__(self, topic: topics.Topic, bootstrap: str, capacity: int, client_id: str = "augur-collector",
                 max_bytes: int = 64 << 20):
        super().__init__(topic)
        import collections
        import threading
        self.capacity, self.max_bytes = capacity, max_bytes
        self._bytes = 0  # of the values queued
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.delivered = 0
        self.errors: list[str] = []
        self._bootstrap, self._client_id = bootstrap, client_id
        self._thread = threading.Thread(target=self._run, name=f"kafka-{topic.name}", daemon=True)
        self._thread.start()

    def write(self, record: dict) -> None:
        value = codec.encode(self.topic.name, record)
        key = codec.key_for(self.topic.name, record)
        with self._lock:
            while self._queue and (len(self._queue) >= self.capacity or self._bytes + len(value) > self.max_bytes):
                self._bytes -= len(self._queue.popleft()[1])
                self.dropped += 1
            self._queue.append((key, value))
            self._bytes += len(value)
        self.sent += 1
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def _producer(self):
        return kafka_producer(self._bootstrap, self._client_id, linger_ms=50, max_block_ms=5_000,
                              request_timeout_ms=10_000, delivery_timeout_ms=30_000, bootstrap_timeout_ms=5_000)

    def _run(self) -> None:
        producer = None
        while not (self._closed and not self._queue):
            self._wake.wait(0.2)
            self._wake.clear()
            if not self._queue:
                continue
            with self._lock:  # a batch of at most 5000 records and a quarter of the byte bound (one at least)
                batch, size = [], 0
                while self._queue and len(batch) < 5000 and (not batch or size < self.max_bytes // 4):
                    batch.append(self._queue.popleft())
                    size += len(batch[-1][1])
                self._bytes -= size
            try:
                if producer is None:
                    producer = self._producer()
                futures = [producer.send(self.topic.name, key=k, value=v) for k, v in batch]
                producer.flush(timeout=30)
                unsent = [item for item, f in zip(batch, futures) if not f.succeeded()]
            except Exception as e:  # Kafka down or unreachable
                unsent = batch
                if len(self.errors) < 10:
                    self.errors.append(repr(e))
            self.delivered += len(batch) - len(unsent)
            if not unsent:
                continue
            with self._lock:  # put them back in front, within the bounds; the oldest go first
                for item in reversed(unsent):
                    if len(self._queue) >= self.capacity or self._bytes + len(item[1]) > self.max_bytes:
                        self.dropped += 1
                    else:
                        self._queue.appendleft(item)
                        self._bytes += len(item[1])
            if self._closed:
                break
            if producer is not None:
                try:
                    producer.close(timeout=1)
                except Exception:
                    pass
                producer = None
            self._wake.wait(1.0)  # back off before reconnecting
        if producer is not None:
            producer.close(timeout=5)

    def flush(self, timeout_s: float = 30.0) -> None:
        import time
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.05)

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout_s``); whatever is still unacknowledged then is lost, and
        counted as dropped."""
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=min(timeout_s, 10.0))
        self.dropped = max(self.dropped, self.sent - self.delivered)
