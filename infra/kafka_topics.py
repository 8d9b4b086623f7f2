"""Create Augur's topics (with their declared partition counts and settings) on a broker; existing topics keep
their partitions and get the declared settings."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas import topics


def ensure_topics(bootstrap: str, specs: tuple[topics.Topic, ...] = topics.ALL) -> list[str]:
    """Create missing topics and apply every topic's declared settings; returns the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="augur-topics", request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t.name, num_partitions=t.partitions, replication_factor=1,
                                              topic_configs=dict(t.configs)) for t in missing])
            except TopicAlreadyExistsError:
                pass
        present = [t for t in specs if t.configs and t.name in existing]
        if present:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.name, configs=dict(t.configs))
                                 for t in present])
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
