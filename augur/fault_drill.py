"""Real faults on this host, recorded by the real collectors: ``python -m augur.fault_drill --out DIR`` (root).

It runs ``augur record`` (every eBPF collector) for the whole drill, serves a small HTTP service with a steady
client load, and after a fault-free warm-up injects one real fault of each kind below, one after another, each for
``--fault`` with ``--gap`` of recovery between them. It writes ``DIR/recording.jsonl.gz`` (what ``augur replay``
plays) and ``DIR/labels.json``: each fault's kind, host and measured start and end (the same format as the
synthetic generator's labels), which ``python -m augur.host_eval --recording DIR`` scores detectors against.

The faults (named like the synthetic ones, :data:`collectors.faults.FAULT_KINDS`):

- ``cpu_hog``: one busy-looping process per core;
- ``latency_regression``: the HTTP service answers 80 ms later;
- ``error_burst``: it answers 40% of its requests with 500;
- ``retransmit_storm``: 10% of the packets to and from the service's port are dropped on ``lo`` (an XDP program,
  ``bpf/drill/packet_loss.bpf.c``: this kernel has neither netem nor netfilter), so the kernel's TCP retransmits them;
- ``memory_leak``: a process allocates and touches 32 MiB every 2 s, and frees it all when it ends;
- ``disk_fill``: a file on a loop-mounted ext4 image grows, fsync'd, to 80% of the filesystem (then is deleted).

SIGTERM or Ctrl-C ends a drill early and still undoes the fault in progress, unmounts the image, detaches the
XDP program and closes the recording.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from augur.timeparse import now_ms
from collectors.faults import Fault, parse_duration_ms, write_labels
from infra.loopfs import loop_mounted_ext4

DRILL_FAULTS = ("cpu_hog", "latency_regression", "error_burst", "retransmit_storm", "memory_leak", "disk_fill")
LOSS_PER_MILLE = 100
ROUTES = ("/api/items", "/api/users", "/health")


class Service:
    """The HTTP service under test, in this process: its mode is switched by the drill."""

    def __init__(self):
        self.mode = "normal"
        drill = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(0.002 + random.random() * 0.004)
                if drill.mode == "slow":
                    time.sleep(0.08)
                status = 500 if drill.mode == "errors" and random.random() < 0.4 else 200
                body = b"{}"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def client_load(port: int, rate_per_s: float, stop: threading.Event) -> None:
    """Requests at about ``rate_per_s``, a new connection each (so TCP opens and closes are steady too)."""
    while not stop.is_set():
        url = f"http://127.0.0.1:{port}{random.choice(ROUTES)}"
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except urllib.error.HTTPError:
            pass
        except OSError as e:
            print(f"fault_drill: request failed: {e}", file=sys.stderr)
        stop.wait(random.expovariate(rate_per_s))


def _busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


LEAK_CODE = """
import sys, time
held = []
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    block = bytearray(32 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    held.append(block)
    time.sleep(2)
"""


def fill_disk(mount: Path, seconds: float, fraction: float, stop_at: float) -> None:
    """Grow a file on ``mount`` steadily (fsync'd) to ``fraction`` of the filesystem over ``seconds``."""
    st = os.statvfs(mount)
    target = int(st.f_blocks * st.f_frsize * fraction) - (st.f_blocks - st.f_bfree) * st.f_frsize
    chunk = 1 << 20
    steps = max(1, target // chunk)
    pause = seconds / steps
    with open(mount / "fill.bin", "wb") as fh:
        for _ in range(steps):
            if time.monotonic() >= stop_at:
                break
            fh.write(os.urandom(chunk))
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(pause)


class PacketLoss:
    """``bpf/drill/packet_loss.bpf.c``, compiled at the start of the drill (so that no compiler runs inside a fault) and
    attached to ``lo`` as generic XDP only while the fault lasts. An XDP program is not a bpf_link: it would outlive
    this process, so :meth:`detach` runs however the drill ends."""

    XDP_SKB_MODE = 1 << 1

    def __init__(self, port: int, per_mille: int):
        from collectors.bpf_loader import BpfProgram
        from infra import ebpf
        self._bcc = ebpf.import_bcc()
        self.prog = BpfProgram("drill/packet_loss", {"PORT": port, "LOSS_PER_MILLE": per_mille})
        self.fn = self.prog.bpf.load_func("drop_some", self._bcc.BPF.XDP)
        self.attached = False

    def attach(self) -> None:
        self.prog.bpf.attach_xdp("lo", self.fn, self.XDP_SKB_MODE)
        self.attached = True

    def detach(self) -> None:
        if self.attached:
            self._bcc.BPF.remove_xdp("lo", self.XDP_SKB_MODE)
            self.attached = False


def inject(kind: str, seconds: float, service: Service, mount: Path, loss: PacketLoss) -> None:
    """Run one fault for ``seconds`` and undo it (also when interrupted)."""
    end = time.monotonic() + seconds
    if kind == "cpu_hog":
        procs = _busy_processes(os.cpu_count() or 1)
        try:
            time.sleep(seconds)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    elif kind in ("latency_regression", "error_burst"):
        service.mode = "slow" if kind == "latency_regression" else "errors"
        try:
            time.sleep(seconds)
        finally:
            service.mode = "normal"
    elif kind == "retransmit_storm":
        loss.attach()
        try:
            time.sleep(seconds)
        finally:
            loss.detach()
    elif kind == "memory_leak":
        subprocess.run([sys.executable, "-c", LEAK_CODE, str(seconds)], check=True)
    elif kind == "disk_fill":
        try:
            fill_disk(mount, seconds, 0.8, end)
            time.sleep(max(0.0, end - time.monotonic()))
        finally:
            (mount / "fill.bin").unlink(missing_ok=True)
    else:
        raise ValueError(f"the drill cannot inject {kind!r}; it injects {', '.join(DRILL_FAULTS)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m augur.fault_drill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for recording.jsonl.gz and labels.json")
    ap.add_argument("--warmup", default="10m", help="fault-free time first (detectors warm up, forests train)")
    ap.add_argument("--fault", default="2m", help="how long each fault lasts")
    ap.add_argument("--gap", default="150s", help="recovery time after each fault")
    ap.add_argument("--interval", default="1s", help="the collectors' flush interval")
    ap.add_argument("--rate", type=float, default=20.0, help="HTTP requests per second of the steady load")
    ap.add_argument("--faults", default=",".join(DRILL_FAULTS), help="kinds to inject, in order")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("fault_drill: needs root (the eBPF collectors, a loop mount)", file=sys.stderr)
        return 2
    kinds = [k for k in args.faults.split(",") if k]
    for k in kinds:
        if k not in DRILL_FAULTS:
            ap.error(f"cannot inject {k!r}; choose from {', '.join(DRILL_FAULTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    fault_s, gap_s = parse_duration_ms(args.fault) / 1000, parse_duration_ms(args.gap) / 1000
    signal.signal(signal.SIGTERM, signal.default_int_handler)     # SIGTERM cleans up as Ctrl-C does
    faults: list[Fault] = []
    try:
        with contextlib.ExitStack() as undo:                           # undone in reverse, however the drill ends
            workdir = Path(tempfile.mkdtemp(prefix="augur-drill-"))
            undo.callback(shutil.rmtree, workdir, ignore_errors=True)
            mount = undo.enter_context(loop_mounted_ext4(workdir / "drill-fs.img", workdir / "drill-mnt", 512))
            service = Service()
            undo.callback(service.close)
            loss = PacketLoss(service.port, LOSS_PER_MILLE)
            recorder = subprocess.Popen([sys.executable, "-m", "augur.cli", "record", "--output",
                                         str(out / "recording.jsonl.gz"), "--interval", args.interval,
                                         "--set", f"collect.host={host}"])
            undo.callback(recorder.wait, timeout=60)
            undo.callback(recorder.terminate)  # augur record stops on SIGTERM as on Ctrl-C, closing the recording
            undo.callback(loss.detach)
            stop = threading.Event()
            undo.callback(stop.set)
            time.sleep(20)                     # the collectors load (and compile) before any request is made
            if recorder.poll() is not None:
                raise RuntimeError(f"augur record exited early ({recorder.returncode})")
            threading.Thread(target=client_load, args=(service.port, args.rate, stop), daemon=True).start()
            started = now_ms()
            print(f"fault_drill: recording {host}; warm-up {args.warmup}, then {', '.join(kinds)} "
                  f"({args.fault} each, {args.gap} apart)", file=sys.stderr, flush=True)
            time.sleep(parse_duration_ms(args.warmup) / 1000)
            for kind in kinds:
                start = now_ms()
                print(f"fault_drill: {kind} ...", file=sys.stderr, flush=True)
                inject(kind, fault_s, service, mount, loss)
                faults.append(Fault(kind, host, start, now_ms()))
                write_labels(out / "labels.json", faults, {"host": host, "recording_start_ms": started,
                                                           "interval": args.interval})
                time.sleep(gap_s)
    except KeyboardInterrupt:
        print(f"fault_drill: interrupted after {len(faults)} fault(s); undone and cleaned up", file=sys.stderr)
        return 130
    print(json.dumps({"recording": str(out / "recording.jsonl.gz"), "faults": len(faults)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
