"""Reading Augur's output topics the way downstream consumers should: decoded and validated against the contract."""

from __future__ import annotations

import time
from typing import Iterator

from schemas import codec, topics


def consumer(bootstrap: str, topic: topics.Topic, from_beginning: bool = True, group: str | None = None):
    from kafka import KafkaConsumer
    return KafkaConsumer(topic.name, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=group is not None,
                         auto_offset_reset="earliest" if from_beginning else "latest",
                         isolation_level="read_committed", consumer_timeout_ms=500, client_id="augur-consume")


def follow(bootstrap: str, topic: topics.Topic, from_beginning: bool = True,
           stop_after_s: float | None = None) -> Iterator[tuple[dict | None, bytes]]:
    """Yield ``(record, raw)`` as messages arrive; ``record`` is None for a message that breaks the contract."""
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    cons = consumer(bootstrap, topic, from_beginning)
    try:
        while deadline is None or time.monotonic() < deadline:
            for msg in cons:
                try:
                    yield codec.decode(topic.name, msg.value), msg.value
                except codec.Rejected:
                    yield None, msg.value
                if deadline is not None and time.monotonic() >= deadline:
                    return
    finally:
        cons.close()


def read_all(bootstrap: str, topic: topics.Topic, idle_s: float = 2.0, max_s: float = 60.0) -> list[dict]:
    """Every valid record currently in the topic (stops after ``idle_s`` without new messages)."""
    out: list[dict] = []
    cons = consumer(bootstrap, topic)
    start = last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s and time.monotonic() - start < max_s:
            for msg in cons:
                out.append(codec.decode(topic.name, msg.value))
                last = time.monotonic()
    finally:
        cons.close()
    return out
