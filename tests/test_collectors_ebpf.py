"""Each eBPF collector, loaded in the real kernel and driven by a workload whose truth is known."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from augur.config import Config
from schemas import codec, series, topics
from tests.ebpf_support import bpf_prog_fds, by_metric, empty_answers_server, loop_mounted_ext4, require_ebpf

pytestmark = pytest.mark.ebpf
CFG = Config()
HOST = "test-host"


@pytest.fixture(autouse=True)
def _ebpf():
    require_ebpf()


def total(samples, metric, **attrs) -> float:
    return sum(s["value"] for s in by_metric(samples, metric, **attrs))


def valid(samples):
    for s in samples:
        codec.validate(topics.TELEMETRY.name, s)
    return samples


def test_process_exec_and_exit_events_are_counted_exactly():
    from collectors.process import ProcessCollector
    c = ProcessCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        n = 25
        children = [subprocess.run(["/bin/true"]).returncode for _ in range(n)]
        assert children == [0] * n
        time.sleep(0.2)
        events = c.poll_events()
        mine = [e for e in events if e["event"] == "exec" and e["attrs"].get("filename") == "/bin/true"
                and e["attrs"].get("ppid") == str(os.getpid())]
        assert len(mine) == n
        assert all(e["comm"] == "true" and e["cgroup"] for e in mine)
        exits = [e for e in events if e["event"] == "exit" and e["pid"] in {x["pid"] for x in mine}]
        assert len(exits) == n
        for e in events:
            codec.validate(topics.EVENTS.name, e)
        counts = valid(c.collect(1, 1))
        assert total(counts, "ebpf.process.events", event="exec") >= n
    finally:
        c.close()


def test_fsynced_writes_show_in_block_io(tmp_path):
    from collectors.blockio import BlockIoCollector
    c = BlockIoCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        n, size = 64, 64 * 1024
        with open(tmp_path / "data.bin", "wb") as f:
            for _ in range(n):
                f.write(os.urandom(size))
                f.flush()
                os.fsync(f.fileno())
        out = valid(c.collect(1, 1000))
        assert total(out, "system.disk.operations", direction="write") >= n
        assert total(out, "system.disk.io", direction="write") >= n * size
        lat = by_metric(out, "ebpf.block.io.latency", direction="write")
        assert lat and sum(h["hist"]["count"] for h in lat) == total(out, "system.disk.operations", direction="write")
    finally:
        c.close()


def service_port_listener() -> tuple[socket.socket, int]:
    """A listening socket on a service port: below the range the tcp collector folds as ephemeral."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for port in range(21000 + os.getpid() % 5000, 32000):
        try:
            srv.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    srv.listen(128)
    return srv, port


def connect_and_close(srv: socket.socket, port: int, k: int) -> None:
    """k loopback connections to ``srv``, each accepted and closed by both ends."""
    def serve():
        for _ in range(k):
            conn, _ = srv.accept()
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    for _ in range(k):
        s = socket.create_connection(("127.0.0.1", port))
        s.recv(1)
        s.close()
    t.join()


def test_loopback_tcp_connections_and_closes_are_counted():
    from collectors.tcp import COUNTS, TcpCollector
    c = TcpCollector(CFG, HOST)
    srv, port = service_port_listener()
    try:
        c.collect(0, 1)
        k = 30
        connect_and_close(srv, port, k)
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        dead_port = refused.getsockname()[1]
        refused.close()
        for _ in range(3):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", dead_port), timeout=2)
        p = str(port)
        # the kernel may finish the last closes in softirq context a little later on a loaded machine: collect
        # until every connection's close is in (or 5 s pass), then check the totals exactly
        out, deadline = [], time.monotonic() + 5.0
        while True:
            time.sleep(0.2)
            out += valid(c.collect(1, 1000))
            if (total(out, "ebpf.tcp.connections.closed", port=p, direction="active") >= k
                    and total(out, "ebpf.tcp.connections.closed", port=p, direction="passive") >= k
                    or time.monotonic() > deadline):
                break
        assert total(out, "ebpf.tcp.connections.opened", port=p, direction="passive") == k
        assert total(out, "ebpf.tcp.connections.opened", port=p, direction="active") == k
        assert total(out, "ebpf.tcp.connections.closed", port=p, direction="passive") == k
        assert total(out, "ebpf.tcp.connections.closed", port=p, direction="active") == k
        dur = by_metric(out, "ebpf.tcp.connection.duration", port=p, direction="active")
        assert sum(h["hist"]["count"] for h in dur) == k
        dp = str(dead_port) if dead_port < 32768 else "ephemeral"
        assert total(out, "ebpf.tcp.connections.failed", port=dp, direction="active") >= 3
        # the port's four counts are reported in a quiet interval too, as 0 (a first retransmit has a history)
        quiet = valid(c.collect(2, 1000))
        for metric in COUNTS:
            assert len(by_metric(quiet, metric, port=p, direction="passive")) == 1, metric
        assert total(quiet, "ebpf.tcp.connections.opened", port=p, direction="passive") == 0
    finally:
        srv.close()
        c.close()


