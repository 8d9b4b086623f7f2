"""Playing synthetic telemetry into an output at a controlled pace.

With ``speed`` S, S seconds of event time pass per wall-clock second, but never beyond the wall clock: a run that
starts in the past catches up at S x, then continues in real time. ``speed=None`` writes as fast as possible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from augur.timeparse import now_ms
from collectors.output import Output
from collectors.synthetic import SyntheticTelemetry


@dataclass
class RunStats:
    samples: int = 0
    steps: int = 0
    last_ts: int | None = None


def play(gen: SyntheticTelemetry, out: Output, start_ms: int, end_ms: int | None, speed: float | None,
         stop=lambda: False, clock=now_ms, sleep=time.sleep) -> RunStats:
    stats = RunStats()
    wall0 = clock()
    t = gen.align(start_ms)
    if t < start_ms:
        t += gen.interval_ms
    while (end_ms is None or t < end_ms) and not stop():
        if speed is not None:
            due = wall0 + (t - start_ms) / speed  # wall time at which event time t is due
            while not stop():
                wait_ms = max(due, t) - clock()   # never emit a sample stamped in the future
                if wait_ms <= 0:
                    break
                sleep(min(wait_ms / 1000.0, 0.5))
            if stop():
                break
        for sample in gen.samples_at(t):
            out.write(sample)
            stats.samples += 1
        stats.steps += 1
        stats.last_ts = t
        t += gen.interval_ms
    out.flush()
    return stats
