"""``augur bench backfill``: a day of 1,000 series at 10 s (8.64M points) through ``augur backfill``, and the
streaming job on a slice of the same data, in one run.

The input is a synthetic Parquet archive (84 hosts x 12 series, one day), generated once into the cache. The
backfill runs as its own process on Beam's DirectRunner with one worker per core; its wall time and peak RSS
(the process and its workers) are measured. The streaming path is the Flink job on the embedded mini-cluster and a
local broker, fed the first ``--stream-minutes`` of the same day; its rate is points over the time from the first
write to the last closable window's features. Last line: ``BENCH backfill pts_per_s=... vs_stream=...x
peak_rss_mb=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from augur import paths
from schemas import series

DAY_MS = 86_400_000
START = 1_764_806_400_000  # 2025-12-04 00:00 UTC
SERIES_PER_HOST = 12  # what the synthetic generator emits per host


def build_archive(root: Path, hosts: int, hours: float) -> int:
    """Write the synthetic day into ``root`` (per host and date); returns the number of points."""
    from collectors.synthetic import SyntheticTelemetry
    from jobs import archive
    gen = SyntheticTelemetry(hosts=hosts, seed=42)
    end = START + int(hours * 3_600_000)
    n = 0
    chunk_ms = 3_600_000
    t = START
    sid_cache: dict[tuple, str] = {}
    while t < end:
        rows = []
        for batch in gen.iter_range(t, min(t + chunk_ms, end)):
            for s in batch:
                key = (s["host"], s["metric"], tuple(sorted(s["attrs"].items())))
                sid = sid_cache.get(key) or sid_cache.setdefault(key, series.series_id(s["host"], s["metric"],
                                                                                      s["attrs"]))
                rows.append((s["ts"], s["host"], sid, json.dumps(s, separators=(",", ":"))))
        archive.write_archive(root, "telemetry", rows)
        n += len(rows)
        t += chunk_ms
        print(f"  generated {n:,} points ({(t - START) / 3_600_000:.0f} h of {hours:g} h)", file=sys.stderr,
              flush=True)
    return n


def run_backfill(archive_root: Path, out: Path, workers: int) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB, largest process of the run) and the backfill's summary."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.backfill", str(archive_root), "-o", str(out),
           f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("backfill ") or line.startswith("augur backfill"):
            print("  " + line.rstrip(), file=sys.stderr, flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the backfill failed:\n" + "".join(lines[-30:]))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(usage.ru_maxrss, children) / 1024, "".join(lines)


def stream_rate(archive_root: Path, minutes: float) -> tuple[float, int]:
    """Points per second of the Flink job on the first ``minutes`` of the archive."""
    import uuid

    from augur.consume import read_all
    from augur.timeparse import now_ms
    from collectors.output import KafkaOutput
    from infra.kafka_broker import KafkaBroker, free_port
    from infra.kafka_topics import ensure_topics
    from jobs import archive
    from schemas import topics

    run = Path(paths.run_dir()) / f"bench-backfill-{uuid.uuid4().hex[:6]}"
    broker = KafkaBroker(free_port(), free_port(), 512, state_dir=run / "kafka")
    samples, sample_ts, sids = [], [], set()
    end = START + int(minutes * 60_000)
    for _, _, pdir in archive.partitions(archive_root, "telemetry"):
        for ts, sid, rec in archive.partition_rows(pdir):
            if ts < end:
                samples.append(rec)
                sample_ts.append(ts)
                sids.add(sid)
    bootstrap = broker.up().bootstrap
    ensure_topics(bootstrap)
    job = None
    try:
        cmd = [sys.executable, "-m", "jobs.stream_job", "--set", f"kafka.bootstrap-servers={bootstrap}",
               "--set", f"stream.start-from={now_ms()}", "--set", f"stream.checkpoint-dir={run / 'cp'}",
               "--set", "stream.checkpoint-interval-ms=5000"]
        with open(run / "job.log", "wb") as log:
            job = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(30)  # job start-up is not part of the rate
        t0 = time.monotonic()
        order = sorted(range(len(samples)), key=sample_ts.__getitem__)  # in event-time order, as collectors send
        with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="bench", validate=False) as out:
            for i in order:
                out.write_raw(None, samples[i].encode())
        # done when every series' last closable window is out (the final window stays open without later data)
        closable = end - 60_000
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            if job.poll() is not None:
                raise RuntimeError(f"the streaming job exited: see {run / 'job.log'}")
            if sum(f["window_end"] >= closable for f in read_all(bootstrap, topics.FEATURES)) >= len(sids):
                break
            time.sleep(1)
        points = sum(1 for ts in sample_ts if ts < closable)
        return points / (time.monotonic() - t0), points
    finally:
        if job is not None:
            os.killpg(job.pid, 15)
            job.wait(30)
        broker.down()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="augur bench backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=84, help="hosts x 12 series (84 -> 1,008 series)")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of history at 10 s")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stream-minutes", type=float, default=10.0,
                        help="minutes of the same data fed to the streaming job (0: skip the comparison)")
    args = parser.parse_args(argv)
    root = Path(paths.cache_dir()) / "bench" / f"backfill-{args.hosts}h{args.hours:g}"
    marker = root / "points"
    if not marker.exists():
        print(f"generating the input archive in {root} (once) ...", file=sys.stderr, flush=True)
        shutil.rmtree(root, ignore_errors=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(build_archive(root, args.hosts, args.hours)))
    points = int(marker.read_text())
    print(f"backfill of {points:,} points ({args.hosts * SERIES_PER_HOST:,} series, {args.hours:g} h at 10 s), "
          f"{args.workers} worker(s) ...", file=sys.stderr, flush=True)
    seconds, rss_mb, summary = run_backfill(root, root.parent / "backfill-out", args.workers)
    pts_per_s = points / seconds
    print(summary.strip().splitlines()[-4] if summary.strip() else "")
    print(f"backfill: {points:,} points in {seconds:.1f} s = {pts_per_s:,.0f} points/s; peak RSS {rss_mb:.0f} MB")
    vs = float("nan")
    if args.stream_minutes > 0:
        print(f"streaming job on the first {args.stream_minutes:g} min of the same data ...", file=sys.stderr,
              flush=True)
        rate, n = stream_rate(root, args.stream_minutes)
        vs = pts_per_s / rate
        print(f"stream (Flink mini-cluster, Python window and scoring operators): {n:,} points at {rate:,.0f} "
              f"points/s")
    print(f"BENCH backfill pts_per_s={pts_per_s:.0f} vs_stream={vs:.1f}x peak_rss_mb={rss_mb:.0f}")
    return 0
