"""End to end on real services: synthetic telemetry -> real Kafka -> the PyFlink job (mini-cluster) -> Kafka.

One streaming job for the whole module: it must find the injected fault and nothing on the untouched hosts,
produce exactly the reference pipeline's features and anomalies, and survive bad input, dead-lettering each bad
message with its reason while it keeps running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from augur.config import Config
from augur.consume import read_all
from augur.timeparse import now_ms
from collectors.output import KafkaOutput
from jobs import host_state, reference, steps
from jobs.forecasting import Forecaster
from schemas import series, topics
from tests.scenarios import FAST_FORECAST, H, cpu_hog_and_disk_fill_scenario, in_fault_window
from tests.test_schemas import reference_validator

pytestmark = [pytest.mark.kafka, pytest.mark.flink, pytest.mark.slow]

WINDOW_MS = 60_000
OUT_OF_ORDERNESS_MS = 20_000
NO_DATA_AFTER_MS = 3 * WINDOW_MS
ODD_HOST = "e2e web/1: #%"  # escaped in partition paths


def wait_for(predicate, timeout_s: float, what: str, job=None, interval_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if job is not None and job.proc.poll() is not None:
            pytest.fail(f"the streaming job exited ({job.proc.returncode}) while waiting for {what}:\n{job.log_tail()}")
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f":\n{job.log_tail()}" if job else ""))


class Job:
    def __init__(self, proc: subprocess.Popen, log, started_ms: int, checkpoints: Path):
        self.proc, self.log, self.started_ms, self.checkpoints = proc, log, started_ms, checkpoints

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def completed_checkpoint(self) -> int:
        """The number of the job's last completed checkpoint (a chk-N with its metadata written), or 0."""
        done = [int(d.name[4:]) for d in self.checkpoints.glob("*/chk-*") if (d / "_metadata").exists()]
        return max(done, default=0)


@pytest.fixture(scope="module")
def job(bootstrap, host_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    log = tmp / "job.log"
    started_ms = now_ms()
    sets = {"kafka.bootstrap-servers": bootstrap, "stream.consumer-group": f"e2e-{uuid.uuid4().hex[:8]}",
            "stream.start-from": str(started_ms), "stream.checkpoint-dir": str(tmp / "checkpoints"),
            "stream.checkpoint-interval-ms": "5000", "stream.window-size-ms": str(WINDOW_MS),
            "stream.out-of-orderness-ms": str(OUT_OF_ORDERNESS_MS), "stream.no-data-after-ms": str(NO_DATA_AFTER_MS),
            "models.dir": host_models, **{k: str(v) for k, v in FAST_FORECAST.items()}}
    cmd = [sys.executable, "-m", "jobs.stream_job"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "AUGUR_RUN_DIR": str(tmp)})
    job = Job(proc, log, started_ms, tmp / "checkpoints")
    yield job
    import signal
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="module")
def scenario():
    return cpu_hog_and_disk_fill_scenario(hours=5)


@pytest.fixture(scope="module")
def streamed(job, bootstrap, scenario):
    """Play the scenario into Kafka and wait until the job has closed every window the watermark allows."""
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="e2e-synth") as out:
        for s in scenario.samples():
            out.write(s)
    assert out.dropped == 0
    last_closable = scenario.end - WINDOW_MS  # the final window stays open: nothing later moves the watermark
    n_series = len({series.series_id(s["host"], s["metric"], s["attrs"]) for s in scenario.samples(
        scenario.end - WINDOW_MS, scenario.end)})
    # other tests put their own records (and deliberately broken ones) on the shared output topics (test_actions,
    # the cluster tests' job): keep this scenario's hosts; the job's records are all compared with the reference,
    # so a broken one of the job's would still fail the tests
    hosts = set(scenario.gen.host_names)
    features = wait_for(lambda: (f := [x for x in read_all(bootstrap, topics.FEATURES, idle_s=1.0)
                                       if x["host"] in hosts]) and
                        sum(x["window_end"] >= last_closable for x in f) >= n_series and f,
                        600, "features of the last closable window of every series", job)
    # the host stage scores a window on an event-time timer, possibly in the checkpoint after the one that
    # committed the last features (checkpoints are aligned: once checkpoint N + 1 completes, everything the final
    # watermark set off before it is in), so wait for two more checkpoints before reading the anomalies
    seen = job.completed_checkpoint()
    wait_for(lambda: job.completed_checkpoint() >= seen + 2, 120, "two more checkpoints", job)
    anomalies = [r for r in read_all(bootstrap, topics.ANOMALIES, idle_s=1.0)
                 if r["host"] in hosts and r["verdict"] == "anomaly"]
    forecasts = [r for r in read_all(bootstrap, topics.FORECASTS, idle_s=1.0, strict=False) if r["host"] in hosts]
    return features, anomalies, forecasts


