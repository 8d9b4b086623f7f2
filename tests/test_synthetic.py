"""The seeded synthetic generator: deterministic, valid, and its faults do what the labels say."""

import json

import numpy as np
import pytest

from collectors.faults import DEMO_FAULTS, FAULT_KINDS, Fault, parse_duration_ms, parse_fault, read_labels, \
    write_labels
from collectors.output import JsonlOutput, read_jsonl
from collectors.synthetic import SyntheticTelemetry
from collectors.synthetic_run import play
from schemas import codec, topics

H = 3_600_000
T0 = 1_700_006_400_000 - 1_700_006_400_000 % 86_400_000


def values(samples, host, metric, attrs=None):
    out = []
    for s in samples:
        if s["host"] == host and s["metric"] == metric and (attrs is None or s["attrs"] == attrs):
            out.append(s["value"] if "value" in s else s["hist"]["sum"] / max(s["hist"]["count"], 1))
    return np.array(out)


def test_same_seed_same_samples_in_any_order():
    a = SyntheticTelemetry(hosts=2, seed=5)
    b = SyntheticTelemetry(hosts=2, seed=5)
    whole = [s for batch in a.iter_range(T0, T0 + 30 * 60_000) for s in batch]
    late_half = [s for batch in b.iter_range(T0 + 15 * 60_000, T0 + 30 * 60_000) for s in batch]
    assert whole[len(whole) // 2:] == late_half
    c = SyntheticTelemetry(hosts=2, seed=6)
    assert c.samples_at(T0) != a.samples_at(T0)


def test_samples_are_valid_and_cover_every_signal():
    gen = SyntheticTelemetry(hosts=2, seed=0)
    batch = gen.samples_at(T0 + 12 * H)
    for s in batch:
        codec.validate(topics.TELEMETRY.name, s)
    metrics = {s["metric"] for s in batch}
    assert metrics == {"system.cpu.utilization", "ebpf.runqueue.latency", "ebpf.block.io.latency",
                       "ebpf.tcp.retransmits", "http.server.request.duration", "http.server.requests",
                       "system.memory.usage", "system.filesystem.usage"}
    assert len(batch) == 2 * 12


def test_daily_seasonality_in_cpu():
    gen = SyntheticTelemetry(hosts=1, seed=1, interval_ms=60_000)
    samples = [s for b in gen.iter_range(T0, T0 + 24 * H) for s in b]
    cpu = values(samples, "host-1", "system.cpu.utilization")
    hourly = cpu.reshape(24, 60).mean(axis=1)
    assert hourly.max() - hourly.min() > 0.2  # a clear daily cycle, not just noise


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_moves_its_metrics_on_its_host_only(kind):
    fault = Fault(kind, "host-2", T0 + 2 * H, T0 + 3 * H)
    clean = SyntheticTelemetry(hosts=2, seed=9, interval_ms=60_000)
    faulty = SyntheticTelemetry(hosts=2, seed=9, interval_ms=60_000, faults=[fault])
    a = [s for b in clean.iter_range(T0 + 2 * H, T0 + 3 * H) for s in b]
    b = [s for b in faulty.iter_range(T0 + 2 * H, T0 + 3 * H) for s in b]
    assert [s for s in a if s["host"] == "host-1"] == [s for s in b if s["host"] == "host-1"]
    changed = {s2["metric"] for s1, s2 in zip(a, b) if s1 != s2}
    assert changed and changed <= set(fault.metrics) | {"http.server.requests"}, changed
    for metric in fault.metrics:  # some series of each named metric moves materially
        moved = []
        for attrs in {tuple(sorted(s["attrs"].items())) for s in a if s["metric"] == metric}:
            before = values(a, "host-2", metric, dict(attrs))
            after = values(b, "host-2", metric, dict(attrs))
            moved.append(abs(after.mean() - before.mean()) > max(0.2 * abs(before.mean()), 1e-9))
        assert any(moved), metric
    # outside the window nothing differs
    assert clean.samples_at(T0 + 3 * H) == faulty.samples_at(T0 + 3 * H)


def test_fault_specs_and_labels_roundtrip(tmp_path):
    f = parse_fault("cpu_hog@host-2:+2h:20m:x1.5", T0)
    assert (f.kind, f.host, f.start_ms, f.end_ms, f.magnitude) == ("cpu_hog", "host-2", T0 + 2 * H,
                                                                   T0 + 2 * H + 20 * 60_000, 1.5)
    for spec in DEMO_FAULTS:
        parse_fault(spec, T0)
    with pytest.raises(ValueError):
        parse_fault("cpu_hog@host-2", T0)
    with pytest.raises(ValueError):
        Fault("meteor", "h", 0, 1)
    with pytest.raises(ValueError):
        SyntheticTelemetry(hosts=1, faults=[Fault("cpu_hog", "host-9", 0, 1)])
    assert parse_duration_ms("1.5d") == 36 * H
    path = tmp_path / "labels.json"
    write_labels(path, [f], {"seed": 1})
    assert read_labels(path) == [f]
    assert json.loads(path.read_text())["faults"][0]["metrics"] == list(f.metrics)


def test_jsonl_output_roundtrip(tmp_path):
    gen = SyntheticTelemetry(hosts=1, seed=2)
    path = tmp_path / "t.jsonl.gz"
    with JsonlOutput(topics.TELEMETRY, path) as out:
        stats = play(gen, out, T0, T0 + 10 * 60_000, speed=None)
    assert stats.samples == out.sent == 60 * 12
    assert list(read_jsonl(path)) == [s for b in gen.iter_range(T0, T0 + 10 * 60_000) for s in b]


class FakeClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += int(s * 1000) + 1


class Collect:
    def __init__(self):
        self.records = []

    def write(self, r):
        self.records.append(r)

    def flush(self):
        pass


def test_paced_play_catches_up_then_never_runs_ahead_of_the_wall_clock():
    gen = SyntheticTelemetry(hosts=1, seed=0)
    clock = FakeClock(T0 + H)
    out = Collect()
    emitted_at = []
    orig_write = out.write
    out.write = lambda r: (emitted_at.append((r["ts"], clock.now)), orig_write(r))
    play(gen, out, T0, T0 + H + 10 * 60_000, speed=60.0, clock=clock, sleep=clock.sleep)
    assert all(ts <= wall for ts, wall in emitted_at)              # never stamped in the future
    first_hour = [wall for ts, wall in emitted_at if ts < T0 + H]
    assert first_hour[-1] - first_hour[0] == pytest.approx(H / 60, rel=0.01)  # history at 60x
    assert emitted_at[-1][1] >= T0 + H + 9 * 60_000                  # then real time
