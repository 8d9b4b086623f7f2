"""Building ``augur.telemetry.v1``, ``augur.events.v1`` and ``augur.profiles.v1`` records: one place for their shape
on the producer side."""

from __future__ import annotations

from typing import Sequence

from augur import __version__


def producer(name: str) -> dict:
    return {"name": name, "version": __version__}


def sample(producer_: dict, host: str, ts: int, interval_ms: int, metric: str, mtype: str, unit: str,
           attrs: dict, **fields) -> dict:
    """A telemetry record; ``fields`` are ``value=`` (gauge, counter, delta), ``hist=`` (histogram), ``capacity=``."""
    return {"v": 1, "ts": ts, "host": host, "producer": producer_, "metric": metric, "unit": unit, "type": mtype,
            "attrs": attrs, "interval_ms": interval_ms, **fields}


def hist_from_slots(slots: Sequence[int], total: float) -> dict | None:
    """The telemetry ``hist`` object of log2 bucket counts (trailing empty buckets dropped); None if empty."""
    counts = list(slots)
    while counts and counts[-1] == 0:
        counts.pop()
    if not counts:
        return None
    return {"counts": [int(c) for c in counts], "count": int(sum(counts)), "sum": float(total)}


def event(producer_: dict, host: str, ts: int, name: str, attrs: dict, **fields) -> dict:
    """An events record; ``fields`` are ``pid=``, ``comm=``, ``cgroup=``."""
    return {"v": 1, "ts": ts, "host": host, "producer": producer_, "event": name, "attrs": attrs,
            **{k: v for k, v in fields.items() if v is not None}}


def profile(producer_: dict, host: str, ts: int, interval_ms: int, hz: int, pid: int, comm: str, cgroup: str,
            stacks: Sequence[tuple[Sequence[str], int]]) -> dict:
    """A profiles record: one process's sampled stacks over the interval, each ``(frames root first, count)``."""
    return {"v": 1, "ts": ts, "host": host, "producer": producer_, "interval_ms": interval_ms, "hz": hz, "pid": pid,
            "comm": comm, "cgroup": cgroup, "samples": sum(n for _, n in stacks),
            "stacks": [{"frames": list(frames), "count": n} for frames, n in stacks]}
