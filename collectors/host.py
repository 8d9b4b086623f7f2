"""Host resources: CPU utilisation and load (run-queue saturation), memory (host and cgroups) and pressure, page
faults per cgroup (eBPF), filesystem bytes and inodes per mount, and kernel tables with a ceiling (file handles,
tasks, conntrack entries). Every gauge with a ``capacity`` is forecast for exhaustion by the streaming job."""

from __future__ import annotations

import os
from pathlib import Path

from augur.config import Config
from collectors import procfs, samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram
from collectors.enrich import CgroupNames

PRODUCER = samples.producer("augur-collector-host")


class HostCollector(Collector):
    """``memory`` and ``filesystem`` signals; page faults need eBPF, the rest only reads files."""

    name = "host"

    def __init__(self, cfg: Config, host: str, with_ebpf: bool = True, proc: Path = Path("/proc"),
                 cgroups: CgroupNames | None = None):
        self.host, self.proc = host, proc
        self.cgroup_mounts = procfs.cgroup_mounts((proc / "self" / "mounts").read_text())
        self.cgroups = cgroups or CgroupNames(self.cgroup_mounts.get("v2"))
        self.prog = BpfProgram("faults", {"MAX_KEYS": cfg["collect.max-keys"]},
                               ("exceptions:page_fault_user",)) if with_ebpf else None
        self._cpu_prev = procfs.parse_cpu_times((proc / "stat").read_text())
        self.ncpu = os.cpu_count() or 1

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        out: list[dict] = []

        def add(metric, mtype, unit, attrs, **kw):
            out.append(samples.sample(PRODUCER, self.host, ts_ms, interval_ms, metric, mtype, unit, attrs, **kw))

        busy, total = procfs.parse_cpu_times((self.proc / "stat").read_text())
        d_busy, d_total = busy - self._cpu_prev[0], total - self._cpu_prev[1]
        self._cpu_prev = (busy, total)
        if d_total > 0:
            add("system.cpu.utilization", "gauge", "1", {}, value=round(d_busy / d_total, 5), capacity=1.0)
        load1, tasks = procfs.parse_loadavg((self.proc / "loadavg").read_text())
        add("system.cpu.load", "gauge", "{task}", {"window": "1m"}, value=load1, capacity=float(self.ncpu))
        sys_dir = self.proc / "sys"
        task_limit = min(x for x in (procfs.read_int(sys_dir / "kernel" / "pid_max"),
                                     procfs.read_int(sys_dir / "kernel" / "threads-max"), 1 << 62) if x)
        add("system.tasks.usage", "gauge", "{task}", {}, value=float(tasks), capacity=float(task_limit))
        try:
            files, files_max = procfs.parse_file_nr((sys_dir / "fs" / "file-nr").read_text())
            add("system.files.usage", "gauge", "{file}", {}, value=float(files), capacity=float(files_max))
        except (OSError, ValueError):
            pass
        conntrack = procfs.read_int(sys_dir / "net" / "netfilter" / "nf_conntrack_count")
        conntrack_max = procfs.read_int(sys_dir / "net" / "netfilter" / "nf_conntrack_max")
        if conntrack is not None and conntrack_max:
            add("system.conntrack.usage", "gauge", "{entry}", {}, value=float(conntrack),
                capacity=float(conntrack_max))
        mem = procfs.parse_meminfo((self.proc / "meminfo").read_text())
        if "MemTotal" in mem and "MemAvailable" in mem:
            add("system.memory.usage", "gauge", "By", {"state": "used"},
                value=float(mem["MemTotal"] - mem["MemAvailable"]), capacity=float(mem["MemTotal"]))
        for resource in ("cpu", "memory", "io"):
            try:
                pressure = procfs.parse_pressure((self.proc / "pressure" / resource).read_text())
            except OSError:
                continue
            for kind, pct in pressure.items():
                add("system.pressure", "gauge", "%", {"resource": resource, "kind": kind}, value=pct)
        for path, current, limit in procfs.cgroup_memory(self.cgroup_mounts):
            kw = {"capacity": float(limit)} if limit else {}
            add("system.cgroup.memory.usage", "gauge", "By", {"cgroup": path}, value=float(current), **kw)
        for m in procfs.parse_mounts((self.proc / "self" / "mounts").read_text()):
            try:
                u = procfs.fs_usage(m.mountpoint)
            except OSError:
                continue
            if u.size_bytes == 0:
                continue
            attrs = {"mountpoint": m.mountpoint, "device": m.device[:256], "type": m.fstype}
            add("system.filesystem.usage", "gauge", "By", {**attrs, "state": "used"}, value=float(u.used_bytes),
                capacity=float(u.size_bytes))
            if u.total_inodes:
                add("system.filesystem.inodes.usage", "gauge", "{inode}", {**attrs, "state": "used"},
                    value=float(u.used_inodes), capacity=float(u.total_inodes))
        if self.prog is not None:
            idle = self.prog.flip()
            for cgroup_id, n in self.prog.drain("faults", idle):
                add("ebpf.page_faults", "delta", "{fault}", {"cgroup": self.cgroups.path(cgroup_id.value)},
                    value=int(n.value))
        return out