def test_anomaly_for_the_faulty_host_inside_the_fault_window_and_none_elsewhere(streamed, scenario):
    _, anomalies, _ = streamed
    fault = scenario.fault
    assert any(a["host"] == fault.host and a["metric"] in fault.metrics and in_fault_window(a, fault)
               for a in anomalies), anomalies[:5]
    assert [a for a in anomalies if a["host"] in scenario.untouched_hosts] == []


def test_the_hosts_forests_judge_the_faulty_hosts_inside_their_faults(streamed, scenario):
    _, anomalies, _ = streamed
    by_host = [a for a in anomalies if a["metric"] == host_state.HOST_METRIC]
    for fault in (scenario.fault, *scenario.other_faults):
        assert any(a["host"] == fault.host and in_fault_window(a, fault) for a in by_host), (fault, by_host[:5])
    assert all(a["detectors"][0]["name"] == "iforest" for a in by_host)


def test_flink_output_equals_the_reference_pipeline(streamed, scenario, host_models):
    features, anomalies, forecasts = streamed
    ref_features, ref_anomalies, ref_forecasts = reference.run(
        scenario.samples(), WINDOW_MS, steps.EnsembleFeatureScorer.from_config(Config({"models.dir": host_models})),
        Forecaster.from_config(Config(FAST_FORECAST)))
    closed = {(f["series_id"], f["window_start"]) for f in features}
    assert len(closed) == len(features), "a feature window was emitted twice"
    expected = {(f["series_id"], f["window_start"]): f for f in ref_features
                if (f["series_id"], f["window_start"]) in closed}
    assert len(expected) == len(features) >= 36 * 298
    for f in features:
        assert f == expected[(f["series_id"], f["window_start"])]
    closed_starts = {start for _, start in closed}
    expected_anomalies = sorted((a["series_id"], a["window_start"], a["score"]) for a in ref_anomalies
                                if (a["series_id"], a["window_start"]) in closed
                                or (a["metric"] == host_state.HOST_METRIC and a["window_start"] in closed_starts))
    assert any(a["metric"] == host_state.HOST_METRIC for a in ref_anomalies)
    assert sorted((a["series_id"], a["window_start"], a["score"]) for a in anomalies) == expected_anomalies
    last_closed = max(f["window_end"] for f in features)
    by_key = lambda r: (r["series_id"], r["ts"], r["state"])  # noqa: E731
    assert sorted(forecasts, key=by_key) == sorted((r for r in ref_forecasts if r["ts"] < last_closed), key=by_key)


def test_forecast_raised_while_the_disk_fills_and_retracted_after_cleanup(streamed, scenario):
    *_, forecasts = streamed
    fill = scenario.other_faults[0]
    assert forecasts and {r["host"] for r in forecasts} == {fill.host}
    disk = [r for r in forecasts if r["metric"] == "system.filesystem.usage"]
    assert disk == forecasts
    first = disk[0]
    assert first["state"] == "active" and fill.start_ms < first["ts"] < fill.end_ms
    # raised before the disk would be full at the fill rate, with bounds around the prediction
    assert first["ts"] < first["exhaustion_lower_ts"] <= first["exhaustion_ts"] <= first["exhaustion_upper_ts"]
    assert disk[-1]["state"] == "retracted" and disk[-1]["ts"] >= fill.end_ms


