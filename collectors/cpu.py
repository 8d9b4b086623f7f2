"""CPU collector (bpf/cpu.bpf.c): run-queue latency histogram, on-CPU time per process and per cgroup."""

from __future__ import annotations

from collections import defaultdict

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, comm, hist_slots
from collectors.enrich import CgroupNames

PRODUCER = samples.producer("augur-collector-cpu")


class CpuCollector(Collector):
    name = "cpu"

    def __init__(self, cfg: Config, host: str, cgroups: CgroupNames | None = None):
        self.host = host
        self.top = cfg["collect.top-processes"]
        self.cgroups = cgroups or CgroupNames()
        self.prog = BpfProgram("cpu", {"MAX_PIDS": cfg["collect.max-pids"], "MAX_TASKS": cfg["collect.max-keys"]},
                               ("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch"))

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        out: list[dict] = []

        def add(metric, mtype, unit, attrs, **kw):
            out.append(samples.sample(PRODUCER, self.host, ts_ms, interval_ms, metric, mtype, unit, attrs, **kw))

        for _, h in self.prog.drain("runq_hist", idle):
            slots, total = hist_slots(h)
            hist = samples.hist_from_slots(slots, total)
            if hist:
                add("ebpf.runqueue.latency", "histogram", "us", {}, hist=hist)
        by_comm: dict[str, int] = defaultdict(int)
        by_cgroup: dict[str, int] = defaultdict(int)
        for key, ns in self.prog.drain("oncpu", idle):
            by_comm[comm(key.comm)] += ns.value
            by_cgroup[self.cgroups.path(key.cgroup_id)] += ns.value
        ranked = sorted(by_comm.items(), key=lambda kv: -kv[1])
        other = sum(ns for _, ns in ranked[self.top:])
        for name, ns in ranked[: self.top] + ([("other", other)] if other else []):
            add("process.cpu.time", "delta", "s", {"process.executable.name": name}, value=ns / 1e9)
        for path, ns in by_cgroup.items():
            add("ebpf.cgroup.cpu.time", "delta", "s", {"cgroup": path}, value=ns / 1e9)
        return out
