"""Turning kernel ids into names people use: cgroup id -> cgroup path and service name, a listening port -> the
command of the process listening on it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from infra.ebpf import cgroup2_root


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


class ListeningPorts:
    """TCP port -> command of the process listening on it, in this network namespace: the LISTEN sockets of
    ``/proc/net/tcp{,6}`` matched to the processes' socket file descriptors. Rescans at most every ``refresh_s``
    on a miss (a port nobody listens on stays a miss until then)."""

    def __init__(self, proc: Path = Path("/proc"), refresh_s: float = 5.0):
        self.proc, self.refresh_s = proc, refresh_s
        self._commands: dict[int, str] = {}
        self._scanned = float("-inf")

    def _listening_inodes(self) -> dict[int, int]:
        inodes: dict[int, int] = {}
        for name in ("tcp", "tcp6"):
            try:
                lines = (self.proc / "net" / name).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 9 and f[3] == "0A":  # TCP_LISTEN
                    inodes[int(f[9])] = int(f[1].rsplit(":", 1)[1], 16)
        return inodes

    def _scan(self) -> None:
        inodes = self._listening_inodes()
        ports = len(set(inodes.values()))
        commands: dict[int, str] = {}
        for pid in os.listdir(self.proc):
            if len(commands) == ports:
                break
            if not pid.isdigit():
                continue
            fd_dir = self.proc / pid / "fd"
            try:
                for fd in os.listdir(fd_dir):
                    link = os.readlink(fd_dir / fd)
                    port = inodes.get(int(link[8:-1])) if link.startswith("socket:[") else None
                    if port is not None and port not in commands:
                        commands[port] = (self.proc / pid / "comm").read_text().strip()
            except (OSError, ValueError):
                continue  # the process ended, or its fds are not ours to read
        self._commands, self._scanned = commands, time.monotonic()

    def command(self, port: int) -> str | None:
        name = self._commands.get(port)
        if name is None and time.monotonic() - self._scanned > self.refresh_s:
            self._scan()
            name = self._commands.get(port)
        return name
