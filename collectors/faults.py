"""Injectable, labelled faults for the synthetic generator: what each one does and when it happens.

A fault is ground truth: its window ``[start_ms, end_ms)`` and the series it disturbs are written to the labels
file, and tests and quality harnesses score detectors against them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

# fault kind -> the metrics it disturbs (see collectors/synthetic.py for how)
FAULT_METRICS: dict[str, tuple[str, ...]] = {
    "cpu_hog": ("system.cpu.utilization", "ebpf.runqueue.latency"),
    "latency_regression": ("http.server.request.duration",),
    "error_burst": ("http.server.requests",),
    "memory_leak": ("system.memory.usage",),
    "disk_fill": ("system.filesystem.usage", "ebpf.block.io.latency"),
    "retransmit_storm": ("ebpf.tcp.retransmits",),
}
FAULT_KINDS = tuple(FAULT_METRICS)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``"90s"``, ``"20m"``, ``"2h"``, ``"1.5d"`` -> milliseconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r}: use a number with ms, s, m, h or d (e.g. 20m)")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


@dataclass(frozen=True)
class Fault:
    kind: str
    host: str
    start_ms: int
    end_ms: int
    magnitude: float = 1.0

    def __post_init__(self):
        if self.kind not in FAULT_METRICS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.end_ms <= self.start_ms:
            raise ValueError(f"fault {self.kind} on {self.host}: end must be after start")

    @property
    def metrics(self) -> tuple[str, ...]:
        return FAULT_METRICS[self.kind]

    def active(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms

    def progress(self, t_ms: int) -> float:
        """Fraction of the fault window elapsed at ``t_ms`` (0 before, 1 after)."""
        return min(1.0, max(0.0, (t_ms - self.start_ms) / (self.end_ms - self.start_ms)))

    def to_label(self) -> dict:
        return {**asdict(self), "metrics": list(self.metrics)}


def parse_fault(spec: str, origin_ms: int) -> Fault:
    """``KIND@HOST:+OFFSET:DURATION[:xMAGNITUDE]``, e.g. ``cpu_hog@host-2:+2h:20m``, offset from ``origin_ms``."""
    m = re.match(r"^([a-z_]+)@([^:]+):\+([^:]+):([^:]+)(?::x([0-9.]+))?$", spec.strip())
    if not m:
        raise ValueError(f"bad fault {spec!r}: expected KIND@HOST:+OFFSET:DURATION, e.g. cpu_hog@host-2:+2h:20m")
    kind, host, offset, duration, magnitude = m.groups()
    start = origin_ms + parse_duration_ms(offset)
    return Fault(kind, host, start, start + parse_duration_ms(duration), float(magnitude or 1.0))


def write_labels(path: str | Path, faults: list[Fault], meta: dict | None = None) -> None:
    doc = {"faults": [f.to_label() for f in faults], **(meta or {})}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def read_labels(path: str | Path) -> list[Fault]:
    doc = json.loads(Path(path).read_text())
    return [Fault(f["kind"], f["host"], f["start_ms"], f["end_ms"], f.get("magnitude", 1.0)) for f in doc["faults"]]


# The demo's schedule (offsets from the start of the synthetic run): one fault of each kind, spread over hosts.
# The first comes after 90 minutes of history: the ensemble's detectors and calibrators warm up first (about 75
# one-minute windows with the defaults).
DEMO_FAULTS = (
    "cpu_hog@host-2:+90m:10m",
    "latency_regression@host-3:+110m:15m",
    "error_burst@host-1:+135m:10m",
    "retransmit_storm@host-4:+160m:10m",
    "disk_fill@host-1:+180m:20m",
    "memory_leak@host-3:+205m:30m",
)
