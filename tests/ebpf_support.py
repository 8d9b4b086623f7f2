"""Skip eBPF tests with the stated reason where root/eBPF are missing; in CI (which runs as root) fail instead,
so a CI run can never pass with the kernel tests silently skipped."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import ebpf


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


@contextlib.contextmanager
def loop_mounted_ext4(tmp_path: Path, size_mb: int, *mkfs_args: str):
    """A fresh ext4 image of ``size_mb`` MiB loop-mounted under ``tmp_path`` (root), unmounted afterwards."""
    if not shutil.which("mkfs.ext4"):
        pytest.fail("mkfs.ext4 is missing (Debian package e2fsprogs)")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", *mkfs_args, str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