def test_what_a_full_map_keeps_out_is_counted_and_published(tmp_path):
    """With room for one key, a port's connections can be aggregated under at most one of their two keys (active,
    passive): the other's opens and closes are counted as unaggregated in the kernel, and the runner publishes
    that count as augur.collector.unaggregated and on the Prometheus endpoint."""
    import urllib.request

    from collectors.output import JsonlOutput
    from collectors.runner import Runner
    from collectors.selfmetrics import SelfMetrics, serve_prometheus
    from collectors.tcp import TcpCollector
    from infra.kafka_broker import free_port

    cfg = Config({"collect.max-keys": 1})
    c = TcpCollector(cfg, HOST)
    srv, port = service_port_listener()
    metrics = SelfMetrics()
    tel_path = tmp_path / "telemetry.jsonl"
    telemetry, events = JsonlOutput(topics.TELEMETRY, tel_path), JsonlOutput(topics.EVENTS, tmp_path / "ev.jsonl")
    runner = Runner([c], telemetry, events, cfg, metrics)
    server = serve_prometheus(metrics, free_port())
    try:
        runner.flush()
        telemetry.flush()
        start = tel_path.stat().st_size
        k = 20
        connect_and_close(srv, port, k)
        p = str(port)

        def counted(since: int):
            out = [json.loads(line) for line in tel_path.read_bytes()[since:].splitlines()]
            mine = sum(total(out, m, port=p) for m in ("ebpf.tcp.connections.opened", "ebpf.tcp.connections.closed"))
            return mine, total(out, "augur.collector.unaggregated", collector="tcp")

        deadline = time.monotonic() + 5.0
        while True:  # the last closes may come a little later, in softirq
            time.sleep(0.2)
            runner.flush()
            telemetry.flush()
            mine, unaggregated = counted(start)
            if mine + unaggregated >= 4 * k or time.monotonic() > deadline:
                break
        # every open came in one interval, where one key at most had room: the other key's k opens are missing
        assert unaggregated >= k
        assert mine + unaggregated >= 4 * k     # every open and close of the port: aggregated, or counted missing
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
        published = {line.split()[0]: float(line.split()[1]) for line in body.splitlines() if line[0] != "#"}
        assert published['augur_collector_unaggregated_total{collector="tcp"}'] == counted(0)[1]
    finally:
        server.shutdown()
        telemetry.close()
        events.close()
        srv.close()
        c.close()


def test_cpu_time_of_a_busy_process_and_runqueue_latency():
    from collectors.cpu import CpuCollector
    c = CpuCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        name = "augurburn" + uuid.uuid4().hex[:4]
        # two busy processes on a 2-core machine also create run-queue waits
        procs = [subprocess.Popen([sys.executable, "-c",
                                   f"import time, ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"
                                   "t = time.process_time()\nwhile time.process_time() - t < 1.0: pass"])
                 for _ in range(3)]
        truth = 0.0  # what the kernel charged the three processes, start-up and exit included
        for p in procs:
            _, _, usage = os.wait4(p.pid, 0)
            p.returncode = 0
            truth += usage.ru_utime + usage.ru_stime
        out = valid(c.collect(1, 1000))
        burned = total(out, "process.cpu.time", **{"process.executable.name": name})
        assert truth >= 3.0
        assert burned == pytest.approx(truth, rel=0.1)
        runq = by_metric(out, "ebpf.runqueue.latency")
        assert runq and runq[0]["hist"]["count"] > 0
        assert total(out, "ebpf.cgroup.cpu.time") >= burned
    finally:
        c.close()


