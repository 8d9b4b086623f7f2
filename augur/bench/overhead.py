"""``augur bench overhead``: what the eBPF collectors cost a busy server.

nginx (one worker) answers a loopback wrk load; rounds alternate without and with every collector loaded
(``augur collect`` as its own process, as deployed). Reports the throughput ratio, added p50/p99 latency, the
collector process's CPU (% of one core) and RSS, each round pair compared within the same run. A last run
measures the CPU the eBPF programs use in the kernel (% of one core, and ns per request) with the kernel's own
accounting (``kernel.bpf_stats_enabled``): unlike the throughput ratio this does not move with a noisy
neighbour, but it counts only the programs' run time, not what their hooks cost around them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "augur bench\\n"; }}
    location /api/ {{ return 200 "{{\\"ok\\": true}}\\n"; }}
  }}
}}
"""

_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s and latency percentiles (us) from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    out = {"rps": rps}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        out[f"p{pct}_us"] = float(m.group(1)) * _UNITS_US[m.group(2)]
    return out


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def bpf_run_ns(pid: int) -> int:
    """Nanoseconds the eBPF programs held open by ``pid`` have run (0 unless bpf_stats is enabled)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("run_time_ns:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def programs_cpu(wrk: list[str], args) -> tuple[float, float]:
    """One more run with collectors and ``kernel.bpf_stats_enabled`` on (not during the rounds: the accounting
    reads the clock twice per program run, a cost of its own): the programs' CPU (% of one core) and ns per
    request. NaN where the kernel offers no BPF accounting."""
    if not BPF_STATS.exists():
        return float("nan"), float("nan")
    before = BPF_STATS.read_text().strip()
    coll = start_collectors(args.interval, args.signals)
    try:
        BPF_STATS.write_text("1")
        ns0, t0 = bpf_run_ns(coll.pid), time.monotonic()
        on = parse_wrk(subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)
        pct = 100 * (bpf_run_ns(coll.pid) - ns0) / 1e9 / (time.monotonic() - t0)
    finally:
        BPF_STATS.write_text(before)
        stop(coll)
    return pct, pct * 1e7 / on["rps"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collectors(interval: str, signals: str) -> subprocess.Popen:
    env = {**os.environ, "AUGUR_COLLECT_PROMETHEUS_PORT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "augur.cli", "collect", "--stdout", "--interval", interval,
                             "--signals", signals],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    line = proc.stderr.readline()  # printed once every program is loaded and attached
    if "augur collect:" not in line or proc.poll() is not None:
        rest = proc.stderr.read() if proc.poll() is not None else ""
        raise RuntimeError(f"collectors did not start: {line}{rest}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="augur bench overhead", description=__doc__)
    ap.add_argument("--rounds", type=int, default=4, help="pairs of runs without/with collectors")
    ap.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--interval", default="2s", help="collector flush interval during the runs")
    ap.add_argument("--signals", default="all", help="collectors to load (default all)")
    args = ap.parse_args(argv)
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"augur bench overhead: {tool} is missing (Debian: apt-get install nginx-light wrk)",
                  file=sys.stderr)
            return 1
    if os.geteuid() != 0:
        print("augur bench overhead: needs root to load the eBPF collectors", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="augur-bench-"))
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(0.5)
    wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", f"http://127.0.0.1:{port}/api/x"]
    rows = []
    try:
        subprocess.run(wrk[:3] + ["-d2s"] + wrk[4:], capture_output=True, check=True)  # warm-up
        for r in range(args.rounds):
            off = parse_wrk(subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)
            coll = start_collectors(args.interval, args.signals)
            try:
                cpu0, t0 = proc_cpu_seconds(coll.pid), time.monotonic()
                on = parse_wrk(subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)
                cpu_pct = 100 * (proc_cpu_seconds(coll.pid) - cpu0) / (time.monotonic() - t0)
                rss = proc_rss_mb(coll.pid)
            finally:
                stop(coll)
            rows.append((off, on, cpu_pct, rss))
            print(f"round {r + 1}: off {off['rps']:9.0f} req/s p50 {off['p50_us']:7.0f} us p99 {off['p99_us']:7.0f} us"
                  f" | on {on['rps']:9.0f} req/s p50 {on['p50_us']:7.0f} us p99 {on['p99_us']:7.0f} us"
                  f" | collector {cpu_pct:5.1f}% cpu {rss:6.1f} MB", flush=True)
        kernel_pct, kernel_ns = programs_cpu(wrk, args)
        print(f"a last run with the kernel's BPF accounting on: the programs ran {kernel_pct:.2f}% of one core, "
              f"{kernel_ns:.0f} ns per request (the accounting's own clock reads included)", flush=True)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = statistics.median(on["rps"] / off["rps"] for off, on, _, _ in rows)
    p50 = statistics.median(on["p50_us"] - off["p50_us"] for off, on, _, _ in rows)
    p99 = statistics.median(on["p99_us"] - off["p99_us"] for off, on, _, _ in rows)
    cpu = statistics.median(c for _, _, c, _ in rows)
    rss = max(m for _, _, _, m in rows)
    print(f"BENCH overhead throughput_ratio={ratio:.4f} p50_added_us={p50:.0f} p99_added_us={p99:.0f} "
          f"cpu_pct={cpu:.2f} rss_mb={rss:.1f} bpf_cpu_pct={kernel_pct:.2f} bpf_ns_per_request={kernel_ns:.0f} "
          f"rounds={len(rows)} signals={args.signals}")
    return 0
