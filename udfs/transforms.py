"""Variance-stabilising transforms applied before scoring, chosen by the series type.

Latency quantiles vary multiplicatively (log2), event counts like Poisson counts (square root of the count in the
window, whose noise is ~0.5 whatever the rate), gauges additively. Each returns the transformed value and the
smallest scale (rel_floor * |median|, abs_floor) at which the detector still trusts a difference.
"""

from __future__ import annotations

import math

# type -> (rel_floor, abs_floor) on the transformed scale
SCALE_FLOORS = {"gauge": (1e-3, 0.0), "histogram": (0.0, 0.1), "delta": (0.0, 0.5), "counter": (0.0, 0.5)}


def stabilize(mtype: str, value: float, window_ms: int) -> float:
    if value != value:  # NaN
        return value
    if mtype == "histogram":
        return math.log2(max(value, 1.0))
    if mtype in ("delta", "counter"):
        return math.sqrt(max(value, 0.0) * window_ms / 1000.0)
    return value


def unstabilize(mtype: str, y: float, window_ms: int) -> float:
    """Inverse of :func:`stabilize`, to explain a verdict in the series' own units."""
    if y != y:
        return y
    if mtype == "histogram":
        return 2.0 ** y
    if mtype in ("delta", "counter"):
        return y * y / (window_ms / 1000.0)
    return y
