"""Multivariate quality harness: ``python -m augur.host_eval [--train-hours 24] [--test-hours 24]``.

On seeded synthetic hosts (:mod:`collectors.synthetic`) with labelled injected faults (every kind of
:mod:`collectors.faults`, twice, on rotating hosts), it compares at the level of *events* (not points, not
point-adjusted):

- ``host``: the stream's host scoring (:mod:`jobs.host_state`), and each of its two detectors alone:
  - ``iforest``: one Isolation Forest per host over the host's signals at each window (CPU, run-queue and I/O
    latency, retransmits, HTTP latency and error ratio, memory, filesystem), each as its robust z against its own
    trailing hour, trained with ``augur train``'s code on the fault-free training span and scored in numba; a window
    alarms when it is more isolated than every training one;
  - ``envelope``: a window alarms when a signal is further from its median than in any training window (and at
    least ``ensemble.outlier-z`` robust sigmas);
- ``ensemble``: the univariate ensemble on every series (what the stream emits), a host alarms when any series does;
- ``either``: the union of ``host`` and ``ensemble``.

Alarmed windows closer than ``--merge-min`` minutes form one incident. An incident on a fault's host that overlaps
the fault (or starts within ``--grace-min`` after it) detects it; any other incident is a false alarm. Reports
precision, recall and F1 over events and the detection delay (first alarm minus fault start), and ends with
``HOSTS host_f1=.. iforest_f1=.. envelope_f1=.. ensemble_f1=.. either_f1=..``.

``--recording DIR`` scores a real drill instead (:mod:`augur.fault_drill`: this host's real kernel telemetry with
real injected faults and their labels): windows of ``--window`` (default 5s, as the drill samples every second),
forests trained on the windows before the first fault, merge and grace of 1 minute unless given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np

from collectors.faults import FAULT_KINDS, Fault
from collectors.synthetic import SyntheticTelemetry

H = 3_600_000
MIN = 60_000
T0 = 1_767_225_600_000          # 2026-01-01T00:00:00Z


def scenario(train_hours: int, test_hours: int, hosts: int = 4, seed: int = 21) -> tuple[SyntheticTelemetry, list]:
    faults = []
    start = T0 + train_hours * H + H
    gap = (test_hours - 2) * H // (2 * len(FAULT_KINDS))
    for i, kind in enumerate(FAULT_KINDS * 2):
        faults.append(Fault(kind, f"host-{i % hosts + 1}", start + i * gap, start + i * gap + 30 * MIN))
    return SyntheticTelemetry(hosts=hosts, seed=seed, faults=faults), faults


def host_alarms(features: list[dict], split_ms: int, registry_dir: str) -> dict[str, dict[str, np.ndarray]]:
    """Window ends (test span) at which each host is judged anomalous (``host``), and at which each of its detectors
    votes so (``iforest``, ``envelope``), exactly as the stream judges them: forests fitted by ``augur train``'s
    code on the windows before ``split_ms``, then every host's windows run through
    :class:`jobs.host_state.HostRunner` with those forests in a registry."""
    from augur.config import Config
    from jobs import host_state
    from models.registry import ModelRegistry
    from models.train_registry import train_forests
    params = host_state.HostParams()
    registry = ModelRegistry(registry_dir)
    train_forests([f for f in features if f["window_end"] <= split_ms], Config(), registry, min_windows=1)
    runner = host_state.HostRunner(host_state.HostScorer(params, registry))
    for f in sorted(features, key=lambda f: f["window_end"]):
        runner.add(f)
    alarms = {name: defaultdict(list) for name in ("host", "iforest", "envelope")}
    for a in runner.close_until(2 ** 62):
        if a["window_end"] > split_ms:
            alarms["host"][a["host"]].append(a["window_end"])
            for d in a["detectors"]:
                if d["vote"]:
                    alarms[d["name"]][a["host"]].append(a["window_end"])
    return {name: alarm_arrays(by_host) for name, by_host in alarms.items()}


def alarm_arrays(by_host: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Each host's alarmed window ends as an int64 array."""
    return {h: np.array(v, dtype=np.int64) for h, v in by_host.items()}


def incidents(alarm_ends: np.ndarray, merge_ms: int) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for t in np.sort(alarm_ends):
        if out and t - out[-1][1] <= merge_ms:
            out[-1][1] = int(t)
        else:
            out.append([int(t), int(t)])
    return [(a, b) for a, b in out]


