"""What every collector provides to the runner (collectors/runner.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collectors.bpf_loader import BpfProgram


class Collector(ABC):
    name: str = ""
    prog: BpfProgram | None = None  # the collector's program in the kernel, if it has one

    @abstractmethod
    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        """Telemetry samples for the interval that ends now (in-kernel aggregates are flushed)."""

    def poll_events(self) -> list[dict]:
        """Discrete events seen since the last call (most collectors have none)."""
        return []

    def profiles(self) -> list[dict]:
        """``augur.profiles.v1`` records of the interval the last ``collect`` closed (only the profile signal)."""
        return []

    def health(self) -> dict[str, int]:
        """The collector's own counts since the last call, by name: what it could not observe or deliver
        (``lost_events``, ``unaggregated``) and what it did not report one by one. The runner publishes each as
        ``augur.collector.NAME`` with this collector's name as a label, and on the Prometheus endpoint."""
        return self.prog.health() if self.prog is not None else {}

    def close(self) -> None:
        """Detaches the collector's programs from the kernel."""
        if self.prog is not None:
            self.prog.close()
