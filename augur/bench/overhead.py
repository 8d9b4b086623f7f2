"""``augur bench overhead``: what the eBPF collectors cost a busy server.

nginx (one worker) answers a loopback wrk load; each round runs it without and with every collector loaded
(``augur collect`` as its own process, as deployed), in one order in even rounds and the other in odd ones. A run
with the collectors starts after they have run one interval under the load, so that their start (the first
symbols read) is not counted as what they cost from then on.
Reports the throughput ratio, added p50/p99 latency, the collector's CPU (% of one core) and memory (with any
child process's): ``rss_mb`` counts the pages of the libraries it maps, ``pss_mb`` shares each such page among the
processes that map it. Each round pair is compared within the same run. A
last run measures the CPU the eBPF programs use in the kernel (% of one core, and ns per request) with the kernel's own
accounting (``kernel.bpf_stats_enabled``): unlike the throughput ratio this does not move with a noisy
neighbour, but it counts only the programs' run time, not what their hooks cost around them; it is also printed
per program (runs per request, ns per run), which is how the ``http`` collector's costs were found.

``cpu_ratio`` is the throughput that the collectors' CPU (their programs' by that accounting, their process's
by ``/proc``) would leave a server that keeps every CPU busy: ``1 - (bpf_cpu_pct + cpu_pct) / (100 x CPUs)``. It
does not move with the noise that the measured ratio does, but it leaves out the cost of the hooks themselves and
any contention for caches, and its programs' figure includes the accounting's own clock reads.

When the ``http`` collector is among those loaded, each round also runs wrk with only two ``cgroup_skb`` programs
that do nothing (``bpf/bench/hook_floor.bpf.c``) linked where ``http`` links its own: ``hooks_only_ratio``, the
throughput that the hook alone leaves, is the floor of any collector that reads packets there.

``--http-scope server`` starts nginx in a cgroup of its own, as a service manager would, and links the ``http``
programs (``collect.http-cgroups``) and the floor's to that group only: the client's packets (wrk's, in the bench's
own group) then run no program. The default, ``root``, links them to the root, where every socket of the host
passes through them.

``--rate R`` paces wrk at about R requests a second (each connection waits ``connections / R`` between its
requests) instead of as fast as nginx answers: a light load, like the demos that published figures for other
agents are measured on. The throughput ratio then only says the pace was kept; what counts is the collectors' CPU
and memory and the latency they add to each request.
"""

from __future__ import annotations

import argparse
import math
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


def _cpu_seconds(fields: list[str], waited_children: bool) -> float:
    """User and system CPU time from /proc/PID/stat's fields (14 and 15), with those of the children the process
    has waited for (16 and 17) if asked."""
    return sum(int(f) for f in fields[11:15 if waited_children else 13]) / os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, user and system."""
    from collectors.procfs import pid_stat
    return _cpu_seconds(pid_stat(pid), waited_children=False)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the process, of its children it has waited for and of its live children: what running the
    collector costs, whichever process spends it."""
    from collectors.procfs import children, pid_stat
    fields = pid_stat(pid)
    if fields is None:   # a child that exited since it was listed: its parent counts it once it waits for it
        return 0.0
    return _cpu_seconds(fields, waited_children=True) + sum(tree_cpu_seconds(c) for c in children(pid))


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """``(RSS, PSS)`` of the process and its live children, in MiB. RSS counts a page that several of them map
    (a shared library's) in each; PSS divides it among all the processes of the host that map it."""
    from collectors.procfs import children, proportional_bytes, resident_bytes
    rss, pss = (resident_bytes(pid) or 0) / 2**20, (proportional_bytes(pid) or 0) / 2**20
    for c in children(pid):
        child_rss, child_pss = tree_memory_mb(c)
        rss, pss = rss + child_rss, pss + child_pss
    return rss, pss


BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
PROG_TYPES = {2: "socket_filter", 5: "tracepoint", 7: "perf_event", 8: "cgroup_skb", 13: "sock_ops",
              17: "raw_tracepoint", 26: "tracing"}


