"""Online calibration of a detector's raw score to [0, 1]: the score's rank among its own history.

A raw score (>= 0, higher = more anomalous, e.g. |z|) is placed in one of ``n_bins`` log-spaced bins between ``lo``
and ``hi`` (below ``lo`` -> bin 0, above ``hi`` -> last bin), by counting the bin edges at or below it
(:func:`edges`, taken once per parameter set), which costs less than a log per score. The state ``[total, max_seen,
cum_0 ..]`` keeps the bins' cumulative counts (``cum_k``: past scores in bins 0 .. k). The calibrated score is the
fraction of past scores below it (half of its own bin's), so "0.999" means "higher than 99.9% of this detector's
scores on this series", comparable across series and detectors. Ranking reads two counts; learning adds 1 to the
counts from the score's bin on, a loop of fixed length with no branch that compiles to SIMD adds (it replaced a
Fenwick tree, whose walks of data-dependent length cost more: ensemble layout 1 held one, see
:func:`cumulative_from_fenwick`). A score above everything seen so far extrapolates the tail as a Pareto tail of
index ``tail_index``: ``1 - 0.5 / (total + 1) * (max_seen / raw) ** tail_index``, so a score three times the largest
one seen is far more certain than one just above it, and a short history can still give a confident verdict for a
gross outlier. Counts are halved when ``total`` reaches ``max_total`` so the calibration follows a slowly changing
series. With fewer than ``min_total`` past scores the result is NaN (warm-up). The score is ranked before it is
learned.
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
def edges(n_bins: int, lo: float, hi: float) -> np.ndarray:
    """The ``n_bins - 3`` edges between the bins 1 .. ``n_bins - 2``, log-spaced from ``lo`` to ``hi`` (bin 0 holds
    what is at or below ``lo``, the last bin what is at or above ``hi``). Taken once per parameter set: the ensemble
    keeps them in its parameter array."""
    out = np.empty(max(n_bins - 3, 0))
    log_lo, log_hi = np.log(lo), np.log(hi)
    for j in range(out.shape[0]):
        out[j] = np.exp(log_lo + (j + 1) / (n_bins - 2) * (log_hi - log_lo))
    return out


@njit(cache=True, inline="always")
def bin_at(raw: float, n_bins: int, lo: float, hi: float, edges_buf: np.ndarray, first_edge: int) -> int:
    """The bin of ``raw``: 1 + the edges at or below it (``edges_buf[first_edge:]``, see :func:`edges`), counted in
    a loop without a branch (SIMD code), where a log per score cost more than the rest of the calibrator."""
    if raw <= lo:
        return 0
    if raw >= hi:
        return n_bins - 1
    below = np.uint64(0)
    first = np.uint64(first_edge)
    for k in range(np.uint64(n_bins - 3)):
        below += np.uint64(edges_buf[first + k] <= raw)
    return 1 + int(below)


@njit(cache=True)
def step(state: np.ndarray, raw: float, lo: float, hi: float, min_total: int, max_total: float,
         tail_index: float) -> float:
    n_bins = state.shape[0] - HEADER
    return step_at(state, 0, n_bins, raw, lo, hi, edges(n_bins, lo, hi), 0, min_total, max_total, tail_index)


@njit(cache=True, inline="always")
def step_at(buf: np.ndarray, base: int, n_bins: int, raw: float, lo: float, hi: float, edges_buf: np.ndarray,
            first_edge: int, min_total: int, max_total: float, tail_index: float) -> float:
    """:func:`step` on the state of ``n_bins`` bins at ``buf[base:]``, with the bins' edges at
    ``edges_buf[first_edge:]`` (the ensemble keeps its six calibrators in its one state array and the edges in its
    parameter array; see :mod:`udfs.ensemble`)."""
    if np.isnan(raw):
        return np.nan
    cum = base + HEADER
    b = bin_at(raw, n_bins, lo, hi, edges_buf, first_edge)
    total = buf[base + TOTAL]
    max_seen = buf[base + MAX_SEEN]
    p = np.nan
    if total >= min_total:
        if raw > max_seen:
            ratio = max_seen / raw if max_seen > 0 else 0.0
            p = 1.0 - 0.5 / (total + 1.0) * ratio ** tail_index
        else:
            below = buf[cum + b - 1] if b > 0 else 0.0
            p = (below + 0.5 * (buf[cum + b] - below)) / (total + 1.0)
    # an unsigned index: numba wraps a negative signed one around, and that check per element keeps LLVM from
    # vectorising the loop (with a signed index, this layout made the ensemble 0.71x as fast as the Fenwick tree
    # it replaced; with this one, 1.1x)
    first = np.uint64(cum)
    for k in range(n_bins):
        buf[first + np.uint64(k)] += 1.0 if k >= b else 0.0
    buf[base + TOTAL] = total + 1.0
    if raw > max_seen:
        buf[base + MAX_SEEN] = raw
    if buf[base + TOTAL] >= max_total:
        for k in range(cum, cum + n_bins):
            buf[k] *= 0.5
        buf[base + TOTAL] *= 0.5
    return p


def cumulative_from_fenwick(tree: np.ndarray) -> np.ndarray:
    """The cumulative counts of the bins whose Fenwick tree (node i, from 1, holding the bins ``i - lowbit(i) ..
    i - 1``) is ``tree``: how a calibrator of ensemble layout 1 is carried over. Exact while the counts are
    halved integers that float64 holds exactly, as they are until dozens of halvings; within rounding after."""
    cum = np.empty(tree.shape[0])
    for k in range(tree.shape[0]):
        total, i = 0.0, k + 1
        while i > 0:
            total += tree[i - 1]
            i -= i & -i
        cum[k] = total
    return cum
