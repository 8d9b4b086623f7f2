"""Create Augur's topics (with their declared partition counts) on a broker; existing topics are left alone."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas import topics


def ensure_topics(bootstrap: str, specs: tuple[topics.Topic, ...] = topics.ALL) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="augur-topics", request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t.name, num_partitions=t.partitions, replication_factor=1)
                                     for t in missing])
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        admin.close()


def describe_partitions(bootstrap: str) -> dict[str, int]:
    """Topic -> partition count, for Augur's topics that exist."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="augur-topics")
    try:
        meta = admin.describe_topics([t.name for t in topics.ALL if t.name in set(admin.list_topics())])
        return {m.get("name") or m["topic"]: len(m["partitions"]) for m in meta}
    finally:
        admin.close()