def _compiler_resident_bytes() -> int:
    """Resident bytes of this process's mappings of the compiler's libraries (Rss lines of /proc/self/smaps)."""
    from collectors.bpf_loader import COMPILER_LIBRARIES
    total, counting = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):         # a mapping's first line: range perms ... path
                counting = len(head) >= 6 and any(lib in head[5] for lib in COMPILER_LIBRARIES)
            elif counting and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def test_the_compilers_memory_is_given_back_once_the_programs_are_loaded_and_they_still_work():
    """bcc compiles in the collector's process; once every program is loaded, the compiler's pages are released,
    and the collector goes on collecting."""
    from collectors.bpf_loader import release_compiler_memory
    from collectors.cpu import CpuCollector
    c = CpuCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        before = _compiler_resident_bytes()
        rss = release_compiler_memory()
        after = _compiler_resident_bytes()
        assert before > 20 * 2**20, before               # compiling touched tens of MB of the compiler's code
        assert after < before / 4, (before, after)
        assert rss["rss_after"] < rss["rss_before"] - (before - after) / 2, rss
        subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)
        out = valid(c.collect(1, 1000))
        assert total(out, "process.cpu.time") > 0
        assert by_metric(out, "ebpf.runqueue.latency")[0]["hist"]["count"] > 0
    finally:
        c.close()


def _memory_cgroup() -> Path | None:
    from collectors import procfs
    mounts = procfs.cgroup_mounts(Path("/proc/self/mounts").read_text())
    v2 = mounts.get("v2")
    if v2 and "memory" in (v2 / "cgroup.controllers").read_text().split():
        return v2
    return mounts.get("memory")


def test_profile_samples_a_busy_process_at_its_cpu_time_with_its_kernel_and_user_frames():
    """dd copying /dev/zero to /dev/null is on a CPU all the time, mostly reading zeros in the kernel: its samples
    are its CPU time (from /proc) times the sampling rate, most of its stacks pass through vfs_read, and its user
    frames resolve to functions while it lives. A process whose busy threads have names of their own is one
    record, under the process's name."""
    from augur.bench.overhead import proc_cpu_seconds as cpu_seconds
    from collectors.profile import ProfileCollector

    hz = 99

    spin = ("import ctypes, threading, time\n"
            "def spin(name):\n"
            "    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: this thread's name\n"
            "    t = time.time()\n"
            "    while time.time() - t < 10: pass\n"
            "threads = [threading.Thread(target=spin, args=(n,)) for n in ('augur-spin-a', 'augur-spin-b')]\n"
            "[t.start() for t in threads]\n"
            "[t.join() for t in threads]\n")
    c = ProfileCollector(Config({"collect.profile-hz": hz}), HOST)
    dd = spinner = None
    try:
        c.collect(0, 1)
        c.profiles()
        dd = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=64k"], stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # alone, so that dd is on a CPU all the time and its samples are not a lottery among tasks
        before = cpu_seconds(dd.pid)
        c.collect(1, 2000)  # dd still runs: its mappings resolve its user frames
        after = cpu_seconds(dd.pid)
        records = c.profiles()
        seen = [(r["pid"], r["comm"], r["samples"]) for r in records]
        mine = [r for r in records if r["pid"] == dd.pid]
        assert [r["comm"] for r in mine] == ["dd"], (dd.pid, seen)
        r = mine[0]
        assert r["samples"] == sum(st["count"] for st in r["stacks"])
        assert 0.85 * hz * before - 3 <= r["samples"] <= 1.15 * hz * after + 3, (r["samples"], before, after)
        in_read = sum(st["count"] for st in r["stacks"] if "vfs_read_[k]" in st["frames"])
        assert in_read >= 0.4 * r["samples"], r["stacks"][:5]
        for st in r["stacks"]:  # kernel frames follow the user frames: root first, leaf last
            kernel = [f.endswith("_[k]") for f in st["frames"]]
            assert kernel == sorted(kernel)
        user_functions = {f for st in r["stacks"] for f in st["frames"] if not f.endswith("_[k]") and f[0] != "["}
        assert user_functions, r["stacks"]
        dd.kill()
        spinner = subprocess.Popen([sys.executable, "-c", spin])
        time.sleep(1.5)
        spinner_name = Path(f"/proc/{spinner.pid}/comm").read_text().strip()
        c.collect(2, 1500)
        later = c.profiles()
        records += later
        seen = [(r["pid"], r["comm"], r["samples"]) for r in later]
        assert [r["comm"] for r in later if r["pid"] == spinner.pid] == [spinner_name], (spinner.pid, seen)
        for r in records:
            codec.validate(topics.PROFILES.name, r)
    finally:
        for proc in (dd, spinner):
            if proc is not None:
                proc.kill()
                proc.wait()
        c.close()


