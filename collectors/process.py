"""Process collector (bpf/process.bpf.c): exec, exit and OOM-kill events to ``augur.events.v1``, rate limited,
plus per-interval counts of each kind as telemetry (so a rate of execs can be scored like any series)."""

from __future__ import annotations

import ctypes
import time
from collections import Counter

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, comm
from collectors.enrich import CgroupNames
from collectors.ratelimit import TokenBucket
from infra import ebpf

PRODUCER = samples.producer("augur-collector-process")
KINDS = {1: "exec", 2: "exit", 3: "oom_kill"}
FILENAME_LEN = 128


class ProcEvent(ctypes.Structure):
    _fields_ = [("ts_ns", ctypes.c_uint64), ("cgroup_id", ctypes.c_uint64), ("kind", ctypes.c_uint32),
                ("pid", ctypes.c_uint32), ("ppid", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("comm", ctypes.c_char * 16), ("filename", ctypes.c_char * FILENAME_LEN)]


def monotonic_to_epoch_ms(ts_ns: int) -> int:
    """bpf_ktime_get_ns() is CLOCK_MONOTONIC: shift it to wall-clock epoch milliseconds."""
    return (ts_ns + time.time_ns() - time.monotonic_ns()) // 1_000_000


class ProcessCollector(Collector):
    name = "process"

    def __init__(self, cfg: Config, host: str, cgroups: CgroupNames | None = None):
        self.host = host
        self.cgroups = cgroups or CgroupNames()
        ebpf.prepare()
        oom_has_comm = "comm" in (ebpf.TRACEFS / "events/oom/mark_victim/format").read_text()
        self.prog = BpfProgram("process", {"MAX_PIDS": cfg["collect.max-pids"], "RINGBUF_PAGES": 64,
                                           "OOM_HAS_COMM": int(oom_has_comm)},
                               ("sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit",
                                "oom:mark_victim"))
        self.limit = TokenBucket(cfg["collect.events-per-second"], cfg["collect.events-per-second"] * 5)
        self._pending: list[dict] = []
        self._counts: Counter = Counter()
        self.prog.bpf["events"].open_ring_buffer(self._on_event)

    def _on_event(self, ctx, data, size) -> None:
        e = ctypes.cast(data, ctypes.POINTER(ProcEvent)).contents
        kind = KINDS.get(e.kind, "unknown")
        self._counts[kind] += 1
        if kind != "oom_kill" and not self.limit.allow():  # OOM kills are rare and always reported
            return
        attrs = {"ppid": str(e.ppid)} if e.ppid else {}
        if e.filename:
            attrs["filename"] = e.filename.decode("utf-8", "replace")[:256]
        self._pending.append(samples.event(PRODUCER, self.host, monotonic_to_epoch_ms(e.ts_ns), kind, attrs,
                                           pid=int(e.pid), comm=comm(e.comm) if e.comm else None,
                                           cgroup=self.cgroups.path(e.cgroup_id) if e.cgroup_id else None))

    def poll_events(self) -> list[dict]:
        self.prog.bpf.ring_buffer_consume()
        out, self._pending = self._pending, []
        return out

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        self.prog.bpf.ring_buffer_consume()  # count what is queued; the events stay pending for poll_events
        counts, self._counts = self._counts, Counter()
        return [samples.sample(PRODUCER, self.host, ts_ms, interval_ms, "ebpf.process.events", "delta", "{event}",
                               {"event": kind}, value=counts.get(kind, 0)) for kind in KINDS.values()]

    def health(self) -> dict[str, int]:
        refused, self.limit.refused = self.limit.refused, 0  # counted in ebpf.process.events, not sent one by one
        return {**super().health(), "events.suppressed": refused}
