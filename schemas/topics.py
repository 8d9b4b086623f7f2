"""The public Kafka topics: names, partition counts, what keys them. Consumers depend on these; change = new version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str  # what the Kafka key holds
    doc: str
    configs: tuple[tuple[str, str], ...] = ()  # topic-level broker settings ensure_topics applies

    @property
    def schema_file(self) -> str:
        return f"{self.name}.json"


# Jobs write derived records stamped with their event time, which for backfills and replays can be long past: a
# time-based retention would delete them on arrival. Derived topics keep records by their arrival time instead
# (event time is in every payload).
BY_ARRIVAL = (("message.timestamp.type", "LogAppendTime"),)

# The broker stamps telemetry with its own clock on arrival: the stream measures a sample's clock skew against that
# one clock (a host whose clock runs ahead cannot hide it by stamping its Kafka records with the same wrong time).
TELEMETRY = Topic("augur.telemetry.v1", 6, "series_id", "aggregated samples from collectors and generators",
                  BY_ARRIVAL)
EVENTS = Topic("augur.events.v1", 3, "host", "discrete host events (exec, exit, oom_kill, injected faults)")
PROFILES = Topic("augur.profiles.v1", 3, "host", "sampled on-CPU stacks, folded per process and interval")
FEATURES = Topic("augur.features.v1", 6, "series_id", "per-series event-time window features", BY_ARRIVAL)
ANOMALIES = Topic("augur.anomalies.v1", 3, "series_id", "anomalous windows with scores and explanations", BY_ARRIVAL)
FORECASTS = Topic("augur.forecasts.v1", 3, "series_id", "resource exhaustion forecasts and retractions", BY_ARRIVAL)
DEADLETTER = Topic("augur.deadletter.v1", 1, "reason", "inputs that could not be used, with the reason", BY_ARRIVAL)

ALL: tuple[Topic, ...] = (TELEMETRY, EVENTS, PROFILES, FEATURES, ANOMALIES, FORECASTS, DEADLETTER)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL}
# short names accepted on the command line (`augur tail anomalies`)
BY_SHORT_NAME: dict[str, Topic] = {t.name.split(".")[1]: t for t in ALL}


def resolve(name: str) -> Topic:
    """A topic by full name (``augur.anomalies.v1``) or short name (``anomalies``)."""
    topic = BY_NAME.get(name) or BY_SHORT_NAME.get(name)
    if topic is None:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(BY_SHORT_NAME)}")
    return topic
