"""Parsing the times users type: ``now``, ``now-6h``, ISO 8601, or epoch milliseconds."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from collectors.faults import parse_duration_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_time_ms(text: str, now: int | None = None) -> int:
    now = now_ms() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("now-"):
        return now - parse_duration_ms(text[4:])
    if text.startswith("now+"):
        return now + parse_duration_ms(text[4:])
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}: use now, now-6h, an ISO 8601 time or epoch milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_duration_ms(ms: float) -> str:
    """A span for people: ``"42 s"``, ``"17 min"``, ``"5.3 h"``, ``"3.2 d"``."""
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} d"
