"""TCP collector (bpf/tcp.bpf.c): connection lifecycle and retransmits per service port and direction."""

from __future__ import annotations

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, hist_slots

PRODUCER = samples.producer("augur-collector-tcp")
DIRECTIONS = {0: "active", 1: "passive", 2: "unknown"}


class TcpCollector(Collector):
    name = "tcp"

    def __init__(self, cfg: Config, host: str):
        self.host = host
        self.prog = BpfProgram("tcp", {"MAX_PIDS": cfg["collect.max-pids"], "MAX_KEYS": cfg["collect.max-keys"]},
                               ("sock:inet_sock_set_state", "tcp:tcp_retransmit_skb"))

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        out = []
        for key, st in self.prog.drain("tcp", idle):
            attrs = {"network.transport": "tcp", "direction": DIRECTIONS.get(key.direction, "unknown"),
                     "port": str(key.port) if key.port else "ephemeral"}
            common = (PRODUCER, self.host, ts_ms, interval_ms)
            for metric, count in (("ebpf.tcp.connections.opened", st.opened),
                                  ("ebpf.tcp.connections.closed", st.closed),
                                  ("ebpf.tcp.connections.failed", st.failed),
                                  ("ebpf.tcp.retransmits", st.retransmits)):
                if count:
                    out.append(samples.sample(*common, metric, "delta", "{event}", attrs, value=int(count)))
            slots, total = hist_slots(st.duration_ms)
            hist = samples.hist_from_slots(slots, total)
            if hist:
                out.append(samples.sample(*common, "ebpf.tcp.connection.duration", "histogram", "ms", attrs,
                                          hist=hist))
        return out

    def close(self) -> None:
        self.prog.close()