def test_oom_kill_in_a_memory_limited_cgroup_is_reported():
    from collectors.process import ProcessCollector
    root = _memory_cgroup()
    if root is None:
        pytest.skip("no memory cgroup controller is mounted")
    cg = root / f"augur-oom-{uuid.uuid4().hex[:6]}"
    cg.mkdir()
    limit_file = "memory.max" if (cg / "memory.max").exists() else "memory.limit_in_bytes"
    (cg / limit_file).write_text(str(48 << 20))
    if (cg / "memory.swap.max").exists():
        (cg / "memory.swap.max").write_text("0")
    c = ProcessCollector(CFG, HOST)
    try:
        hog = subprocess.Popen([sys.executable, "-c", "x = bytearray(512 << 20)\nx[::4096] = b'x' * len(x[::4096])"],
                               preexec_fn=lambda: (cg / "cgroup.procs").write_text(str(os.getpid())))
        assert hog.wait(60) == -9  # SIGKILL from the OOM killer
        time.sleep(0.3)
        kills = [e for e in c.poll_events() if e["event"] == "oom_kill" and e["pid"] == hog.pid]
        assert len(kills) == 1
        codec.validate(topics.EVENTS.name, kills[0])
    finally:
        c.close()
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def loop_fs(tmp_path):
    with loop_mounted_ext4(tmp_path, 64) as mnt:
        yield mnt


def test_filesystem_usage_of_a_loop_mounted_image_matches_statvfs(loop_fs):
    from collectors.host import HostCollector
    c = HostCollector(CFG, HOST)
    try:
        with open(loop_fs / "fill.bin", "wb") as f:
            f.write(os.urandom(20 << 20))
            os.fsync(f.fileno())
        out = valid(c.collect(0, 1000))
        st = os.statvfs(loop_fs)
        used = by_metric(out, "system.filesystem.usage", mountpoint=str(loop_fs))
        assert len(used) == 1
        assert used[0]["value"] == (st.f_blocks - st.f_bfree) * st.f_frsize
        assert used[0]["capacity"] == st.f_blocks * st.f_frsize
        assert used[0]["value"] >= 20 << 20 and used[0]["attrs"]["type"] == "ext4"
        inodes = by_metric(out, "system.filesystem.inodes.usage", mountpoint=str(loop_fs))
        assert inodes[0]["value"] == st.f_files - st.f_ffree and inodes[0]["capacity"] == st.f_files
        mem = by_metric(out, "system.memory.usage")
        assert mem and 0 < mem[0]["value"] < mem[0]["capacity"]
        assert total(out, "ebpf.page_faults") > 0
    finally:
        c.close()


def test_closing_detaches_every_program():
    from collectors.runner import open_collectors, parse_signals
    before = bpf_prog_fds()
    collectors = open_collectors(CFG, parse_signals("all"))
    assert bpf_prog_fds() > before
    for c in collectors:
        c.close()
    assert bpf_prog_fds() == before


def test_a_program_whose_cgroup_link_fails_is_closed_again():
    from collectors.bpf_loader import BpfProgram
    from infra.ebpf import EbpfUnavailable
    before = bpf_prog_fds()
    with pytest.raises(EbpfUnavailable, match="no_such_function"):   # the first link is made, the second fails
        BpfProgram("bench/hook_floor", cgroup_links={"floor_ingress": "ingress", "no_such_function": "egress"})
    assert bpf_prog_fds() == before