@pytest.fixture(scope="module")
def archived(streamed, job, bootstrap, scenario, tmp_path_factory):
    """The archive job, bounded, over everything appended to the topics since the module started; plus one late
    sample of a host whose name needs escaping in a partition path (the stream dead-letters it as late; the
    archive keeps it, as valid history). Returns the archive's root."""
    late = dict(scenario.samples(scenario.start, scenario.start + 10_000)[0], host=ODD_HOST)
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="e2e-archive") as out:
        out.write(late)
    root = tmp_path_factory.mktemp("archive")
    sets = {"kafka.bootstrap-servers": bootstrap, "archive.dir": str(root),
            "archive.consumer-group": f"e2e-archive-{uuid.uuid4().hex[:8]}", "archive.checkpoint-interval-ms": "3000",
            "stream.start-from": str(job.started_ms), "stream.checkpoint-dir": str(root.parent / "archive-cp")}
    done = subprocess.run([sys.executable, "-m", "jobs.archive_job", "--bounded"]
                          + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, "AUGUR_RUN_DIR": str(root.parent)})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return root, late


def archived_rows(root, kind: str, hosts: set[str]) -> list[tuple[str, str, int, str, dict]]:
    """``(date, host, ts, series_id, record)`` of the given hosts' rows (the topics are shared by test modules)."""
    from jobs import archive
    return [(date, host, ts, sid, json.loads(rec)) for date, host, pdir in archive.partitions(root, kind)
            if host in hosts for ts, sid, rec in archive.partition_rows(pdir)]


def test_the_archive_holds_the_accepted_telemetry_by_date_and_host(archived, scenario):
    from jobs import archive
    root, late = archived
    rows = archived_rows(root, "telemetry", set(scenario.gen.host_names) | {ODD_HOST})
    for date, host, ts, sid, rec in rows:
        assert (date, host, ts, sid) == (archive.date_of(rec["ts"]), rec["host"], rec["ts"],
                                         series.series_id(rec["host"], rec["metric"], rec["attrs"]))
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, (r[4] for r in rows))) == sorted(map(key, [*scenario.samples(), late]))
    # Flink's filesystem sink and the Python writers escape a host the same way: one folder per host and day
    assert archive.partition_dir(root, "telemetry", archive.date_of(late["ts"]), ODD_HOST).is_dir()


def test_the_archive_holds_the_streams_outputs(archived, streamed, scenario):
    features, anomalies, forecasts = streamed
    root, _ = archived
    hosts = set(scenario.gen.host_names)
    for kind, recs in (("features", features), ("anomalies", anomalies), ("forecasts", forecasts)):
        rows = archived_rows(root, kind, hosts)
        assert all((ts, sid, host) == (r["ts"], r["series_id"], r["host"]) for _, host, ts, sid, r in rows)
        # the archive job started after these were read: it holds them all, and more only of later windows
        key = lambda r: (r["series_id"], r["ts"], r.get("state", ""))  # noqa: E731
        by_key = {key(r): r for *_, r in rows}
        assert len(by_key) == len(rows), f"{kind}: a record archived twice"
        assert all(by_key.get(key(r)) == r for r in recs), kind
        streamed_keys, last_closed = {key(r) for r in recs}, max(f["window_end"] for f in features)
        assert not [k for k, r in by_key.items() if r["ts"] <= last_closed and k not in streamed_keys
                    and r.get("verdict") != "no_data"], kind


