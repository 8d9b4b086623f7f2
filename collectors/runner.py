"""Running collectors: flush every interval, forward events as they come, publish the collectors' own health.
``augur collect`` and ``augur record`` are thin wrappers around :func:`run`."""

from __future__ import annotations

import importlib
import socket
import time
from typing import Callable

from augur.config import Config
from augur.timeparse import now_ms
from collectors import samples
from collectors.base import Collector
from collectors.output import Output
from collectors.selfmetrics import SelfMetrics
from infra import ebpf

SELF_PRODUCER = samples.producer("augur-collector")


# signal -> the collector class that loads it, imported only when that signal is asked for
SIGNALS: dict[str, str] = {
    "cpu": "collectors.cpu:CpuCollector",
    "blockio": "collectors.blockio:BlockIoCollector",
    "tcp": "collectors.tcp:TcpCollector",
    "http": "collectors.http:HttpCollector",
    "process": "collectors.process:ProcessCollector",
    "host": "collectors.host:HostCollector",
    "profile": "collectors.profile:ProfileCollector",
}


def collector_class(name: str) -> Callable[[Config, str], Collector]:
    module, _, cls = SIGNALS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def host_name(cfg: Config) -> str:
    return cfg["collect.host"] or socket.gethostname()


def parse_signals(text: str | None) -> list[str]:
    names = list(SIGNALS) if not text or text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown signal(s) {', '.join(unknown)}; choose from {', '.join(SIGNALS)} or all")
    return names


def open_collectors(cfg: Config, names: list[str]) -> list[Collector]:
    """Load the collectors' programs into the kernel; one clear error if eBPF cannot be used here."""
    ebpf.prepare()
    host = host_name(cfg)
    opened: list[Collector] = []
    try:
        for name in names:
            opened.append(collector_class(name)(cfg, host))
    except Exception:
        for c in opened:
            c.close()
        raise
    return opened


class Runner:
    def __init__(self, collectors: list[Collector], telemetry: Output, events: Output, cfg: Config,
                 metrics: SelfMetrics | None = None, profiles: Output | None = None):
        if profiles is None and any(c.name == "profile" for c in collectors):
            raise ValueError("the profile signal needs an output for augur.profiles.v1")
        self.collectors, self.telemetry, self.events, self.profiles = collectors, telemetry, events, profiles
        self.interval_ms = cfg["collect.interval-ms"]
        self.host = host_name(cfg)
        self.metrics = metrics or SelfMetrics()
        self._last_flush = now_ms()

    def poll_events(self) -> None:
        for c in self.collectors:
            for e in c.poll_events():
                self.events.write(e)
                self.metrics.add("events", 1, collector=c.name)

    def flush(self) -> None:
        ts = now_ms()
        interval = max(ts - self._last_flush, 1)
        self._last_flush = ts
        self.poll_events()
        for c in self.collectors:
            out = c.collect(ts, interval)
            for s in out:
                self.telemetry.write(s)
            self.metrics.add("samples", len(out), collector=c.name)
            records = c.profiles()
            for p in records:
                self.profiles.write(p)
            self.metrics.add("profiles", len(records), collector=c.name)
            for name, count in c.health().items():
                self.metrics.add(name, count, collector=c.name)
        for output in self.outputs():
            self.metrics.set_total("dropped", output.dropped, topic=output.topic.name)
        for name, labels, delta in self.metrics.deltas():
            self.telemetry.write(samples.sample(SELF_PRODUCER, self.host, ts, interval, f"augur.collector.{name}",
                                                "delta", "1", labels, value=delta))

    def outputs(self) -> list[Output]:
        return [o for o in (self.telemetry, self.events, self.profiles) if o is not None]

    def run(self, stop: Callable[[], bool] = lambda: False, duration_s: float | None = None,
            poll_s: float = 0.1) -> None:
        t0 = time.monotonic()
        try:
            while not stop() and (duration_s is None or time.monotonic() - t0 < duration_s):
                time.sleep(poll_s)
                self.poll_events()
                if now_ms() - self._last_flush >= self.interval_ms:
                    self.flush()
        finally:
            self.flush()  # the partial last interval is published too
            for output in self.outputs():
                output.flush()

    def close(self) -> None:
        for c in self.collectors:
            c.close()  # detaches every program from the kernel
