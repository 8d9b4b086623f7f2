"""Event counts that stay reported while nothing happens.

An in-kernel aggregate only holds keys that saw an event, so a collector that reports what it drained says nothing
about a count that was 0: the series of a route's 5xx answers, or of a port's retransmits, would appear for the
first time in the middle of a fault, with no history for a detector to judge it against. A collector that knows
which counts exist (a port's four TCP counters, a route's four status classes) declares them; this module then
reports every declared or recently seen count as 0 in the intervals without events, until it has been quiet for
``collect.zero-fill-ms`` (the way a Prometheus counter, once created, stays exported).

Only ``delta`` counts whose absence means zero belong here: never a histogram (no observation is not a latency of
0), nor a per-process figure capped to the top processes (a process missing from the top was not idle).
"""

from __future__ import annotations

from collectors import samples

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(metric: str, attrs: dict) -> SeriesKey:
    return metric, tuple(sorted(attrs.items()))


class QuietCounts:
    """The count series one collector reports as 0 while quiet; at most ``max_series`` of them (the ones with the
    oldest activity are dropped first)."""

    def __init__(self, producer: dict, host: str, hold_ms: int, max_series: int):
        self.producer, self.host = producer, host
        self.hold_ms, self.max_series = hold_ms, max_series
        self._series: dict[SeriesKey, tuple[int, str]] = {}    # -> (last event or declaration time, unit)

    def __len__(self) -> int:
        return len(self._series)

    def declare(self, ts_ms: int, metric: str, unit: str, attrs: dict) -> None:
        """``metric`` with ``attrs`` exists as of ``ts_ms`` (it had an event, or a sibling of it did)."""
        if self.hold_ms:
            self._series[series_key(metric, attrs)] = (ts_ms, unit)

    def fill(self, out: list[dict], ts_ms: int, interval_ms: int) -> list[dict]:
        """``out`` (this interval's samples), every delta count in it declared, plus a 0 sample for each declared
        series active within the hold and absent from ``out``."""
        if not self.hold_ms:
            return out
        present = set()
        for s in out:
            if s["type"] == "delta":
                key = series_key(s["metric"], s["attrs"])
                present.add(key)
                self._series[key] = (ts_ms, s["unit"])
        self._forget(ts_ms)
        zeros = [samples.sample(self.producer, self.host, ts_ms, interval_ms, metric, "delta", unit, dict(attrs),
                                value=0)
                 for (metric, attrs), (_, unit) in self._series.items() if (metric, attrs) not in present]
        return out + zeros

    def _forget(self, ts_ms: int) -> None:
        stale = [k for k, (seen, _) in self._series.items() if ts_ms - seen > self.hold_ms]
        for k in stale:
            del self._series[k]
        if len(self._series) > self.max_series:
            by_age = sorted(self._series, key=lambda k: self._series[k][0])
            for k in by_age[:len(self._series) - self.max_series]:
                del self._series[k]