def program_runs(pid: int) -> dict[int, tuple[str, int, int]]:
    """``{program id: (type, run ns, runs)}`` of the eBPF programs ``pid`` holds open (the ns and runs stay 0
    unless bpf_stats is enabled)."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                        if ":" in line)
            kind = int(info["prog_type"])
            out[int(info["prog_id"])] = (PROG_TYPES.get(kind, f"type {kind}"), int(info["run_time_ns"]),
                                         int(info["run_cnt"]))
        except (OSError, KeyError, ValueError):
            continue
    return out


def program_name(prog_id: int) -> str:
    """The program's name (its function's, cut to 15 characters by the kernel), read with the bpf syscall; the id
    when that fails."""
    import ctypes
    import platform
    import struct
    sys_bpf = {"x86_64": 321, "aarch64": 280}.get(platform.machine())   # the bpf syscall's number
    if sys_bpf is None:
        return f"prog {prog_id}"
    libc = ctypes.CDLL(None, use_errno=True)
    get_fd_by_id, get_info_by_fd = 13, 15   # the bpf commands BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD
    attr = ctypes.create_string_buffer(struct.pack("III", prog_id, 0, 0), 128)
    fd = libc.syscall(sys_bpf, get_fd_by_id, attr, 128)
    if fd < 0:
        return f"prog {prog_id}"
    try:
        info = ctypes.create_string_buffer(256)   # struct bpf_prog_info: name[16] at offset 64
        attr = ctypes.create_string_buffer(struct.pack("IIQ", fd, 256, ctypes.addressof(info)), 128)
        if libc.syscall(sys_bpf, get_info_by_fd, attr, 128) != 0:
            return f"prog {prog_id}"
        return info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace") or f"prog {prog_id}"
    finally:
        os.close(fd)


def programs_cpu(wrk: list[str], args, http_cgroups: str) -> tuple[float, float, list[tuple[str, str, float, float]]]:
    """One more run with collectors and ``kernel.bpf_stats_enabled`` on (not during the rounds: the accounting
    reads the clock twice per program run, a cost of its own): the programs' CPU (% of one core), ns per request,
    and per program ``(name, type, runs per request, ns per run)``, busiest first. NaN and no rows where the kernel
    offers no BPF accounting."""
    if not BPF_STATS.exists():
        return float("nan"), float("nan"), []
    before = BPF_STATS.read_text().strip()
    coll = start_collectors(args.interval, args.signals, http_cgroups)
    try:
        BPF_STATS.write_text("1")
        runs0, t0 = program_runs(coll.pid), time.monotonic()
        on = parse_wrk(subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)
        elapsed = time.monotonic() - t0
        runs1 = program_runs(coll.pid)
        names = {prog: program_name(prog) for prog in runs1}
    finally:
        BPF_STATS.write_text(before)
        stop(coll)
    requests = on["rps"] * elapsed
    rows, total_ns = [], 0
    for prog, (kind, ns, cnt) in runs1.items():
        ns0, cnt0 = runs0.get(prog, (kind, 0, 0))[1:]
        total_ns += ns - ns0
        if cnt > cnt0:
            rows.append((names[prog], kind, (cnt - cnt0) / requests, (ns - ns0) / (cnt - cnt0)))
    rows.sort(key=lambda r: -r[2] * r[3])
    return 100 * total_ns / 1e9 / elapsed, total_ns / requests, rows


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collectors(interval: str, signals: str, http_cgroups: str = "") -> subprocess.Popen:
    env = {**os.environ, "AUGUR_COLLECT_PROMETHEUS_PORT": "0", "AUGUR_COLLECT_HTTP_CGROUPS": http_cgroups}
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


class HookFloor:
    """Two empty ``cgroup_skb`` programs linked to the cgroup v2 root, or to ``cgroups``, while it is open (see the
    module doc)."""

    def __init__(self, cgroups: tuple[str, ...] = ()):
        self.cgroups = cgroups

    def __enter__(self):
        from collectors.bpf_loader import BpfProgram, release_compiler_memory
        self.prog = BpfProgram("bench/hook_floor", cgroup_links={"floor_ingress": "ingress", "floor_egress": "egress"},
                               cgroups=self.cgroups)
        # this process compiled too: its pages of the compiler go, or the collector's copy of a page mapped by both
        # would stay resident (the kernel pages out only pages one process maps) and count in the collector's RSS
        release_compiler_memory()
        return self

    def __exit__(self, *exc):
        self.prog.close()


class ServerGroup:
    """A cgroup v2 group of its own for the server (``--http-scope server``), removed again at the end."""

    def __init__(self):
        from infra import ebpf
        self.path = f"/augur-bench-{os.getpid()}"
        self.dir = ebpf.require_cgroup2() / self.path.lstrip("/")
        self.dir.mkdir()

    def enter(self) -> None:
        """In the child before it runs the server (``preexec_fn``)."""
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        for _ in range(50):  # the group can be removed once its last process has gone
            try:
                self.dir.rmdir()
                return
            except OSError as e:
                error = e
                time.sleep(0.1)
        print(f"augur bench overhead: could not remove {self.dir} ({error}); remove it with rmdir", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="augur bench overhead", description=__doc__)
    ap.add_argument("--rounds", type=int, default=4, help="pairs of runs without/with collectors")
    ap.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--interval", default="2s", help="collector flush interval during the runs")
    ap.add_argument("--signals", default="all", help="collectors to load (default all)")
    ap.add_argument("--rate", type=int, default=0,
                    help="requests/s to pace wrk at (a light load); 0: as fast as nginx answers")
    ap.add_argument("--http-scope", choices=("root", "server"), default="root",
                    help="link the http programs to the cgroup v2 root (every socket) or to nginx's own group")
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
    group = ServerGroup() if args.http_scope == "server" else None
    http_cgroups = (group.path,) if group else ()
    http_cgroups_option = ",".join(http_cgroups)   # collect.http-cgroups for the collectors' process
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=group.enter if group else None)
    time.sleep(0.5)

    pacing = []
    if args.rate > 0:  # wrk calls delay() before each request of a connection: milliseconds to wait
        (tmp / "pace.lua").write_text(f"function delay() return {1000.0 * args.connections / args.rate} end\n")
        pacing = ["-s", str(tmp / "pace.lua")]

    def wrk_for(seconds: int) -> list[str]:
        return ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--latency", *pacing,
                f"http://127.0.0.1:{port}/api/x"]

    wrk = wrk_for(args.seconds)
    rows, floors = [], []
    with_floor = args.signals == "all" or "http" in args.signals.split(",")

    def run_wrk() -> dict[str, float]:
        return parse_wrk(subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)

    def run_floor() -> None:
        with HookFloor(http_cgroups):
            floors.append(run_wrk())

    from collectors.faults import parse_duration_ms
    settle = wrk_for(math.ceil(parse_duration_ms(args.interval) / 1000) + 1)

    def run_on() -> tuple[dict[str, float], float, tuple[float, float]]:
        coll = start_collectors(args.interval, args.signals, http_cgroups_option)
        try:
            # one interval under load first: the collector's start (the first symbols read) is a
            # one-time cost, not what it costs the server from then on
            subprocess.run(settle, capture_output=True, check=True)
            cpu0, t0 = tree_cpu_seconds(coll.pid), time.monotonic()
            on = run_wrk()
            cpu_pct = 100 * (tree_cpu_seconds(coll.pid) - cpu0) / (time.monotonic() - t0)
            return on, cpu_pct, tree_memory_mb(coll.pid)
        finally:
            stop(coll)

    try:
        subprocess.run(wrk_for(2), capture_output=True, check=True)  # warm-up
        for r in range(args.rounds):
            if r % 2 == 0:     # the order alternates, so a drift within a round favours no side
                off = run_wrk()
                if with_floor:
                    run_floor()
                on, cpu_pct, mem = run_on()
            else:
                on, cpu_pct, mem = run_on()
                if with_floor:
                    run_floor()
                off = run_wrk()
            rows.append((off, on, cpu_pct, mem))
            print(f"round {r + 1}: off {off['rps']:9.0f} req/s p50 {off['p50_us']:7.0f} us p99 {off['p99_us']:7.0f} us"
                  f" | on {on['rps']:9.0f} req/s p50 {on['p50_us']:7.0f} us p99 {on['p99_us']:7.0f} us"
                  f" | collector {cpu_pct:5.1f}% cpu {mem[0]:6.1f} MB (PSS {mem[1]:5.1f})"
                  + (f" | hooks only {floors[-1]['rps']:9.0f} req/s" if with_floor else ""), flush=True)
        kernel_pct, kernel_ns, per_program = programs_cpu(wrk, args, http_cgroups_option)
        print(f"a last run with the kernel's BPF accounting on: the programs ran {kernel_pct:.2f}% of one core, "
              f"{kernel_ns:.0f} ns per request (the accounting's own clock reads included, about 25 ns a run)",
              flush=True)
        shown = [row for row in per_program if row[2] * row[3] >= 1.0]
        for name, kind, runs, ns in shown:
            print(f"  {name:<16} {kind:<15} {runs:6.2f} runs/request {ns:7.1f} ns/run {runs * ns:7.1f} ns/request")
        rest = per_program[len(shown):]
        if rest:
            print(f"  {len(rest)} more programs, {sum(r * n for _, _, r, n in rest):.1f} ns/request together")
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        if group:
            group.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [on["rps"] / off["rps"] for off, on, _, _ in rows]
    ratio = statistics.median(ratios)
    p50 = statistics.median(on["p50_us"] - off["p50_us"] for off, on, _, _ in rows)
    p99 = statistics.median(on["p99_us"] - off["p99_us"] for off, on, _, _ in rows)
    cpu = statistics.median(c for _, _, c, _ in rows)
    rss = max(m[0] for _, _, _, m in rows)
    pss = max(m[1] for _, _, _, m in rows)
    floor = (f" hooks_only_ratio={statistics.median(f['rps'] / off['rps'] for f, (off, *_) in zip(floors, rows)):.4f}"
             if floors else "")
    # the rounds' lowest and highest ratio say how far the median can be trusted; cpu_ratio: see the module doc
    cpu_ratio = 1.0 - (kernel_pct + cpu) / (100.0 * (os.cpu_count() or 1))
    print(f"BENCH overhead throughput_ratio={ratio:.4f} ratio_min={min(ratios):.4f} ratio_max={max(ratios):.4f} "
          f"cpu_ratio={cpu_ratio:.4f} p50_added_us={p50:.0f} p99_added_us={p99:.0f} "
          f"cpu_pct={cpu:.2f} rss_mb={rss:.1f} pss_mb={pss:.1f} bpf_cpu_pct={kernel_pct:.2f} "
          f"bpf_ns_per_request={kernel_ns:.0f} "
          f"rounds={len(rows)} signals={args.signals} http_scope={args.http_scope} "
          f"load={f'{args.rate}/s' if args.rate else 'max'}{floor}")
    return 0
