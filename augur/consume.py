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


def read_all(bootstrap: str, topic: topics.Topic, idle_s: float = 2.0, max_s: float = 60.0,
             strict: bool = True) -> list[dict]:
    """Every record in the topic up to its end offsets as of this call (committed records only), decoded.

    A record that breaks the topic's contract raises :class:`codec.Rejected`, or with ``strict=False`` is left out
    (for topics that also carry deliberately bad input, like the telemetry topic in tests).

    Reads until every partition's position reaches the end offset taken at the start, so a slow fetch cannot cut
    the result short; ``idle_s`` only bounds the wait for a partition whose end offset moved backwards (never, on a
    healthy broker) and ``max_s`` bounds the whole read.
    """
    from kafka import KafkaConsumer, TopicPartition
    cons = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                         client_id="augur-consume")
    out: list[dict] = []
    try:
        parts = [TopicPartition(topic.name, p) for p in sorted(cons.partitions_for_topic(topic.name) or ())]
        if not parts:
            return out
        cons.assign(parts)
        cons.seek_to_beginning(*parts)
        end = cons.end_offsets(parts)
        deadline = time.monotonic() + max_s
        while any(cons.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for batch in cons.poll(timeout_ms=int(min(idle_s, 1.0) * 1000)).values():
                for msg in batch:
                    try:
                        out.append(codec.decode(topic.name, msg.value))
                    except codec.Rejected:
                        if strict:
                            raise
    finally:
        cons.close()
    return out
