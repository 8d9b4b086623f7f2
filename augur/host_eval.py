"""Multivariate quality harness: ``python -m augur.host_eval [--train-hours 24] [--test-hours 24]``.

On seeded synthetic hosts (:mod:`collectors.synthetic`) with labelled injected faults (every kind of
:mod:`collectors.faults`, twice, on rotating hosts), it compares at the level of *events* (not points, not
point-adjusted):

- ``iforest``: one Isolation Forest per host over the host's state at each window (CPU, run-queue and I/O latency,
  retransmits, HTTP latency and error ratio, memory, filesystem), each signal as its deviation from its own trailing
  hour (median/MAD), trained with scikit-learn on the fault-free training span, exported and scored in numba
  (:mod:`udfs.iforest`); a window alarms when it is more abnormal than every training window;
- ``ensemble``: the univariate ensemble on every series (what the stream emits), a host alarms when any series does;
- ``either``: the union of both.

Alarmed windows closer than ``--merge-min`` minutes form one incident. An incident on a fault's host that overlaps
the fault (or starts within ``--grace-min`` after it) detects it; any other incident is a false alarm. Reports
precision, recall and F1 over events and the detection delay (first alarm minus fault start), and ends with
``HOSTS iforest_f1=.. ensemble_f1=.. either_f1=..``.
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
HOST_FEATURES = ("cpu", "runq_p99", "io_p99", "retrans", "http_p99", "http_errors", "memory", "filesystem")


def scenario(train_hours: int, test_hours: int, hosts: int = 4, seed: int = 21) -> tuple[SyntheticTelemetry, list]:
    faults = []
    start = T0 + train_hours * H + H
    gap = (test_hours - 2) * H // (2 * len(FAULT_KINDS))
    for i, kind in enumerate(FAULT_KINDS * 2):
        faults.append(Fault(kind, f"host-{i % hosts + 1}", start + i * gap, start + i * gap + 30 * MIN))
    return SyntheticTelemetry(hosts=hosts, seed=seed, faults=faults), faults


def host_matrix(features: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per host: (window ends, rows x HOST_FEATURES) from feature records (variance-stabilised)."""
    from udfs.transforms import stabilize
    cells: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in features:
        v = f["value"]
        if v is None:
            continue
        key = (f["host"], f["window_end"])
        x = stabilize(f["type"], float(v), f["window_end"] - f["window_start"])
        m = f["metric"]
        if m == "system.cpu.utilization":
            cells[key]["cpu"].append(x)
        elif m == "ebpf.runqueue.latency":
            cells[key]["runq_p99"].append(x)
        elif m == "ebpf.block.io.latency":
            cells[key]["io_p99"].append(x)
        elif m == "ebpf.tcp.retransmits":
            cells[key]["retrans"].append(x)
        elif m == "http.server.request.duration":
            cells[key]["http_p99"].append(x)
        elif m == "http.server.requests":
            cells[key]["req_" + f["attrs"].get("status_class", "")].append(float(v))
        elif m == "system.memory.usage":
            cells[key]["memory"].append(x)
        elif m == "system.filesystem.usage":
            cells[key]["filesystem"].append(x)
    out: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for (host, end), c in sorted(cells.items(), key=lambda kv: kv[0][1]):
        ok, err = sum(c.get("req_2xx", [])), sum(c.get("req_5xx", []))
        c["http_errors"] = [err / (ok + err) if ok + err > 0 else 0.0]
        row = [float(np.mean(c[name])) if c.get(name) else np.nan for name in HOST_FEATURES]
        out[host][0].append(end)
        out[host][1].append(row)
    return {h: (np.array(e, dtype=np.int64), np.array(r, dtype=np.float64)) for h, (e, r) in out.items()}


def residuals(rows: np.ndarray, lookback: int) -> np.ndarray:
    """Each column's deviation from its own trailing median, in trailing MAD units (causal: the window excludes the
    row itself), so daily cycles and slow drifts are not outliers but sudden departures are."""
    import pandas as pd
    df = pd.DataFrame(rows).ffill().bfill()
    past = df.shift(1).rolling(lookback, min_periods=lookback // 4)
    med = past.median()
    mad = (df.shift(1) - med).abs().rolling(lookback, min_periods=lookback // 4).median() * 1.4826
    scale = np.maximum(mad.to_numpy(), 1e-3 * np.abs(med.to_numpy()) + 1e-9)
    return np.nan_to_num((df.to_numpy() - med.to_numpy()) / scale)


def iforest_alarms(matrix, split_ms: int, lookback: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """Window ends (test span) at which each host's forest alarms: a window more abnormal than every training one."""
    from models import iforest_export
    alarms = {}
    for host, (ends, rows) in matrix.items():
        z = residuals(rows, lookback)
        train = ends < split_ms
        forest = iforest_export.train(z[train], n_estimators=100, seed=seed)
        scores = iforest_export.score(iforest_export.export(forest), z)
        alarms[host] = ends[~train & (scores < scores[train].min())]
    return alarms


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m augur.host_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-hours", type=int, default=24)
    ap.add_argument("--test-hours", type=int, default=24)
    ap.add_argument("--merge-min", type=int, default=10)
    ap.add_argument("--grace-min", type=int, default=10)
    args = ap.parse_args(argv)
    from augur.config import Config
    from jobs import reference, steps
    gen, faults = scenario(args.train_hours, args.test_hours)
    split = T0 + args.train_hours * H
    start = time.perf_counter()
    samples = (s for batch in gen.iter_range(T0, split + args.test_hours * H) for s in batch)
    out = reference.run(samples, MIN, steps.EnsembleFeatureScorer.from_config(Config()))
    built = time.perf_counter() - start
    matrix = host_matrix(out.features)
    alarms = {"iforest": iforest_alarms(matrix, split)}
    ens = defaultdict(list)
    for a in out.anomalies:
        if a["window_end"] > split:
            ens[a["host"]].append(a["window_end"])
    alarms["ensemble"] = {h: np.array(v, dtype=np.int64) for h, v in ens.items()}
    alarms["either"] = {h: np.concatenate([alarms["iforest"].get(h, np.empty(0, np.int64)),
                                           alarms["ensemble"].get(h, np.empty(0, np.int64))])
                        for h in set(alarms["iforest"]) | set(alarms["ensemble"])}
    merge, grace = args.merge_min * MIN, args.grace_min * MIN
    print(f"{len(faults)} faults ({', '.join(FAULT_KINDS)}, twice each) on {gen.hosts} hosts; train "
          f"{args.train_hours} h, test {args.test_hours} h; features + univariate scoring took {built:.0f} s")
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