def test_http_requests_per_route_with_known_latency_and_status_mix():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import urllib.error
    import urllib.request

    from collectors.http import HttpCollector

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: several requests per connection

        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(0.05)
            code = 503 if self.path.startswith("/fail") else 404 if self.path.startswith("/missing") else 200
            body = b"augur"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    c = HttpCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        mix = {"/orders/{id}": 40, "/slow": 10, "/fail": 6, "/missing": 4}
        for i in range(mix["/orders/{id}"]):
            urllib.request.urlopen(f"{base}/orders/{1000 + i}?secret=token{i}").read()
        for _ in range(mix["/slow"]):
            urllib.request.urlopen(f"{base}/slow").read()
        for path in ("/fail", "/missing"):
            for _ in range(mix[path]):
                with pytest.raises(urllib.error.HTTPError):
                    urllib.request.urlopen(base + path)
        for _ in range(5):
            urllib.request.urlopen(urllib.request.Request(f"{base}/orders", data=b"{}", method="POST")).read()
        time.sleep(0.1)
        out = valid(c.collect(1, 1000))
        mine = [s for s in out if s["attrs"].get("service") in ("python", "python3", "pytest")
                or s["attrs"].get("http.route") in mix]

        def count(route, status, method="GET"):
            return total(mine, "http.server.requests", **{"http.route": route, "http.response.status_class": status,
                                                           "http.request.method": method})
        assert count("/orders/{id}", "2xx") == 40
        assert count("/slow", "2xx") == 10
        assert count("/fail", "5xx") == 6
        assert count("/missing", "4xx") == 4
        assert count("/orders", "2xx", "POST") == 5
        # every status class of a route with traffic is reported, as 0 when it had no answer, now and after
        for status in series.HTTP_STATUS_CLASSES:
            assert len(by_metric(mine, "http.server.requests", **{"http.route": "/slow",
                                                                   series.HTTP_STATUS_CLASS: status})) == 1
        assert count("/slow", "5xx") == 0
        later = valid(c.collect(2, 1000))
        assert {s["attrs"][series.HTTP_STATUS_CLASS] for s in by_metric(later, "http.server.requests",
                                                                         **{"http.route": "/fail"})} \
            == set(series.HTTP_STATUS_CLASSES)
        assert total(later, "http.server.requests", **{"http.route": "/fail"}) == 0
        slow = by_metric(mine, "http.server.request.duration", **{"http.route": "/slow"})[0]["hist"]
        mean_ms = slow["sum"] / slow["count"] / 1000
        assert 50 <= mean_ms < 80  # the handler sleeps 50 ms
        fast = by_metric(mine, "http.server.request.duration", **{"http.route": "/orders/{id}"})[0]["hist"]
        assert fast["sum"] / fast["count"] / 1000 < 20
        assert not any("secret" in json.dumps(s) or "token" in json.dumps(s) for s in out)  # no payload kept
    finally:
        c.close()
        srv.shutdown()


