"""Turning kernel ids into names people use: cgroup id -> cgroup path and service name."""

from __future__ import annotations

import os
import time
from pathlib import Path



def cgroup2_root(mounts_file: Path = Path("/proc/self/mounts")) -> Path:
    """The cgroup v2 mount (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid hosts): BPF's
    bpf_get_current_cgroup_id() returns ids of this hierarchy."""
    try:
        for line in mounts_file.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    except OSError:
        pass
    return Path("/sys/fs/cgroup")


class CgroupNames:
    """cgroup v2 ids are the inode numbers of their directories; rescans at most every ``refresh_s`` on a miss."""

    def __init__(self, root: Path | None = None, refresh_s: float = 5.0, max_depth: int = 4):
        self.root = root or cgroup2_root()
        self.refresh_s, self.max_depth = refresh_s, max_depth
        self._names: dict[int, str] = {}
        self._scanned = 0.0

    def _scan(self) -> None:
        names: dict[int, str] = {}
        base_depth = len(self.root.parts)
        for dirpath, dirnames, _ in os.walk(self.root):
            p = Path(dirpath)
            if len(p.parts) - base_depth >= self.max_depth:
                dirnames[:] = []
            try:
                names[os.stat(p).st_ino] = "/" + str(p.relative_to(self.root)).lstrip(".")
            except OSError:
                continue
        names.setdefault(os.stat(self.root).st_ino if self.root.exists() else 1, "/")
        self._names, self._scanned = names, time.monotonic()

    def path(self, cgroup_id: int) -> str:
        name = self._names.get(cgroup_id)
        if name is None and time.monotonic() - self._scanned > self.refresh_s:
            self._scan()
            name = self._names.get(cgroup_id)
        return name or f"cgroup-{cgroup_id}"

    def id_of(self, path: Path) -> int:
        return os.stat(path).st_ino


def service_name(cgroup_path: str) -> str:
    """The last path component without systemd's unit suffix: ``/system.slice/nginx.service`` -> ``nginx``."""
    leaf = cgroup_path.rstrip("/").rsplit("/", 1)[-1] or "/"
    for suffix in (".service", ".scope", ".slice"):
        if leaf.endswith(suffix):
            return leaf[: -len(suffix)]
    return leaf
