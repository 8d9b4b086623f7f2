"""The streaming job on a real standalone Flink cluster (1 JobManager, 2 TaskManagers, started with the project's
own `augur cluster` code), submitted at parallelism 2 the way users submit it, through one failure and one
stop-and-resume:

1. a known input arrives in two parts; between them, one TaskManager is killed with SIGKILL. After recovery from
   the last checkpoint, a read_committed consumer must see every expected feature window exactly once (no loss,
   no duplicate), with the reference pipeline's values, and the reference's anomalies;
2. the job is stopped with a savepoint, more input arrives while it is down, and it is resumed from the
   savepoint: the output continues with no gap and no duplicate, and still equals the reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from augur.config import Config
from augur.consume import read_all
from augur.timeparse import now_ms
from collectors.faults import Fault
from collectors.output import KafkaOutput
from collectors.synthetic import SyntheticTelemetry
from infra import flink_jobs
from infra.flink_cluster import FlinkCluster, rest_call
from infra.kafka_broker import free_port
from jobs import reference, steps
from schemas import topics
from tests.scenarios import H, T0

pytestmark = [pytest.mark.kafka, pytest.mark.flink, pytest.mark.slow]

WINDOW_MS = 60_000
OUT_OF_ORDERNESS_MS = 20_000
HOSTS = 3
PREFIX = "fl-"  # hosts of their own: other modules' jobs write to the same output topics
FAULT = Fault("cpu_hog", f"{PREFIX}2", T0 + 80 * 60_000, T0 + 100 * 60_000)
# three parts of input: before the kill, after it, and while the job is stopped for its savepoint
PARTS = (T0, T0 + 60 * 60_000, T0 + 2 * H, T0 + 3 * H)


@pytest.fixture(scope="module")
def gen():
    return SyntheticTelemetry(hosts=HOSTS, seed=21, faults=[FAULT], host_prefix=PREFIX)


def samples(gen, start: int, end: int) -> list[dict]:
    return [s for b in gen.iter_range(start, end) for s in b]


def write(bootstrap: str, recs: list[dict]) -> None:
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="cluster-test") as out:
        for s in recs:
            out.write(s)
    assert out.dropped == 0


def ours(bootstrap: str, topic: topics.Topic) -> list[dict]:
    return [r for r in read_all(bootstrap, topic, idle_s=1.0) if r["host"].startswith(PREFIX)]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = FlinkCluster(free_port(), free_port(), taskmanagers=2, slots=2,
                     state_dir=tmp_path_factory.mktemp("flink"))
    c.up()
    yield c
    c.down()


@pytest.fixture(scope="module")
def job(cluster, bootstrap, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    sets = {"kafka.bootstrap-servers": bootstrap, "stream.parallelism": "2", "stream.consumer-group": f"cl-{tag}",
            "stream.transactional-id-prefix": f"cl-{tag}", "stream.start-from": str(now_ms()),
            "stream.checkpoint-interval-ms": "2000",
            "stream.checkpoint-dir": str(tmp_path_factory.mktemp("checkpoints")),
            "stream.window-size-ms": str(WINDOW_MS), "stream.out-of-orderness-ms": str(OUT_OF_ORDERNESS_MS)}
    job_id = flink_jobs.submit(cluster.rest, sets)
    flink_jobs.wait_for_state(cluster.rest, job_id, {"RUNNING"})
    wait_for(lambda: all(v["status"] == "RUNNING" for v in rest_call(cluster.rest, f"/jobs/{job_id}")["vertices"]),
             120, "every task of the job running")
    state = {"id": job_id, "sets": sets}
    yield state
    try:
        flink_jobs.cancel(cluster.rest, state["id"])
    except Exception:  # noqa: BLE001 - teardown of a job that may have ended
        pass


@pytest.fixture(scope="module")
def reference_outputs(gen):
    return reference.run(samples(gen, PARTS[0], PARTS[-1]), WINDOW_MS, steps.EnsembleFeatureScorer.from_config(
        Config()))


def closable_until(end: int) -> int:
    """The last window end the watermark passes when the input stops at ``end`` (the final window stays open)."""
    return end - WINDOW_MS


def features_through(bootstrap: str, end: int):
    n_series = 12 * HOSTS
    return lambda: (f := ours(bootstrap, topics.FEATURES)) and \
        sum(x["window_end"] >= closable_until(end) for x in f) >= n_series and f


def check_exactly_the_reference(features, anomalies, reference_outputs, through: int) -> None:
    keys = [(f["series_id"], f["window_start"]) for f in features]
    assert len(keys) == len(set(keys)), "a feature window was delivered twice"
    expected = {(f["series_id"], f["window_start"]): f for f in reference_outputs.features
                if f["window_end"] <= through}
    got = {k: f for k, f in zip(keys, features) if f["window_end"] <= through}
    assert set(got) == set(expected), (f"{len(set(expected) - set(got))} windows missing, "
                                       f"{len(set(got) - set(expected))} unexpected")
    for k, f in got.items():
        assert f == {**expected[k], "producer": f["producer"]}
    by = lambda a: (a["series_id"], a["window_start"], a["score"])  # noqa: E731
    assert sorted(by(a) for a in anomalies if a["window_end"] <= through and a["verdict"] == "anomaly") == \
        sorted(by(a) for a in reference_outputs.anomalies if a["window_end"] <= through)


def test_exactly_once_through_a_killed_taskmanager(cluster, job, bootstrap, gen, reference_outputs):
    write(bootstrap, samples(gen, PARTS[0], PARTS[1]))
    wait_for(lambda: len(ours(bootstrap, topics.FEATURES)) > 100, 240, "the first committed features")
    victims = cluster.taskmanager_pids()
    assert len(victims) == 2
    os.kill(victims[0], signal.SIGKILL)
    write(bootstrap, samples(gen, PARTS[1], PARTS[2]))  # arrives while the job recovers
    cluster.start_taskmanager()  # standalone clusters get lost capacity back by starting a TaskManager
    features = wait_for(features_through(bootstrap, PARTS[2]), 600, "the features of the second part")
    restarts = rest_call(cluster.rest, f"/jobs/{job['id']}/exceptions")["exceptionHistory"]["entries"]
    assert restarts, "the job never noticed the lost TaskManager"
    assert flink_jobs.job_state(cluster.rest, job["id"]) == "RUNNING"
    anomalies = ours(bootstrap, topics.ANOMALIES)
    assert any(a["host"] == FAULT.host for a in anomalies)
    check_exactly_the_reference(features, anomalies, reference_outputs, closable_until(PARTS[2]))


def test_stop_with_savepoint_and_resume_is_continuous(cluster, job, bootstrap, gen, reference_outputs):
    location = flink_jobs.savepoint(cluster.rest, job["id"], stop=True)
    assert flink_jobs.wait_for_state(cluster.rest, job["id"], {"FINISHED"}) == "FINISHED"
    write(bootstrap, samples(gen, PARTS[2], PARTS[3]))  # while no job runs
    job["id"] = flink_jobs.submit(cluster.rest, job["sets"], savepoint=location)
    features = wait_for(features_through(bootstrap, PARTS[3]), 600, "the features after the resume")
    check_exactly_the_reference(features, ours(bootstrap, topics.ANOMALIES), reference_outputs,
                                closable_until(PARTS[3]))
    # continuity: every series has every window from the first to the last, once
    by_series: dict[str, list[int]] = {}
    for f in features:
        by_series.setdefault(f["series_id"], []).append(f["window_start"])
    assert len(by_series) == 12 * HOSTS
    for starts in by_series.values():
        starts.sort()
        assert starts == list(range(starts[0], starts[-1] + WINDOW_MS, WINDOW_MS))


def test_down_ends_the_daemons_and_what_a_killed_taskmanager_left_running(cluster):
    """A SIGKILLed TaskManager (the failover test) leaves its Python workers running, adopted by init; `down`
    finds them by the cluster's FLINK_CONF_DIR in their environment. A process started with the cluster's
    environment stands for one, so the test does not depend on how fast orphaned workers notice on their own."""
    stand_in = subprocess.Popen(["sleep", "600"], env=cluster.env(), start_new_session=True)
    leftovers = cluster.leftover_pids()
    assert stand_in.pid in leftovers
    print(f"left over before down: {len(leftovers)} process(es)")
    assert cluster.down()
    stand_in.wait(10)
    assert cluster.pids() == [] and cluster.leftover_pids() == []
