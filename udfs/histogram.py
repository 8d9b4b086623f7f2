"""Log2 histograms as the eBPF collectors produce them: bucket i holds values in [2^i, 2^(i+1)), bucket 0 [0, 2)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def bucket_bounds(i: int) -> tuple[float, float]:
    if i == 0:
        return 0.0, 2.0
    return float(2.0 ** i), float(2.0 ** (i + 1))


@njit(cache=True)
def quantile(counts: np.ndarray, q: float) -> float:
    """The q-quantile of a log2 histogram, interpolated linearly inside the bucket; NaN when empty."""
    total = 0.0
    for c in counts:
        total += c
    if total <= 0.0:
        return np.nan
    rank = q * total
    seen = 0.0
    for i in range(counts.shape[0]):
        c = counts[i]
        if c > 0 and seen + c >= rank:
            lo, hi = bucket_bounds(i)
            frac = (rank - seen) / c
            return lo + (hi - lo) * frac
        seen += c
    lo, hi = bucket_bounds(counts.shape[0] - 1)
    return hi


def merge(histograms: list[list[int]]) -> np.ndarray:
    """Element-wise sum of histograms of different lengths."""
    width = max((len(h) for h in histograms), default=0)
    out = np.zeros(width, dtype=np.float64)
    for h in histograms:
        out[: len(h)] += h
    return out
