"""The Kafka broker that `augur infra` manages: real processes, real ports."""

import os
import subprocess
import sys

import pytest

from infra.kafka_broker import BrokerError, KafkaBroker, free_port, pid_alive, port_in_use
from infra.kafka_topics import describe_partitions, ensure_topics
from schemas import topics

pytestmark = pytest.mark.kafka


def test_topics_have_their_declared_partition_counts(bootstrap):
    assert ensure_topics(bootstrap) == []  # already there: nothing created twice
    assert describe_partitions(bootstrap) == {t.name: t.partitions for t in topics.ALL}


def test_derived_topics_keep_records_by_arrival_not_by_their_old_event_time(bootstrap):
    """A backfill's features are stamped with last year's event time; time retention must not delete them."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from jobs import steps
    from schemas import codec
    old = 1_600_000_000_000  # 2020
    ensure_topics(bootstrap)  # applies the settings to topics that already exist too
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    key, value = steps.deadletter(codec.Rejected("malformed", "retention probe"), b"probe", old)
    meta = producer.send(topics.DEADLETTER.name, value.encode(), key.encode(), timestamp_ms=old).get(timeout=15)
    producer.close()
    assert meta.timestamp > old + 10 ** 11  # the broker stamped it on arrival (-1 would mean CreateTime)
    cons = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
    tp = TopicPartition(topics.DEADLETTER.name, meta.partition)
    cons.assign([tp])
    cons.seek(tp, meta.offset)
    msg = next(iter(cons))
    cons.close()
    assert msg.timestamp_type == 1 and msg.timestamp == meta.timestamp


def test_up_is_idempotent_on_a_running_broker(kafka_broker):
    pid = kafka_broker.status().pid
    again = KafkaBroker(kafka_broker.port, kafka_broker.controller_port, state_dir=kafka_broker.state_dir).up()
    assert again.running and again.answering and again.pid == pid


def test_up_twice_then_down_leaves_nothing_behind(tmp_path):
    env = {**os.environ, "AUGUR_RUN_DIR": str(tmp_path), "AUGUR_INFRA_KAFKA_PORT": str(free_port()),
           "AUGUR_INFRA_KAFKA_CONTROLLER_PORT": str(free_port())}
    port = int(env["AUGUR_INFRA_KAFKA_PORT"])

    def augur(*args):
        return subprocess.run([sys.executable, "-m", "augur.cli", *args], env=env, capture_output=True, text=True,
                              timeout=240)

    first = augur("infra", "up")
    assert first.returncode == 0, first.stderr
    assert "answering" in first.stdout
    pid = int((tmp_path / "kafka" / "broker.pid").read_text())
    second = augur("infra", "up")
    assert second.returncode == 0 and f"pid={pid}" in second.stdout  # same broker, no second one
    status = augur("infra", "status")
    assert status.returncode == 0 and "augur.telemetry.v1: 6 partitions" in status.stdout
    down = augur("infra", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not pid_alive(pid) and not port_in_use(port)
    assert augur("infra", "status").returncode == 3
    assert "was not running" in augur("infra", "down").stdout


def test_clear_error_when_the_port_is_taken(tmp_path, kafka_broker):
    broker = KafkaBroker(port=kafka_broker.port, controller_port=free_port(), state_dir=tmp_path)
    with pytest.raises(BrokerError, match=f"port {kafka_broker.port} .* already in use"):
        broker.up()


def test_clear_error_when_java_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(BrokerError, match="Java was not found"):
        KafkaBroker(port=free_port(), controller_port=free_port(), state_dir=tmp_path).up()


def test_a_zombie_counts_as_dead_and_a_running_process_as_alive():
    """pid_alive reads the process state from /proc: an exited child not yet reaped still answers kill(pid, 0)."""
    import time

    from collectors.procfs import pid_stat
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while pid_stat(exited.pid)[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        os.kill(exited.pid, 0)           # still there for the kernel ...
        assert not pid_alive(exited.pid)  # ... but dead for us
        assert pid_alive(running.pid)
    finally:
        running.kill()
        running.wait()
        exited.wait()
    assert not pid_alive(exited.pid)
