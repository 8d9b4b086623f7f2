"""Features of one series over one event-time window, from the window's samples.

The primary ``value`` (what detectors score) is the mean for gauges, the rate per second for counters and deltas,
and p99 for histograms. Features that do not apply are NaN (null on the wire).
"""

from __future__ import annotations

import math

import numpy as np

from udfs import histogram

FEATURE_NAMES = ("mean", "min", "max", "last", "sum", "rate", "p50", "p95", "p99", "obs_count")


def counter_increase(values: np.ndarray) -> float:
    """Total increase of a cumulative counter, treating a decrease as a reset to zero."""
    if values.size < 2:
        return math.nan
    diffs = np.diff(values)
    return float(np.where(diffs >= 0, diffs, values[1:]).sum())


def window_features(mtype: str, ts: np.ndarray, values: np.ndarray | None, merged: np.ndarray | None,
                    hist_sums: np.ndarray | None, window_ms: int) -> tuple[float, dict]:
    """Return ``(value, features)`` for samples ``ts`` (sorted) of a series of type ``mtype``; a histogram series
    gives its samples' histograms merged bucket by bucket (:func:`udfs.histogram.merge`) and their sums."""
    nan = math.nan
    f = dict.fromkeys(FEATURE_NAMES, nan)
    f["obs_count"] = None
    window_s = window_ms / 1000.0
    if mtype == "histogram":
        merged = np.zeros(0) if merged is None else merged
        obs = int(merged.sum())
        f["obs_count"] = obs
        total = float(hist_sums.sum()) if hist_sums is not None else nan
        f["sum"] = total
        f["rate"] = obs / window_s
        if obs > 0:
            f["mean"] = total / obs
            f["p50"] = histogram.quantile(merged, 0.50)
            f["p95"] = histogram.quantile(merged, 0.95)
            f["p99"] = histogram.quantile(merged, 0.99)
            # the observed range is only known to bucket resolution
            nz = np.flatnonzero(merged)
            f["min"] = histogram.bucket_bounds(int(nz[0]))[0]
            f["max"] = histogram.bucket_bounds(int(nz[-1]))[1]
        return f["p99"], f
    assert values is not None
    f["mean"] = float(values.mean())
    f["min"] = float(values.min())
    f["max"] = float(values.max())
    f["last"] = float(values[-1])
    f["sum"] = float(values.sum())
    if mtype == "delta":
        f["rate"] = f["sum"] / window_s
        return f["rate"], f
    if mtype == "counter":
        span_s = (ts[-1] - ts[0]) / 1000.0 if ts.size > 1 else 0.0
        inc = counter_increase(values)
        f["rate"] = inc / span_s if span_s > 0 else nan
        return f["rate"], f
    return f["mean"], f


def finite_or_none(x):
    """NaN/inf -> None for JSON output (the contract uses null, never NaN)."""
    if x is None:
        return None
    return x if math.isfinite(x) else None
