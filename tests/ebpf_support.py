"""Skip eBPF tests with the stated reason where root/eBPF are missing; in CI (which runs as root) fail instead,
so a CI run can never pass with the kernel tests silently skipped. Also what the kernel tests share: a loop-mounted
filesystem, the BPF programs a process holds, the samples of one series."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from infra import ebpf, loopfs


def require_ebpf() -> None:
    reason = ebpf.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the eBPF tests, but: {reason}")
    pytest.skip(f"eBPF collectors unavailable: {reason}")


def bpf_prog_fds() -> int:
    """BPF programs this process holds open (each attached program keeps one)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog":
                n += 1
        except OSError:
            pass
    return n


def require_root(what: str) -> None:
    """Skip (fail in CI) a test that needs root for ``what`` (mounting a loop device, say)."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test as root ({what})")
    pytest.skip(f"needs root to {what}")


def loop_mounted_ext4(tmp_path: Path, size_mb: int, *mkfs_args: str):
    """A fresh ext4 image of ``size_mb`` MiB loop-mounted under ``tmp_path`` (root), unmounted afterwards."""
    return loopfs.loop_mounted_ext4(tmp_path / "fs.img", tmp_path / "mnt", size_mb, *mkfs_args)


def by_metric(samples: list[dict], metric: str, **attrs) -> list[dict]:
    """The samples of ``metric`` whose attributes include ``attrs``."""
    return [s for s in samples if s["metric"] == metric and all(s["attrs"].get(k) == v for k, v in attrs.items())]


def empty_answers_server():
    """A keep-alive HTTP/1.1 server answering GET with an empty body: 503 on /fail, after 5 ms on /slow, else 200."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/slow":
                time.sleep(0.005)
            self.send_response(503 if self.path == "/fail" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
