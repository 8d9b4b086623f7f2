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


@pytest.fixture(scope="session")
def host_models(tmp_path_factory) -> str:
    """A model registry holding a forest per host of the shared cpu-hog + disk-fill scenario (the backfill and
    stream tests pass it as models.dir, so their host stages judge, and are compared with the reference)."""
    from tests.scenarios import cpu_hog_and_disk_fill_scenario, train_host_forests
    root = tmp_path_factory.mktemp("models")
    scenario = cpu_hog_and_disk_fill_scenario(hours=5)
    assert train_host_forests(root, scenario) == sorted(scenario.gen.host_names)
    return str(root)
