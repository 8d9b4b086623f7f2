"""TCP collector (bpf/tcp.bpf.c): connection lifecycle and retransmits per service port and direction."""

from __future__ import annotations

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, hist_slots
from collectors.quiet_counts import QuietCounts

PRODUCER = samples.producer("augur-collector-tcp")
DIRECTIONS = {0: "active", 1: "passive", 2: "unknown"}
COUNTS = ("ebpf.tcp.connections.opened", "ebpf.tcp.connections.closed", "ebpf.tcp.connections.failed",
          "ebpf.tcp.retransmits")


class TcpCollector(Collector):
    name = "tcp"

    def __init__(self, cfg: Config, host: str):
        self.host = host
        self.prog = BpfProgram("tcp", {"MAX_PIDS": cfg["collect.max-pids"], "MAX_KEYS": cfg["collect.max-keys"]},
                               ("sock:inet_sock_set_state", "tcp:tcp_retransmit_skb"))
        # a port with any activity has all four counts, so its first retransmit has a history of zeros
        self.quiet = QuietCounts(PRODUCER, host, cfg["collect.zero-fill-ms"], cfg["collect.max-keys"])

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        out = []
        for key, st in self.prog.drain("tcp", idle):
            attrs = {"network.transport": "tcp", "direction": DIRECTIONS.get(key.direction, "unknown"),
                     "port": str(key.port) if key.port else "ephemeral"}
            common = (PRODUCER, self.host, ts_ms, interval_ms)
            for metric, count in zip(COUNTS, (st.opened, st.closed, st.failed, st.retransmits)):
                self.quiet.declare(ts_ms, metric, "{event}", attrs)
                if count:
                    out.append(samples.sample(*common, metric, "delta", "{event}", attrs, value=int(count)))
            slots, total = hist_slots(st.duration_ms)
            hist = samples.hist_from_slots(slots, total)
            if hist:
                out.append(samples.sample(*common, "ebpf.tcp.connection.duration", "histogram", "ms", attrs,
                                          hist=hist))
        return self.quiet.fill(out, ts_ms, interval_ms)
