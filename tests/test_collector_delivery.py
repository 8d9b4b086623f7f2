"""How collector output reaches Kafka: bounded, non-blocking, every drop counted; recordings; self-metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from augur.consume import read_all
from augur.tail import format_record
from collectors import procfs
from collectors.output import BufferedKafkaOutput
from collectors.ratelimit import TokenBucket
from collectors.recording import RecordingWriter, read_recording, retime
from collectors.selfmetrics import SelfMetrics, serve_prometheus
from collectors.synthetic import SyntheticTelemetry
from infra.kafka_broker import free_port
from schemas import topics
from tests.ebpf_support import require_ebpf

T0 = 1_764_806_400_000


def synthetic(n: int) -> list[dict]:
    gen = SyntheticTelemetry(hosts=1, seed=1)
    return [s for b in gen.iter_range(T0, T0 + 10 * 60_000) for s in b][:n]


def test_dead_broker_never_blocks_and_drops_the_oldest_counted():
    out = BufferedKafkaOutput(topics.TELEMETRY, f"127.0.0.1:{free_port()}", capacity=10)  # nothing listens
    t = time.monotonic()
    for s in synthetic(25):
        out.write(s)
    assert time.monotonic() - t < 1.0          # writes return at once
    time.sleep(0.5)
    assert out.queued <= 10 and out.dropped >= 15
    assert out.delivered == 0 and out.sent == 25
    out.close(timeout_s=1.0)
    assert out.dropped == 25                    # nothing was delivered, and every loss is counted


def test_dead_broker_buffer_is_bounded_in_bytes_too():
    from schemas import codec
    recs = synthetic(40)
    sizes = [len(codec.encode(topics.TELEMETRY.name, r)) for r in recs]
    bound = sum(sizes[:10])
    out = BufferedKafkaOutput(topics.TELEMETRY, f"127.0.0.1:{free_port()}", capacity=1000, max_bytes=bound)
    for s in recs:
        out.write(s)
    time.sleep(0.5)
    assert 0 < out.queued_bytes <= bound        # and a batch of a quarter of it, at most, in flight
    assert out.dropped + out.queued >= 40 - 5   # what is neither queued nor in flight was dropped and counted
    out.close(timeout_s=1.0)
    assert out.dropped == 40


@pytest.mark.kafka
def test_live_broker_receives_everything(bootstrap):
    recs = synthetic(300)
    out = BufferedKafkaOutput(topics.EVENTS, bootstrap, capacity=1000)  # a topic no other test reads
    events = [{"v": 1, "ts": r["ts"], "host": r["host"], "producer": r["producer"], "event": "probe",
               "attrs": {"n": str(i)}} for i, r in enumerate(recs)]
    for e in events:
        out.write(e)
    out.close()
    assert out.dropped == 0 and out.delivered == len(events)
    got = [r for r in read_all(bootstrap, topics.EVENTS) if r["event"] == "probe"]
    assert sorted(int(r["attrs"]["n"]) for r in got) == list(range(len(events)))


def test_recording_roundtrip_and_retime(tmp_path):
    path = tmp_path / "rec.jsonl.gz"
    w = RecordingWriter(path)
    tel = w.output(topics.TELEMETRY)
    for s in synthetic(50):
        tel.write(s)
    w.close()
    recs = list(read_recording(path))
    assert len(recs) == 50 and all(t is topics.TELEMETRY for t, _ in recs)
    shifted = retime(recs, T0 + 10**9)
    assert max(r["ts"] for _, r in shifted) == T0 + 10**9
    assert [r["ts"] - s["ts"] for (_, r), (_, s) in zip(shifted, recs)] == [10**9 - (recs[-1][1]["ts"] - T0)] * 50
    (tmp_path / "bad.jsonl").write_text('{"topic": "augur.telemetry.v1", "record": {"v": 9}}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        list(read_recording(tmp_path / "bad.jsonl"))


def test_self_metrics_deltas_and_prometheus_endpoint():
    m = SelfMetrics()
    m.add("lost_events", 3, collector="process")
    m.set_total("dropped", 7, topic="augur.telemetry.v1")
    assert sorted(m.deltas()) == [("dropped", {"topic": "augur.telemetry.v1"}, 7.0),
                                  ("lost_events", {"collector": "process"}, 3.0)]
    m.add("lost_events", 2, collector="process")
    assert ("lost_events", {"collector": "process"}, 2.0) in m.deltas()
    port = free_port()
    server = serve_prometheus(m, port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'augur_collector_lost_events_total{collector="process"} 5' in body
    assert "# TYPE augur_collector_dropped_total counter" in body


def test_profile_stacks_beyond_the_limit_are_counted_as_one_and_records_validate():
    from collections import Counter

    from collectors import samples
    from collectors.profile import OTHER_STACKS, fold
    from schemas import codec
    stacks = Counter({("main", "a"): 5, ("main", "b"): 9, ("main", "c"): 1, ("main", "d_[k]"): 2})
    folded = fold(stacks, 2)
    assert folded == [(("main", "b"), 9), (("main", "a"), 5), ((OTHER_STACKS,), 3)]
    assert fold(stacks, 4) == sorted(stacks.items(), key=lambda kv: -kv[1])
    # a size budget: ("main", "b") takes 11 characters with its JSON quotes and commas, the next would pass 20
    assert fold(stacks, 4, max_chars=20) == [(("main", "b"), 9), ((OTHER_STACKS,), 8)]
    rec = samples.profile(samples.producer("t"), "h", 1_700_000_000_000, 10_000, 49, 42, "app", "/", folded)
    assert rec["samples"] == 17
    codec.validate(topics.PROFILES.name, rec)
    line = format_record(topics.PROFILES, rec)
    assert "app[42] 0.35 s on CPU in 10 s" in line and "(9 of 17 samples) ends main;b" in line
    for bad in ({**rec, "stacks": []}, {**rec, "pid": 0},
                {**rec, "stacks": [{"frames": ["x" * 257], "count": 1}]}, {**rec, "extra": 1}):
        with pytest.raises(codec.Rejected):
            codec.validate(topics.PROFILES.name, bad)


def test_token_bucket_counts_what_it_refuses():
    now = [0.0]
    tb = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert sum(tb.allow() for _ in range(20)) == 5 and tb.refused == 15
    now[0] += 1.0
    assert sum(tb.allow() for _ in range(20)) == 5  # refilled to the burst, not beyond


def test_procfs_parsers():
    mem = procfs.parse_meminfo("MemTotal:       16000 kB\nMemAvailable:    4000 kB\nHugePages_Total: 0\n")
    assert mem == {"MemTotal": 16000 * 1024, "MemAvailable": 4000 * 1024, "HugePages_Total": 0}
    assert procfs.parse_pressure("some avg10=1.50 avg60=0.20 avg300=0.00 total=1\nfull avg10=0.25 avg60=0 "
                                 "avg300=0 total=0\n") == {"some": 1.5, "full": 0.25}
    busy, tot = procfs.parse_cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    assert (busy, tot) == (150, 1000)
    mounts = procfs.parse_mounts("/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/loop0 /mnt/my\\040disk "
                                 "ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n")
    assert [(m.mountpoint, m.fstype) for m in mounts] == [("/", "ext4"), ("/mnt/my disk", "ext4")]
    cg = procfs.cgroup_mounts("cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
                              "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")
    assert set(cg) == {"v2", "memory"}
    assert procfs.parse_loadavg("0.52 0.40 0.35 2/311 4242\n") == (0.52, 311)
    assert procfs.parse_file_nr("2080\t0\t9223372036854775807\n") == (2080, 9223372036854775807)
    mine = procfs.pid_stat(os.getpid())
    assert mine[0] == "R" and int(mine[1]) == os.getppid()   # this process runs; field 4 is its parent
    assert procfs.pid_stat(2 ** 22 + 1) is None                # beyond pid_max: no such process
    rss, pss = procfs.resident_bytes(os.getpid()), procfs.proportional_bytes(os.getpid())
    assert 0 < pss <= rss    # this process shares libc with others: its share is at most what it has resident
    assert procfs.proportional_bytes(2 ** 22 + 1) is None


def test_the_collectors_do_not_load_numpy():
    """The collector process imports none of the numerical stack (NumPy alone is about 15 MB resident): what it
    imports to collect, its config included, must not pull it in."""
    from collectors.runner import SIGNALS
    modules = ["augur.cli", "collectors.runner", "collectors.output", "collectors.elf_symbols"] + [
        target.split(":")[0] for target in SIGNALS.values()]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_host_resources_with_a_ceiling_carry_their_capacity():
    """Without eBPF the host collector only reads /proc: every gauge the forecaster needs has its capacity."""
    import os

    from augur.config import Config
    from collectors.host import HostCollector
    c = HostCollector(Config(), "cap-host", with_ebpf=False)
    out = {s["metric"]: s for s in c.collect(0, 1000)}
    c.close()
    load = out["system.cpu.load"]
    assert load["capacity"] == os.cpu_count() and load["value"] >= 0
    tasks = out["system.tasks.usage"]
    assert 1 <= tasks["value"] < tasks["capacity"]
    files = out["system.files.usage"]
    assert 0 < files["value"] < files["capacity"]
    assert out["system.memory.usage"]["capacity"] > 0 and out["system.filesystem.usage"]["capacity"] > 0


@pytest.mark.kafka
@pytest.mark.ebpf
def test_augur_collect_streams_valid_telemetry_into_kafka(bootstrap, tmp_path):
    require_ebpf()
    env = {**os.environ, "AUGUR_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "AUGUR_COLLECT_HOST": "collect-test-host",
           "AUGUR_COLLECT_PROMETHEUS_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "augur.cli", "collect", "--interval", "1s", "--duration", "3",
                          "--signals", "cpu,host,tcp,profile"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0 dropped" in out.stderr
    profiles = [r for r in read_all(bootstrap, topics.PROFILES) if r["host"] == "collect-test-host"]
    assert profiles and all(r["samples"] == sum(st["count"] for st in r["stacks"]) for r in profiles)
    got = [r for r in read_all(bootstrap, topics.TELEMETRY, strict=False) if r["host"] == "collect-test-host"]
    metrics = {r["metric"] for r in got}
    assert {"ebpf.runqueue.latency", "system.memory.usage", "system.filesystem.usage",
            "augur.collector.samples"} <= metrics
    counted = [r["value"] for r in got if r["metric"] == "augur.collector.profiles"]
    assert sum(counted) == len(profiles)     # the runner's own count of what it wrote
    record = tmp_path / "rec.jsonl"
    out = subprocess.run([sys.executable, "-m", "augur.cli", "record", "-o", str(record), "--interval", "1s",
                          "--duration", "2", "--signals", "host,process"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert {t for t, _ in read_recording(record)} >= {topics.TELEMETRY}
