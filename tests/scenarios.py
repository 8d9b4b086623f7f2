"""Small labelled scenarios shared by tests: synthetic telemetry with one injected fault on one host."""

from __future__ import annotations

from dataclasses import dataclass

from collectors.faults import Fault
from collectors.synthetic import SyntheticTelemetry

H = 3_600_000
DAY = 24 * H
# a fixed past day, aligned to windows, so the data never looks clock-skewed
T0 = 1_764_806_400_000  # 2025-12-04 00:00:00 UTC


@dataclass
class Scenario:
    gen: SyntheticTelemetry
    fault: Fault
    start: int
    end: int

    def samples(self, start: int | None = None, end: int | None = None) -> list[dict]:
        return [s for b in self.gen.iter_range(self.start if start is None else start,
                                               self.end if end is None else end) for s in b]

    @property
    def untouched_hosts(self) -> set[str]:
        return set(self.gen.host_names) - {self.fault.host}


def cpu_hog_scenario(hours: int = 5, seed: int = 7) -> Scenario:
    fault = Fault("cpu_hog", "host-2", T0 + 3 * H, T0 + 3 * H + 20 * 60_000)
    return Scenario(SyntheticTelemetry(hosts=3, seed=seed, faults=[fault]), fault, T0, T0 + hours * H)


def in_fault_window(anomaly: dict, fault: Fault) -> bool:
    return anomaly["window_end"] > fault.start_ms and anomaly["window_start"] < fault.end_ms
