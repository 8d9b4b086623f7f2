"""What every collector provides to the runner (collectors/runner.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Collector(ABC):
    name: str = ""

    @abstractmethod
    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        """Telemetry samples for the interval that ends now (in-kernel aggregates are flushed)."""

    def poll_events(self) -> list[dict]:
        """Discrete events seen since the last call (most collectors have none)."""
        return []

    def lost_events(self) -> int:
        """Kernel records that could not be delivered since the last call."""
        return 0

    def close(self) -> None:
        pass
