"""Small labelled scenarios shared by tests: synthetic telemetry with one injected fault on one host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collectors.faults import Fault
from collectors.synthetic import SyntheticTelemetry

H = 3_600_000
DAY = 24 * H
# a fixed past day, aligned to windows, so the data never looks clock-skewed
T0 = 1_764_806_400_000  # 2025-12-04 00:00:00 UTC


@dataclass
class Scenario:
    gen: SyntheticTelemetry
    fault: Fault  # the fault the anomaly tests look for
    start: int
    end: int
    other_faults: tuple[Fault, ...] = ()

    def samples(self, start: int | None = None, end: int | None = None) -> list[dict]:
        return [s for b in self.gen.iter_range(self.start if start is None else start,
                                               self.end if end is None else end) for s in b]

    @property
    def untouched_hosts(self) -> set[str]:
        return set(self.gen.host_names) - {f.host for f in (self.fault, *self.other_faults)}


def cpu_hog_scenario(hours: int = 5, seed: int = 7) -> Scenario:
    fault = Fault("cpu_hog", "host-2", T0 + 3 * H, T0 + 3 * H + 20 * 60_000)
    return Scenario(SyntheticTelemetry(hosts=3, seed=seed, faults=[fault]), fault, T0, T0 + hours * H)


def cpu_hog_and_disk_fill_scenario(hours: int = 5, seed: int = 7) -> Scenario:
    """The cpu_hog scenario plus a disk filling up on host-1 from 1.5 h to 3.5 h (then cleaned up)."""
    hog = Fault("cpu_hog", "host-2", T0 + 3 * H, T0 + 3 * H + 20 * 60_000)
    fill = Fault("disk_fill", "host-1", T0 + 3 * H // 2, T0 + 7 * H // 2)
    return Scenario(SyntheticTelemetry(hosts=3, seed=seed, faults=[hog, fill]), hog, T0, T0 + hours * H, (fill,))


# forecasting settings that make the short scenarios above forecastable: 5-minute steps, 1 h of history
FAST_FORECAST = {"forecast.step-ms": 300_000, "forecast.min-history-ms": 3_600_000, "forecast.recent-ms": 1_800_000}


def in_fault_window(anomaly: dict, fault: Fault) -> bool:
    return anomaly["window_end"] > fault.start_ms and anomaly["window_start"] < fault.end_ms


def train_host_forests(registry_dir: Path, scenario: Scenario, hours: int = 6, window_ms: int = 60_000) -> list[str]:
    """Fit each host's forest, as ``augur train`` does, on ``hours`` of the scenario's hosts before it starts, with
    no fault; returns the hosts that got one."""
    from augur.config import Config
    from jobs import reference
    from models.registry import ModelRegistry
    from models.train_registry import train_forests
    clean = SyntheticTelemetry(hosts=scenario.gen.hosts, seed=scenario.gen.seed)
    samples = [s for b in clean.iter_range(scenario.start - hours * H, scenario.start) for s in b]
    registry = ModelRegistry(registry_dir)
    assert train_forests(reference.features(samples, window_ms), Config(), registry, min_windows=60) > 0
    return sorted(h for h in scenario.gen.host_names if registry.forest_path(h).exists())
