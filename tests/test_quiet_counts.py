"""Counts reported as 0 while quiet (collectors/quiet_counts.py), without the kernel: what the TCP and HTTP
collectors add to what they drained."""

from __future__ import annotations

from collectors import samples
from collectors.quiet_counts import QuietCounts
from schemas import codec, topics

PRODUCER = samples.producer("test")


def count(ts, metric, value, **attrs):
    return samples.sample(PRODUCER, "h", ts, 1000, metric, "delta", "{event}", attrs, value=value)


def values(out, metric, **attrs):
    return [s["value"] for s in out if s["metric"] == metric and s["attrs"] == attrs]


def test_a_declared_count_is_zero_until_its_first_event_and_after_it_while_held():
    q = QuietCounts(PRODUCER, "h", hold_ms=5000, max_series=100)
    q.declare(1000, "app.errors", "{event}", {"route": "/a"})
    out = q.fill([count(1000, "app.requests", 7, route="/a")], 1000, 1000)
    assert values(out, "app.errors", route="/a") == [0] and values(out, "app.requests", route="/a") == [7]
    for s in out:
        codec.validate(topics.TELEMETRY.name, s)
    out = q.fill([count(2000, "app.errors", 3, route="/a")], 2000, 1000)
    assert values(out, "app.errors", route="/a") == [3]          # an event: its own sample, no zero beside it
    assert values(out, "app.requests", route="/a") == [0]
    out = q.fill([], 6000, 1000)                              # 5 s after the last request: still held
    assert sorted(s["metric"] for s in out) == ["app.errors", "app.requests"]
    assert [s["metric"] for s in q.fill([], 7000, 1000)] == ["app.errors"]    # quiet longer than the hold
    assert q.fill([], 7500, 1000) == [] and len(q) == 0


def test_only_delta_counts_are_filled():
    q = QuietCounts(PRODUCER, "h", hold_ms=5000, max_series=100)
    gauge = samples.sample(PRODUCER, "h", 0, 1000, "app.cpu", "gauge", "1", {}, value=0.5)
    hist = samples.sample(PRODUCER, "h", 0, 1000, "app.latency", "histogram", "us", {},
                          hist=samples.hist_from_slots([1, 2], 30.0))
    q.fill([gauge, hist, count(0, "app.requests", 1)], 0, 1000)
    assert [s["metric"] for s in q.fill([], 1000, 1000)] == ["app.requests"]


def test_a_hold_of_zero_reports_only_what_had_events():
    q = QuietCounts(PRODUCER, "h", hold_ms=0, max_series=100)
    q.declare(0, "app.errors", "{event}", {})
    drained = [count(0, "app.requests", 1)]
    assert q.fill(drained, 0, 1000) == drained and q.fill([], 1000, 1000) == []


def test_the_series_with_the_oldest_activity_go_first_beyond_the_bound():
    q = QuietCounts(PRODUCER, "h", hold_ms=60_000, max_series=2)
    for t, port in ((0, "a"), (1000, "b"), (2000, "c")):
        q.fill([count(t, "tcp.retransmits", 1, port=port)], t, 1000)
    assert sorted(s["attrs"]["port"] for s in q.fill([], 3000, 1000)) == ["b", "c"]
