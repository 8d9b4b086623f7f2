"""Shared fixtures: one real Kafka broker per test session, on free ports, with its state in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.kafka_broker import free_port


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real single-node KRaft broker (the project's own `infra` code), shared by every test in the session."""
    from infra.kafka_broker import KafkaBroker
    from infra.kafka_topics import ensure_topics

    broker = KafkaBroker(port=free_port(), controller_port=free_port(), heap_mb=512,
                         state_dir=tmp_path_factory.mktemp("kafka"))
    status = broker.up(timeout_s=180)
    assert status.answering, status.describe()
    ensure_topics(broker.bootstrap)
    yield broker
    broker.down()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def subprocess_env(**overrides: str) -> dict:
    env = dict(os.environ)
    env.update(overrides)
    return env