def test_http_over_ipv6_with_a_bare_request_named_by_the_listening_command():
    """IPv6 segments, a request shorter than the kernel's route buffer, connections accepted before the collector
    (not seen, as documented), and the service named by the command listening on the port."""
    import http.client
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from collectors.http import HttpCollector

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(204 if self.path == "/" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    srv = Server6(("::1", 0), Handler)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    early = http.client.HTTPConnection("::1", port)  # accepted before the collector is loaded
    early.request("GET", "/early/1")
    early.getresponse().read()
    c = HttpCollector(CFG, HOST)
    try:
        c.collect(0, 1)
        for i in range(3):
            early.request("GET", f"/early/{i}")
            early.getresponse().read()
        conn = http.client.HTTPConnection("::1", port)
        for i in range(7):
            conn.request("GET", f"/six/items/{i}")
            conn.getresponse().read()
        conn.close()
        with socket.create_connection(("::1", port)) as s:  # 18 bytes: the path is read short of ROUTE_LEN
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 204")
        time.sleep(0.1)
        out = valid(c.collect(1, 1000))
        command = Path("/proc/self/comm").read_text().strip()
        mine = by_metric(out, "http.server.requests", service=command)
        assert total(mine, "http.server.requests", **{"http.route": "/six/items/{id}",
                                                        "http.response.status_class": "2xx"}) == 7
        assert total(mine, "http.server.requests", **{"http.route": "/", "http.response.status_class": "2xx"}) == 1
        assert not by_metric(out, "http.server.requests", **{"http.route": "/early/{id}"})
    finally:
        early.close()
        c.close()
        srv.shutdown()


def get_on_one_connection(port: int, requests: dict[str, int]) -> None:
    """GET each path the given number of times, in order, on one keep-alive connection to the server on port."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for path, n in requests.items():
        for _ in range(n):
            conn.request("GET", path)
            conn.getresponse().read()
    conn.close()


def test_http_requests_a_full_key_map_has_no_room_for_are_counted_as_unaggregated():
    """With room for one key, the first route's requests are aggregated, and each request of a second route is
    counted as unaggregated: none is lost silently."""
    from collectors.http import HttpCollector

    srv = empty_answers_server()
    c = HttpCollector(Config({"collect.max-keys": 1}), HOST)
    try:
        c.collect(0, 1)
        c.health()
        get_on_one_connection(srv.server_address[1], {"/first": 30, "/second": 20})
        time.sleep(0.1)
        out = valid(c.collect(1, 1000))
        assert total(out, "http.server.requests", **{"http.route": "/first"}) == 30
        assert total(out, "http.server.requests", **{"http.route": "/second"}) == 0
        assert c.health()["unaggregated"] == 20
    finally:
        c.close()
        srv.shutdown()


def test_http_sampling_beyond_the_exact_rate_counts_each_sampled_request_for_those_it_stands_for():
    """With no exact budget and one request in 4 timed, each timed request is counted 4 times: the estimated counts
    per route and status stay near the truth, the latency is that of the sampled requests, and every request is
    either timed or reported as untimed."""
    from collectors.http import HttpCollector

    every = 4
    srv = empty_answers_server()
    c = HttpCollector(Config({"collect.http-exact-rate": 0, "collect.http-sample-every": every}), HOST)
    try:
        c.collect(0, 1)
        c.health()
        mix = {"/ok": 1200, "/fail": 400, "/slow": 150}
        get_on_one_connection(srv.server_address[1], mix)
        time.sleep(0.1)
        out = valid(c.collect(1, 1000))
        mine = [s for s in out if s["attrs"].get("http.route") in mix]
        ok = total(mine, "http.server.requests", **{"http.route": "/ok", "http.response.status_class": "2xx"})
        fail = total(mine, "http.server.requests", **{"http.route": "/fail", "http.response.status_class": "5xx"})
        slow = total(mine, "http.server.requests", **{"http.route": "/slow", "http.response.status_class": "2xx"})
        for est, n in ((ok, mix["/ok"]), (fail, mix["/fail"]), (slow, mix["/slow"])):
            assert est % every == 0            # whole sampled requests, each standing for `every`
            sd = every * (n * (1 / every) * (1 - 1 / every)) ** 0.5   # of every x Binomial(n, 1/every)
            assert abs(est - n) <= 5 * sd, (est, n, sd)
        timed = (ok + fail + slow) // every
        untimed = c.health()["http.untimed"]
        assert timed + untimed == sum(mix.values())   # every request timed or reported untimed, none lost
        hist = by_metric(mine, "http.server.request.duration", **{"http.route": "/slow"})[0]["hist"]
        assert hist["count"] == slow
        assert 5 <= hist["sum"] / hist["count"] / 1000 < 30   # the handler sleeps 5 ms
    finally:
        c.close()
        srv.shutdown()


# the same server in a process of its own, which prints its port and serves until it is killed
EMPTY_ANSWERS_SERVER_PROCESS = ("import threading\nfrom tests.ebpf_support import empty_answers_server\n"
                                "print(empty_answers_server().server_address[1], flush=True)\n"
                                "threading.Event().wait()\n")


def test_http_programs_linked_to_a_cgroup_see_its_servers_and_no_other():
    """collect.http-cgroups: a server in the listed group is measured exactly and named after the group; a server
    outside it (this process's) is not seen."""
    from collectors.http import HttpCollector
    from infra import ebpf

    group = ebpf.require_cgroup2() / f"augur-test-http-{os.getpid()}"
    group.mkdir()
    inside = outside = c = None
    try:
        inside = subprocess.Popen([sys.executable, "-c", EMPTY_ANSWERS_SERVER_PROCESS], stdout=subprocess.PIPE,
                                  text=True, cwd=Path(__file__).resolve().parents[1],
                                  preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        inside_port = int(inside.stdout.readline())
        outside = empty_answers_server()
        c = HttpCollector(Config({"collect.http-cgroups": "/" + group.name}), HOST)
        c.collect(0, 1)
        get_on_one_connection(inside_port, {"/inside": 25})
        get_on_one_connection(outside.server_address[1], {"/outside": 15})
        time.sleep(0.1)
        out = valid(c.collect(1, 1000))
        assert total(out, "http.server.requests", service=group.name, **{"http.route": "/inside",
                                                                          series.HTTP_STATUS_CLASS: "2xx"}) == 25
        assert not by_metric(out, "http.server.requests", **{"http.route": "/outside"})
    finally:
        if c:
            c.close()
        if outside:
            outside.shutdown()
        if inside:
            inside.kill()
            inside.wait()
        group.rmdir()


def test_the_http_collector_names_a_cgroup_that_does_not_exist():
    from collectors.http import HttpCollector
    from infra import ebpf

    before = bpf_prog_fds()
    with pytest.raises(ebpf.EbpfUnavailable, match="no cgroup v2 group at .*augur-no-such-group"):
        HttpCollector(Config({"collect.http-cgroups": "/augur-no-such-group"}), HOST)
    assert bpf_prog_fds() == before   # nothing left loaded


def test_route_normalisation_and_cap():
    from collectors.http import OTHER_ROUTE, RouteCap, normalise_route
    assert normalise_route("/users/0/orders") == "/users/{id}/orders"
    assert normalise_route("/v0/items") == "/{id}/items"
    assert normalise_route("/blob/deadbeefdeadbeefdeadbeef") == "/blob/{id}"
    assert normalise_route("/static/app.js") == "/static/app.js"
    cap = RouteCap(2)
    assert [cap("svc", r) for r in ("/a", "/b", "/c", "/a")] == ["/a", "/b", OTHER_ROUTE, "/a"]
    assert cap("other-svc", "/c") == "/c"


def test_draining_a_hash_map_in_batches_returns_every_entry_once_and_empties_it():
    """drain_hash reads and deletes a map in calls of DRAIN_BATCH entries: with several calls' worth, every key comes
    back once with its value (a per-CPU map's as its CPUs' values), and the map is empty after."""
    import ctypes

    from collectors.bpf_loader import DRAIN_BATCH, drain_hash
    from infra import ebpf
    bcc = ebpf.import_bcc()
    n = 3 * DRAIN_BATCH + 17
    b = bcc.BPF(text=b"BPF_HASH(plain, u32, u64, 4096);\n"
                     b"BPF_PERCPU_HASH(per_cpu, u32, u64, 4096);\n"
                     b"int unused(void *ctx) { return 0; }\n")
    try:
        plain, per_cpu = b["plain"], b["per_cpu"]
        for i in range(n):
            plain[ctypes.c_uint32(i)] = ctypes.c_uint64(3 * i + 1)
            per_cpu[ctypes.c_uint32(i)] = per_cpu.Leaf(*[i + cpu for cpu in range(len(per_cpu.Leaf()))])
        got = {k.value: v.value for k, v in drain_hash(plain, "plain")}
        assert got == {i: 3 * i + 1 for i in range(n)}
        assert len(plain.items()) == 0
        got = {k.value: [x for x in v] for k, v in drain_hash(per_cpu, "per_cpu")}
        cpus = len(per_cpu.Leaf())
        assert got == {i: [i + cpu for cpu in range(cpus)] for i in range(n)}
        assert len(per_cpu.items()) == 0
        assert drain_hash(plain, "plain") == []
    finally:
        b.cleanup()
