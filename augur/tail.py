"""``augur tail TOPIC``: follow an output topic and print its records for people (or as JSON lines)."""

from __future__ import annotations

import sys

import orjson

from augur.consume import follow
from augur.timeparse import format_ms
from schemas import topics


def format_record(topic: topics.Topic, rec: dict) -> str:
    if topic is topics.ANOMALIES:
        return (f"{format_ms(rec['window_start'])}  ANOMALY  {rec['host']:<10} score={rec['score']:.2f}  "
                f"{rec['explanation']}")
    if topic is topics.FORECASTS:
        if rec["state"] == "active":
            when = format_ms(rec["exhaustion_ts"]) if rec.get("exhaustion_ts") is not None else "?"
            lo = format_ms(rec["exhaustion_lower_ts"]) if rec.get("exhaustion_lower_ts") is not None else "?"
            return (f"{format_ms(rec['ts'])}  FORECAST {rec['host']:<10} full at {when} (earliest {lo})  "
                    f"{rec.get('explanation', rec['resource'])}")
        return f"{format_ms(rec['ts'])}  RETRACTED {rec['host']:<10} {rec.get('explanation', rec['resource'])}"
    if topic is topics.DEADLETTER:
        return f"{format_ms(rec['ts'])}  DEAD-LETTER  reason={rec['reason']}  {rec['detail']}"
    if topic is topics.PROFILES:
        top = rec["stacks"][0]  # the most frequent
        return (f"{format_ms(rec['ts'])}  PROFILE  {rec['host']:<10} {rec['comm']}[{rec['pid']}] "
                f"{rec['samples'] / rec['hz']:.2f} s on CPU in {rec['interval_ms'] / 1000:g} s; hottest stack "
                f"({top['count']} of {rec['samples']} samples) ends {';'.join(top['frames'][-3:])}")
    if topic is topics.FEATURES:
        return (f"{format_ms(rec['window_start'])}  {rec['host']:<10} {rec['metric']} {rec['attrs']} "
                f"value={rec['value']} n={rec['count']}")
    return orjson.dumps(rec).decode()


def tail(bootstrap: str, topic: topics.Topic, from_beginning: bool, as_json: bool, max_seconds: float | None,
         out=sys.stdout) -> int:
    n = 0
    for rec, raw in follow(bootstrap, topic, from_beginning=from_beginning, stop_after_s=max_seconds):
        if rec is None:
            print(f"(a message that breaks the {topic.name} contract: {raw[:200]!r})", file=out, flush=True)
            continue
        print(orjson.dumps(rec).decode() if as_json else format_record(topic, rec), file=out, flush=True)
        n += 1
    return n
