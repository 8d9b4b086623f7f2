"""Online calibration of a detector's raw score to [0, 1]: the score's rank among its own history.

A raw score (>= 0, higher = more anomalous, e.g. |z|) is placed in one of ``n_bins`` log-spaced bins between
``lo`` and ``hi`` (below ``lo`` -> bin 0, above ``hi`` -> last bin). The state ``[total, max_seen, count_0 ..]``
keeps the bin counts. The calibrated score is the fraction of past scores below it (half of its own bin's), so
"0.999" means "higher than 99.9% of this detector's scores on this series", comparable across series and detectors.
The counts are kept as a Fenwick tree, so ranking and learning cost O(log n_bins).
A score above everything seen so far extrapolates the tail as a Pareto tail of index ``tail_index``:
``1 - 0.5 / (total + 1) * (max_seen / raw) ** tail_index``, so a score three times the largest one seen is far
more certain than one just above it, and a short history can still give a confident verdict for a gross outlier. Counts are halved when ``total`` reaches
``max_total`` so the calibration follows a slowly changing series. With fewer than ``min_total`` past scores the
result is NaN (warm-up). The score is ranked before it is learned.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TOTAL, MAX_SEEN = 0, 1
HEADER = 2


@njit(cache=True)
def init_state(n_bins: int) -> np.ndarray:
    state = np.zeros(HEADER + n_bins)
    state[MAX_SEEN] = -np.inf
    return state


@njit(cache=True)
def bin_of_logs(raw: float, n_bins: int, lo: float, hi: float, log_lo: float, log_hi: float) -> int:
    """The bin of ``raw`` between the edges ``lo`` and ``hi``, given their logs (the ensemble takes them once per
    point for its six calibrators)."""
    if raw <= lo:
        return 0
    if raw >= hi:
        return n_bins - 1
    return 1 + int((np.log(raw) - log_lo) / (log_hi - log_lo) * (n_bins - 2))


@njit(cache=True)
def _below(tree: np.ndarray, b: int) -> float:
    """Total count of bins 0 .. b-1."""
    total = 0.0
    i = b
    while i > 0:
        total += tree[i - 1]
        i -= i & -i
    return total


@njit(cache=True)
def _add(tree: np.ndarray, b: int, amount: float) -> None:
    i = b + 1
    n = tree.shape[0]
    while i <= n:
        tree[i - 1] += amount
        i += i & -i


@njit(cache=True)
def step(state: np.ndarray, raw: float, lo: float, hi: float, min_total: int, max_total: float,
         tail_index: float) -> float:
    return step_logs(state, raw, lo, hi, np.log(lo), np.log(hi), min_total, max_total, tail_index)


@njit(cache=True)
def step_logs(state: np.ndarray, raw: float, lo: float, hi: float, log_lo: float, log_hi: float, min_total: int,
              max_total: float, tail_index: float) -> float:
    """:func:`step` with the logs of ``lo`` and ``hi`` given."""
    if np.isnan(raw):
        return np.nan
    tree = state[HEADER:]
    n_bins = tree.shape[0]
    b = bin_of_logs(raw, n_bins, lo, hi, log_lo, log_hi)
    total = state[TOTAL]
    p = np.nan
    if total >= min_total:
        if raw > state[MAX_SEEN]:
            ratio = state[MAX_SEEN] / raw if state[MAX_SEEN] > 0 else 0.0
            p = 1.0 - 0.5 / (total + 1.0) * ratio ** tail_index
        else:
            below = _below(tree, b)
            p = (below + 0.5 * (_below(tree, b + 1) - below)) / (total + 1.0)
    _add(tree, b, 1.0)
    state[TOTAL] = total + 1.0
    if raw > state[MAX_SEEN]:
        state[MAX_SEEN] = raw
    if state[TOTAL] >= max_total:
        tree *= 0.5                      # halves every prefix sum: a Fenwick tree is linear in its counts
        state[TOTAL] *= 0.5
    return p