def test_backfill_of_the_archive_gives_the_flink_jobs_answers(archived, streamed, scenario, host_models, tmp_path):
    """The Beam backfill over the telemetry the archive job wrote: the same features, anomalies and forecasts as
    the stream.

    Run as users run it, in a process of its own: PyFlink code used in this test process (test_jvm_functions)
    registers its operations with Beam's worker, which then misreads the backfill's transforms."""
    from tests.test_backfill import read_output, without_producer
    features, anomalies, forecasts = streamed
    root, _ = archived
    sets = [a for k, v in {**FAST_FORECAST, "models.dir": host_models}.items() for a in ("--set", f"{k}={v}")]
    done = subprocess.run([sys.executable, "-m", "jobs.backfill", str(root), "-o", str(tmp_path / "out"), *sets],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    last_closed = max(f["window_end"] for f in features)
    hosts = set(scenario.gen.host_names)
    for kind, streamed_recs in (("features", features), ("anomalies", anomalies), ("forecasts", forecasts)):
        got = [r for r in read_output(tmp_path / "out", kind) if r["ts"] <= last_closed and r["host"] in hosts]
        assert without_producer(got) == without_producer(streamed_recs), kind


def test_outputs_validate_against_the_published_schemas(streamed):
    features, anomalies, forecasts = streamed
    assert forecasts
    for topic, recs in ((topics.FEATURES, features[:3000]), (topics.ANOMALIES, anomalies),
                        (topics.FORECASTS, forecasts)):
        validator = reference_validator(topic.name)
        for rec in recs:
            assert validator.is_valid(rec)


def test_bad_input_is_dead_lettered_with_reasons_and_the_job_keeps_running(streamed, job, bootstrap, scenario):
    marker = uuid.uuid4().hex
    good = scenario.samples(scenario.end - 10_000, scenario.end)[0]
    bad = {
        "malformed": b"\xff\xfe" + marker.encode() + b"\x00 not json at all",
        "unknown_version": json.dumps({**good, "v": 2, "attrs": {"m": marker}}).encode(),
        "non_finite": json.dumps({**good, "attrs": {"m": marker}, "value": float("nan")}).encode(),  # NaN token
        "oversized": json.dumps({**good, "attrs": {"m": marker}}).encode() + b" " * 70_000,  # valid JSON, too big
        "clock_skew": json.dumps({**good, "ts": now_ms() + 3 * H, "attrs": {"m": marker}}).encode(),
        "late": json.dumps({**good, "ts": scenario.start + H, "attrs": {"m": marker}}).encode(),
    }
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="e2e-bad", validate=False) as out:
        for payload in bad.values():
            out.write_raw(marker.encode(), payload)
    found: list[dict] = []

    def dead_letters():
        found[:] = [d for d in read_all(bootstrap, topics.DEADLETTER, idle_s=1.0) if marker in d["payload"]]
        return found if {d["reason"] for d in found} >= set(bad) else None
    try:
        recs = wait_for(dead_letters, 120, "a dead letter for each bad message", job)
    finally:
        print("dead letters seen:", sorted(d["reason"] for d in found))
    by_reason = {d["reason"]: d for d in recs}
    assert set(by_reason) == set(bad)
    assert by_reason["unknown_version"]["detail"].startswith("schema version 2")
    assert by_reason["oversized"]["payload_bytes"] > 70_000
    assert by_reason["late"]["event_ts"] == scenario.start + H
    validator = reference_validator(topics.DEADLETTER.name)
    assert all(validator.is_valid(d) for d in recs)
    # still running, and still producing: new data closes a new window
    assert job.proc.poll() is None
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="e2e-more") as out:
        for s in scenario.samples(scenario.end, scenario.end + 3 * WINDOW_MS):
            out.write(s)
    wait_for(lambda: any(f["window_start"] == scenario.end for f in read_all(bootstrap, topics.FEATURES, idle_s=1.0)),
             120, "features after the bad input", job)
    assert job.proc.poll() is None
    assert "Restarting" not in job.log.read_text(errors="replace")


def test_a_silent_series_gets_one_no_data_record(streamed, job, bootstrap, scenario):
    """After the bad-input test the data reach scenario.end + 3 windows; now one host falls silent while the
    others go on: each of its series gets one no_data record once the watermark is past its silence."""
    silent_host = scenario.gen.host_names[-1]
    resumed = scenario.end + 3 * WINDOW_MS
    later = resumed + NO_DATA_AFTER_MS + 3 * WINDOW_MS
    with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="e2e-silence") as out:
        for s in scenario.samples(resumed, later):
            if s["host"] != silent_host:
                out.write(s)
    silent_series = {series.series_id(s["host"], s["metric"], s["attrs"])
                     for s in scenario.samples(resumed - WINDOW_MS, resumed) if s["host"] == silent_host}

    def no_data():
        recs = [a for a in read_all(bootstrap, topics.ANOMALIES, idle_s=1.0)
                if a["verdict"] == "no_data" and a["host"] in scenario.gen.host_names]
        return recs if {a["series_id"] for a in recs} >= silent_series else None
    recs = wait_for(no_data, 180, "a no_data record for each series of the silent host", job)
    assert {a["host"] for a in recs} == {silent_host}
    assert len(recs) == len(silent_series)  # once per silence, not once per window
    validator = reference_validator(topics.ANOMALIES.name)
    for a in recs:
        assert validator.is_valid(a)
        assert a["value"] is None and a["detectors"] == [] and "no samples" in a["explanation"]
        assert a["window_end"] - a["window_start"] == NO_DATA_AFTER_MS
