"""Reading host resources from procfs, cgroupfs and statvfs: pure parsing functions plus small readers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# filesystems that hold data people fill up (not pseudo or memory-backed ones)
DATA_FS_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "vfat", "exfat", "zfs", "overlay",
                           "jfs", "reiserfs", "ntfs", "ntfs3", "nfs", "nfs4", "cifs", "fuseblk"})


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` -> bytes per field."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[name] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def parse_pressure(text: str) -> dict[str, float]:
    """``/proc/pressure/*`` -> {"some": avg10, "full": avg10} in percent."""
    out = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            k, _, v = f.partition("=")
            if k == "avg10":
                out[kind] = float(v)
    return out


def parse_cpu_times(text: str) -> tuple[int, int]:
    """First line of ``/proc/stat`` -> (busy jiffies, total jiffies)."""
    fields = [int(x) for x in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def parse_loadavg(text: str) -> tuple[float, int]:
    """``/proc/loadavg`` -> (1-minute load average, number of tasks)."""
    fields = text.split()
    return float(fields[0]), int(fields[3].partition("/")[2])


def parse_file_nr(text: str) -> tuple[int, int]:
    """``/proc/sys/fs/file-nr`` (allocated, unused, max) -> (file handles in use, max)."""
    allocated, unused, maximum = (int(x) for x in text.split()[:3])
    return allocated - unused, maximum


def pid_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command (its state first: field 3 of proc(5) is index 0), or None
    once the process is gone. The command, in parentheses, may hold spaces and ')': it is split off at the last."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    return text.rsplit(b")", 1)[1].decode().split()


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (``/proc/PID/task/*/children``; empty once it is gone)."""
    out = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _kib_line(path: str, key: str) -> int | None:
    """The ``KEY:  N kB`` line of a /proc file, in bytes; None once the process is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def resident_bytes(pid: int | str = "self") -> int | None:
    """The process's resident memory (``VmRSS`` of ``/proc/PID/status``), or None once it is gone."""
    return _kib_line(f"/proc/{pid}/status", "VmRSS")


def proportional_bytes(pid: int | str = "self") -> int | None:
    """The process's proportional share of memory (``Pss`` of ``/proc/PID/smaps_rollup``: each resident page
    divided by the number of processes that map it), or None once it is gone."""
    return _kib_line(f"/proc/{pid}/smaps_rollup", "Pss")


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str


def parse_mounts(text: str) -> list[Mount]:
    """``/proc/self/mounts`` -> the data filesystems, one per mountpoint (octal escapes decoded)."""
    seen, out = set(), []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[2] not in DATA_FS_TYPES:
            continue
        mp = parts[1].encode().decode("unicode_escape")
        if mp not in seen:
            seen.add(mp)
            out.append(Mount(parts[0], mp, parts[2]))
    return out


@dataclass(frozen=True)
class FsUsage:
    used_bytes: int
    size_bytes: int
    used_inodes: int
    total_inodes: int


def fs_usage(mountpoint: str) -> FsUsage:
    st = os.statvfs(mountpoint)
    return FsUsage((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize,
                   st.f_files - st.f_ffree, st.f_files)


def cgroup_mounts(mounts_text: str) -> dict[str, Path]:
    """Where the cgroup hierarchies are: ``{"v2": path}`` and/or ``{"memory": v1 memory controller path}``."""
    out: dict[str, Path] = {}
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        if parts[2] == "cgroup2":
            out.setdefault("v2", Path(parts[1]))
        elif parts[2] == "cgroup" and "memory" in parts[3].split(","):
            out.setdefault("memory", Path(parts[1]))
    return out


V1_UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


def cgroup_memory(mounts: dict[str, Path], max_depth: int = 2) -> list[tuple[str, int, int | None]]:
    """(cgroup path, bytes in use, limit in bytes or None when unlimited) for cgroups near the root, from the
    v2 hierarchy (memory.current/memory.max) or else the v1 memory controller (memory.usage_in_bytes/limit)."""
    if "v2" in mounts and (mounts["v2"] / "cgroup.controllers").exists() and \
            "memory" in (mounts["v2"] / "cgroup.controllers").read_text().split():
        root, usage_file, limit_file = mounts["v2"], "memory.current", "memory.max"
    elif "memory" in mounts:
        root, usage_file, limit_file = mounts["memory"], "memory.usage_in_bytes", "memory.limit_in_bytes"
    else:
        return []
    out = []
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        p = Path(dirpath)
        if len(p.parts) - base >= max_depth:
            dirnames[:] = []
        if usage_file not in filenames or p == root:
            continue
        try:
            current = int((p / usage_file).read_text())
            limit_text = (p / limit_file).read_text().strip() if limit_file in filenames else "max"
        except (OSError, ValueError):
            continue
        limit = None if limit_text == "max" or int(limit_text) >= V1_UNLIMITED else int(limit_text)
        out.append(("/" + str(p.relative_to(root)), current, limit))
    return out
