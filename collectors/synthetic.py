"""Deterministic synthetic host telemetry: the signals the eBPF collectors emit, with seasonality, noise, bursts
and injectable labelled faults (see :mod:`collectors.faults`).

Every sample is a pure function of ``(seed, host index, step)``, so any time range can be regenerated exactly,
in any order, and replayed into Kafka or written to files for backfills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from collectors import samples
from collectors.faults import Fault
from schemas import series

PRODUCER = samples.producer("augur-synthetic")
DAY_MS = 86_400_000
GIB = 1 << 30
N_LOG2_BUCKETS = 28  # 2^28 us ~ 4.5 min: ample for latencies

# (service, route, base request rate per second, median latency in microseconds)
HTTP_ROUTES = (("shop", "/api/orders", 40.0, 25_000.0), ("shop", "/static/{path}", 80.0, 2_000.0))
MEMORY_CAPACITY = 16 * GIB
FS_CAPACITY = 100 * GIB
_LOG2_EDGES = np.log(2.0 ** np.arange(1, N_LOG2_BUCKETS))  # ln of the upper edge of buckets 0..N-2


def log2_histogram(rng: np.random.Generator, n: int, median: float, sigma: float) -> dict:
    """``n`` log-normal observations binned in log2 buckets, as the telemetry ``hist`` object."""
    z = (_LOG2_EDGES - math.log(median)) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(v) for v in z]))
    probs = np.diff(np.concatenate(([0.0], cdf, [1.0])))
    counts = rng.multinomial(max(n, 0), probs)
    nz = np.flatnonzero(counts)
    counts = counts[: nz[-1] + 1] if nz.size else counts[:1]
    mids = 1.5 * 2.0 ** np.arange(counts.size)
    mids[0] = 1.0
    return {"counts": counts.tolist(), "count": int(counts.sum()), "sum": float(counts @ mids)}


@dataclass
class SyntheticTelemetry:
    """N hosts of telemetry every ``interval_ms``; ``faults`` disturb the series they name."""

    hosts: int = 3
    seed: int = 0
    interval_ms: int = 10_000
    faults: list[Fault] = field(default_factory=list)
    host_prefix: str = "host-"

    def __post_init__(self):
        if self.hosts < 1:
            raise ValueError("hosts must be >= 1")
        self.host_names = [f"{self.host_prefix}{i + 1}" for i in range(self.hosts)]
        self._faults_by_host: dict[str, list[Fault]] = {}
        for f in self.faults:
            if f.host not in self.host_names:
                raise ValueError(f"fault {f.kind} names host {f.host!r}, not one of {self.host_names}")
            self._faults_by_host.setdefault(f.host, []).append(f)

    def align(self, t_ms: int) -> int:
        return t_ms - t_ms % self.interval_ms

    def iter_range(self, start_ms: int, end_ms: int) -> Iterator[list[dict]]:
        """One list of samples (all hosts) per step in ``[start_ms, end_ms)``."""
        t = self.align(start_ms)
        if t < start_ms:
            t += self.interval_ms
        while t < end_ms:
            yield self.samples_at(t)
            t += self.interval_ms

    def samples_at(self, t_ms: int) -> list[dict]:
        out: list[dict] = []
        for i, host in enumerate(self.host_names):
            out.extend(self._host_samples(i, host, t_ms))
        return out

    def _effect(self, host: str, kind: str, t_ms: int) -> tuple[bool, float, float]:
        """(active, magnitude, progress) of the host's fault of this kind at t."""
        for f in self._faults_by_host.get(host, ()):
            if f.kind == kind and f.active(t_ms):
                return True, f.magnitude, f.progress(t_ms)
        return False, 0.0, 0.0

    def _host_samples(self, idx: int, host: str, t: int) -> list[dict]:
        step = t // self.interval_ms
        # one independent stream per signal, so a fault on one signal never changes another signal's noise
        streams = iter(np.random.SeedSequence([self.seed, idx, step]).spawn(8 + 3 * len(HTTP_ROUTES)))

        def rng_next() -> np.random.Generator:
            return np.random.Generator(np.random.PCG64(next(streams)))
        dt = self.interval_ms / 1000.0
        phase = 2 * math.pi * ((t % DAY_MS) / DAY_MS) + 0.4 * idx
        load = 0.5 - 0.35 * math.cos(phase)  # daily cycle, peak mid-day, in [0.15, 0.85]

        def sample(metric: str, mtype: str, unit: str, attrs: dict, **kw) -> dict:
            return samples.sample(PRODUCER, host, t, self.interval_ms, metric, mtype, unit, attrs, **kw)

        out = []
        # CPU: utilisation and run-queue latency
        rng = rng_next()
        cpu = 0.08 + 0.45 * load + rng.normal(0, 0.02)
        if rng.random() < 0.005:  # a short, normal burst
            cpu += rng.uniform(0.03, 0.08)
        hog, mag, _ = self._effect(host, "cpu_hog", t)
        if hog:
            cpu = max(cpu, 0.96 + rng.normal(0, 0.01))
        cpu = min(max(cpu, 0.0), 1.0)
        out.append(sample("system.cpu.utilization", "gauge", "1", {}, value=round(cpu, 5)))
        rng = rng_next()
        runq_median = 15.0 * (1 + 3 * cpu * cpu) * (8.0 * max(mag, 0.1) if hog else 1.0)
        out.append(sample("ebpf.runqueue.latency", "histogram", "us", {},
                          hist=log2_histogram(rng, int(2000 * (0.5 + load)), runq_median, 0.8)))
        # block I/O
        rng = rng_next()
        fill, fill_mag, fill_progress = self._effect(host, "disk_fill", t)
        io_n = int(200 * (0.5 + load)) * (4 if fill else 1)
        io_median = 400.0 * (2.5 if fill else 1.0)
        out.append(sample("ebpf.block.io.latency", "histogram", "us", {"device": "vda"},
                          hist=log2_histogram(rng, io_n, io_median, 0.6)))
        # TCP retransmits
        storm, storm_mag, _ = self._effect(host, "retransmit_storm", t)
        rng = rng_next()
        retrans = rng.poisson(dt * 0.05 * (0.5 + load)) + rng.poisson(dt * 5.0 * storm_mag if storm else 0.0)
        out.append(sample("ebpf.tcp.retransmits", "delta", "{segment}", {}, value=int(retrans)))
        # HTTP server requests, per route: latency histogram and counts per status class
        slow, slow_mag, _ = self._effect(host, "latency_regression", t)
        burst, burst_mag, _ = self._effect(host, "error_burst", t)
        for service, route, base_rate, median in HTTP_ROUTES:
            rate = base_rate * (0.3 + load)
            primary = route == HTTP_ROUTES[0][1]
            lat_median = median * (4.0 * slow_mag if slow and primary else 1.0)
            attrs = {"service": service, "http.route": route}
            n = rng_next().poisson(rate * dt)
            out.append(sample("http.server.request.duration", "histogram", "us", attrs,
                              hist=log2_histogram(rng_next(), n, lat_median, 0.5)))
            err = min(0.25 * burst_mag, 0.9) if burst and primary else 0.002
            n5 = int(rng_next().binomial(n, err))
            out.append(sample("http.server.requests", "delta", "{request}", {**attrs, series.HTTP_STATUS_CLASS: "2xx"},
                              value=int(n - n5)))
            out.append(sample("http.server.requests", "delta", "{request}", {**attrs, series.HTTP_STATUS_CLASS: "5xx"},
                              value=n5))
        # memory
        leak, leak_mag, leak_progress = self._effect(host, "memory_leak", t)
        rng = rng_next()
        mem = MEMORY_CAPACITY * (0.40 + 0.08 * load + rng.normal(0, 0.004)
                                 + (0.45 * leak_mag * leak_progress if leak else 0.0))
        out.append(sample("system.memory.usage", "gauge", "By", {"state": "used"},
                          value=float(round(min(mem, MEMORY_CAPACITY))), capacity=float(MEMORY_CAPACITY)))
        # filesystem: slow growth with a daily log-rotation sawtooth, plus the disk_fill fault
        day_frac = (t % DAY_MS) / DAY_MS
        rng = rng_next()
        fs = FS_CAPACITY * (0.50 + 0.002 * (t / DAY_MS % 30) + 0.01 * day_frac + rng.normal(0, 0.0002)
                            + (0.45 * fill_mag * fill_progress if fill else 0.0))
        out.append(sample("system.filesystem.usage", "gauge", "By", {"mountpoint": "/", "state": "used"},
                          value=float(round(min(fs, FS_CAPACITY))), capacity=float(FS_CAPACITY)))
        return out