def event_scores(alarms: dict[str, np.ndarray], faults: list[Fault], merge_ms: int, grace_ms: int) -> dict:
    detected: dict[int, int] = {}
    false_alarms = true_incidents = 0
    for host, ends in alarms.items():
        for a, b in incidents(ends, merge_ms):
            hit = False
            for i, f in enumerate(faults):
                if f.host == host and a <= f.end_ms + grace_ms and b >= f.start_ms:
                    hit = True
                    first = max(a, f.start_ms)
                    detected[i] = min(detected.get(i, first), first)
            true_incidents += hit
            false_alarms += not hit
    n_inc = true_incidents + false_alarms
    precision = true_incidents / n_inc if n_inc else 0.0
    recall = len(detected) / len(faults)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    delays = [(detected[i] - faults[i].start_ms) / MIN for i in detected]
    missed = sorted({faults[i].kind for i in range(len(faults)) if i not in detected})
    return {"precision": precision, "recall": recall, "f1": f1, "incidents": n_inc, "false": false_alarms,
            "delay_min": float(np.median(delays)) if delays else float("nan"), "missed": missed}


def recorded(directory: str) -> tuple[list[dict], list[Fault]]:
    """A drill's telemetry samples (in event-time order) and its faults."""
    from collectors.faults import read_labels
    from collectors.recording import read_recording
    from schemas import topics
    samples = [r for t, r in read_recording(f"{directory}/recording.jsonl.gz") if t is topics.TELEMETRY]
    samples.sort(key=lambda r: r["ts"])
    return samples, read_labels(f"{directory}/labels.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m augur.host_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-hours", type=int, default=24)
    ap.add_argument("--test-hours", type=int, default=24)
    ap.add_argument("--merge-min", type=float, help="alarms this close form one incident (default 10; recordings 1)")
    ap.add_argument("--grace-min", type=float, help="an incident starting this soon after a fault still detects it "
                                                   "(default 10; recordings 1)")
    ap.add_argument("--recording", help="a directory written by `python -m augur.fault_drill`")
    ap.add_argument("--window", default="5s", help="window size for --recording")
    args = ap.parse_args(argv)
    from augur.config import Config
    from collectors.faults import parse_duration_ms
    from jobs import reference, steps
    start = time.perf_counter()
    if args.recording:
        samples, faults = recorded(args.recording)
        window_ms = parse_duration_ms(args.window)
        split = min(f.start_ms for f in faults) - window_ms
        default_merge = 1.0
        what = (f"{len(faults)} real faults ({', '.join(f.kind for f in faults)}) recorded on "
                f"{', '.join(sorted({f.host for f in faults}))}, {len(samples):,} samples; windows of {args.window}, "
                f"{(split - samples[0]['ts']) / MIN:.1f} min before the first fault")
    else:
        gen, faults = scenario(args.train_hours, args.test_hours)
        window_ms = MIN
        split = T0 + args.train_hours * H
        samples = (s for batch in gen.iter_range(T0, split + args.test_hours * H) for s in batch)
        default_merge = 10.0
        what = (f"{len(faults)} faults ({', '.join(FAULT_KINDS)}, twice each) on {gen.hosts} hosts; train "
                f"{args.train_hours} h, test {args.test_hours} h")
    out = reference.run(samples, window_ms, steps.EnsembleFeatureScorer.from_config(Config()))
    built = time.perf_counter() - start
    import tempfile
    with tempfile.TemporaryDirectory() as registry_dir:
        alarms = host_alarms(out.features, split, registry_dir)
    ens = defaultdict(list)
    for a in out.anomalies:
        if a["window_end"] > split:
            ens[a["host"]].append(a["window_end"])
    alarms["ensemble"] = alarm_arrays(ens)
    alarms["either"] = {h: np.concatenate([alarms["host"].get(h, np.empty(0, np.int64)),
                                           alarms["ensemble"].get(h, np.empty(0, np.int64))])
                        for h in set(alarms["host"]) | set(alarms["ensemble"])}
    merge = int((args.merge_min if args.merge_min is not None else default_merge) * MIN)
    grace = int((args.grace_min if args.grace_min is not None else default_merge) * MIN)
    print(f"{what}; features + univariate scoring took {built:.0f} s")
    print(f"{'detector':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'incidents':>9} {'false':>6} "
          f"{'delay(min, median)':>19}  missed")
    results = {}
    for name, al in alarms.items():
        r = results[name] = event_scores(al, faults, merge, grace)
        print(f"{name:<10} {r['precision']:>9.2f} {r['recall']:>7.2f} {r['f1']:>6.2f} {r['incidents']:>9} "
              f"{r['false']:>6} {r['delay_min']:>19.1f}  {', '.join(r['missed']) or '-'}")
    print("HOSTS " + " ".join(f"{k}_f1={v['f1']:.2f}" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
