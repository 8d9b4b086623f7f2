"""Resource-usage scenarios with ground truth, for the forecaster's tests and ``augur bench forecast``.

Each scenario is one series of usage against a capacity, sampled every minute (seeded noise), and knows its truth:
when (if ever) the usage first reaches the capacity, and whether a forecast must be raised at all. Usage is in
bytes; the scenarios are written in percent of capacity for readability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from collectors import samples

MIN = 60_000
H = 60 * MIN
DAY = 24 * H
T0 = 1_764_806_400_000  # 2025-12-04 00:00:00 UTC, a Thursday
GiB = 1 << 30
PRODUCER = samples.producer("augur-scenarios")


@dataclass(frozen=True)
class ResourceScenario:
    name: str
    kind: str  # "filesystem" or "memory"
    days: float
    capacity: float
    pct: Callable[[np.ndarray, np.random.Generator], np.ndarray]  # hours since start -> percent used
    must_alert: bool
    description: str
    seed: int = 11
    stops_growing_at_h: float | None = None  # growth stops here: a raised forecast must be retracted after it
    step_ms: int = MIN
    start_ms: int = T0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t_ms, used)``, ending at exhaustion (a full resource stays full: nothing after it is forecast)."""
        if "series" not in self._cache:
            n = int(self.days * DAY / self.step_ms)
            t = self.start_ms + np.arange(n, dtype=np.int64) * self.step_ms
            hours = (t - self.start_ms) / H
            pct = self.pct(hours, np.random.default_rng(self.seed))
            used = np.clip(pct, 0.0, 100.0) / 100.0 * self.capacity
            full = np.flatnonzero(used >= self.capacity)
            if full.size:
                t, used = t[:full[0] + 1], used[:full[0] + 1]
            self._cache["series"] = (t, np.round(used))
        return self._cache["series"]

    @property
    def exhaustion_ts(self) -> int | None:
        t, used = self.series()
        return int(t[-1]) if used[-1] >= self.capacity else None

    @property
    def metric(self) -> str:
        return "system.filesystem.usage" if self.kind == "filesystem" else "system.memory.usage"

    @property
    def attrs(self) -> dict:
        return {"mountpoint": "/data", "state": "used"} if self.kind == "filesystem" else {"state": "used"}

    def telemetry(self, host: str = "scenario-host") -> list[dict]:
        """The series as ``augur.telemetry.v1`` gauge records (what a collector would send)."""
        t, used = self.series()
        return [samples.sample(PRODUCER, host, int(ts), self.step_ms, self.metric, "gauge", "By", self.attrs,
                               value=float(u), capacity=float(self.capacity)) for ts, u in zip(t, used)]


def _noise(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    return rng.normal(0.0, sd, n)


def _linear(h, rng):
    return 50.0 + 1.0 * h + _noise(rng, h.size, 0.05)


def _accelerating(h, rng):
    return 40.0 + 0.2 * h + 0.01 * h * h + _noise(rng, h.size, 0.05)


def _daily_rotation(base: float, net_per_day: float, amplitude: float, phase_h: float):
    def pct(h, rng):
        phase = ((h + phase_h) % 24.0) / 24.0  # rotation at midnight
        return base + net_per_day * h / 24.0 + amplitude * (phase - 0.5) + _noise(rng, h.size, 0.05)
    return pct


def _sawtooth_no_growth(h, rng):
    phase = ((h + 2.0) % 6.0) / 6.0  # a rotation every 6 h: each tooth climbs 20% of the disk
    return 75.0 + 20.0 * (phase - 0.5) + _noise(rng, h.size, 0.05)


def _batch_and_cleanup(h, rng):
    since_cleanup = (h + 5.0) % 24.0  # cleanup daily at 19:00 (scenario time)
    batches = np.floor(since_cleanup / 3.0)  # a batch job every 3 h writes ~4% in about ten minutes
    partial = np.clip((since_cleanup % 3.0) / (10 / 60), 0.0, 1.0)
    return 55.0 + 4.0 * (batches + partial) + _noise(rng, h.size, 0.1)


def _weekly_seasonal(h, rng):
    day = np.floor((h + 3 * 24.0) / 24.0) % 7  # T0 is a Thursday: day 0 = Monday
    weekend = day >= 5
    hour = h % 24.0
    daily = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)  # busy from 06:00 to 18:00
    return np.where(weekend, 68.0 + 4.0 * daily, 74.0 + 17.0 * daily) + _noise(rng, h.size, 0.3)


def _gc_sawtooth(base: float, leak_per_h: float, amplitude: float, period_min: float):
    def pct(h, rng):
        phase = (h * 60.0 % period_min) / period_min
        return base + leak_per_h * h + amplitude * phase + _noise(rng, h.size, 0.2)
    return pct


def _fill_then_stop(h, rng):
    return 30.0 + 1.5 * np.minimum(h, 40.0) + _noise(rng, h.size, 0.05)


SCENARIOS: tuple[ResourceScenario, ...] = (
    ResourceScenario("linear_fill", "filesystem", 3, 100 * GiB, _linear, True,
                     "steady fill, 1% of the disk per hour from 50%"),
    ResourceScenario("accelerating_fill", "filesystem", 3.5, 100 * GiB, _accelerating, True,
                     "fill that speeds up (quadratic) from 40%"),
    ResourceScenario("logrotate_net_growth", "filesystem", 6, 100 * GiB, _daily_rotation(45.0, 10.0, 15.0, 9.0),
                     True, "daily log rotation sawtooth (15% per tooth) with 10%/day net growth"),
    ResourceScenario("logrotate_no_growth", "filesystem", 5, 100 * GiB, _sawtooth_no_growth, False,
                     "rotation every 6 h, each tooth climbing 20% of the disk, no net growth"),
    ResourceScenario("batch_writes_cleanup", "filesystem", 5, 100 * GiB, _batch_and_cleanup, False,
                     "batch jobs write 4% every 3 h, a daily cleanup takes it back to 55%"),
    ResourceScenario("weekly_seasonal", "filesystem", 21, 100 * GiB, _weekly_seasonal, False,
                     "daily and weekly cycle peaking at 91% on weekdays, no growth"),
    ResourceScenario("memory_leak_gc", "memory", 3, 16 * GiB, _gc_sawtooth(40.0, 1.0, 10.0, 7.0), True,
                     "leak of 1% per hour under a 7-minute GC sawtooth of 10%"),
    ResourceScenario("stable_high_memory", "memory", 4, 16 * GiB, _gc_sawtooth(83.0, 0.0, 10.0, 7.0), False,
                     "memory at 83-93% with a GC sawtooth, no growth"),
    ResourceScenario("fill_stops_halfway", "filesystem", 4, 100 * GiB, _fill_then_stop, False,
                     "fills 1.5%/h for 40 h (30% to 90%), then stops", stops_growing_at_h=40.0),
)


def by_name(name: str) -> ResourceScenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"unknown scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")
