"""Block I/O collector (bpf/blockio.bpf.c): latency histogram, operations and bytes per device and direction."""

from __future__ import annotations

import os
from pathlib import Path

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, hist_slots

PRODUCER = samples.producer("augur-collector-blockio")


def kernel_dev_name(dev: int) -> str:
    """Tracepoint ``dev`` (MKDEV with 20-bit minor) -> the kernel's device name, e.g. ``vda``."""
    major, minor = dev >> 20, dev & ((1 << 20) - 1)
    link = Path(f"/sys/dev/block/{major}:{minor}")
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return f"{major}:{minor}"


class BlockIoCollector(Collector):
    name = "blockio"

    def __init__(self, cfg: Config, host: str):
        self.host = host
        self.prog = BpfProgram("blockio", {"MAX_PIDS": cfg["collect.max-pids"], "MAX_KEYS": cfg["collect.max-keys"]},
                               ("block:block_rq_issue", "block:block_rq_complete"))
        self._names: dict[int, str] = {}

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        out = []
        for key, st in self.prog.drain("io", idle):
            device = self._names.setdefault(key.dev, kernel_dev_name(key.dev))
            direction = "write" if key.write else "read"
            slots, total = hist_slots(st.latency_us)
            common = (PRODUCER, self.host, ts_ms, interval_ms)
            hist = samples.hist_from_slots(slots, total)
            if hist:
                out.append(samples.sample(*common, "ebpf.block.io.latency", "histogram", "us",
                                          {"device": device, "direction": direction}, hist=hist))
            out.append(samples.sample(*common, "system.disk.operations", "delta", "{operation}",
                                      {"device": device, "direction": direction}, value=int(st.ops)))
            out.append(samples.sample(*common, "system.disk.io", "delta", "By",
                                      {"device": device, "direction": direction}, value=int(st.bytes)))
        return out
