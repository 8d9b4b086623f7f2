"""Context novelty: how rarely the series has been in its current short pattern of levels.

The other detectors measure how far a value is from what was expected; this one measures how new the recent
*shape* is. Each value is quantised into one of ``bins`` levels between the smallest and largest value seen so far,
and the last ``length`` levels form a context (``bins ** length`` possible). A table counts how often each context
has occurred, with exponential forgetting (``decay`` per point), and the raw score of a point is the surprise of its
context, ``-log((count + a) / (total + a * bins ** length))`` with a = 0.1: a level pattern never seen before (a
daily jump that does not come, a flat stretch where the series always moved) scores high even when no single value
is out of range. In the spirit of the context detectors that do well on the Numenta Anomaly Benchmark.

Forgetting is done without touching every count: a new occurrence weighs ``1 / decay ** t`` (the state's
``weight``), so an old one weighs relatively less; the table is rescaled when the weights grow large.

State ``[seen, lo, hi, weight, total, last_levels (length), counts (bins ** length)]``, one flat float64 array.
The score is NaN until ``min_history`` values were seen (and for NaN input, which is not learned).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SEEN, LO, HI, WEIGHT, TOTAL = range(5)
HEADER = 5
PRIOR = 0.1
RESCALE_AT = 1e200


@njit(cache=True)
def state_size(bins: int, length: int) -> int:
    return HEADER + length + bins ** length


@njit(cache=True)
def init_state(bins: int, length: int) -> np.ndarray:
    state = np.zeros(state_size(bins, length))
    state[LO] = np.inf
    state[HI] = -np.inf
    state[WEIGHT] = 1.0
    return state


@njit(cache=True, inline="always")
def level(x: float, lo: float, hi: float, bins: int) -> int:
    """x's level among ``bins`` equal slices of [lo, hi] (0 while the range is empty)."""
    if not hi > lo:
        return 0
    b = int((x - lo) / (hi - lo) * bins)
    return min(max(b, 0), bins - 1)


@njit(cache=True)
def step(state: np.ndarray, x: float, bins: int, length: int, decay: float, min_history: int) -> float:
    """Score x's context against the table, then learn it. Returns the raw surprise (NaN in warm-up)."""
    return step_at(state, 0, x, bins, length, decay, min_history)


@njit(cache=True, inline="always")
def step_at(buf: np.ndarray, base: int, x: float, bins: int, length: int, decay: float, min_history: int) -> float:
    """:func:`step` on the state at ``buf[base:]``."""
    if np.isnan(x):
        return np.nan
    last = base + HEADER
    counts = last + length
    for k in range(length - 1):
        buf[last + k] = buf[last + k + 1]
    buf[last + length - 1] = level(x, buf[base + LO], buf[base + HI], bins)
    buf[base + LO] = min(buf[base + LO], x)
    buf[base + HI] = max(buf[base + HI], x)
    seen = buf[base + SEEN] + 1.0
    buf[base + SEEN] = seen
    if seen < length:
        return np.nan
    ctx = 0
    for k in range(length):
        ctx = ctx * bins + int(buf[last + k])
    weight = buf[base + WEIGHT]
    raw = np.nan
    n_ctx = bins ** length
    if seen > min_history:
        raw = -np.log((buf[counts + ctx] / weight + PRIOR) / (buf[base + TOTAL] / weight + PRIOR * n_ctx))
    weight /= decay
    buf[counts + ctx] += weight
    buf[base + TOTAL] += weight
    if weight > RESCALE_AT:
        for k in range(counts, counts + n_ctx):
            buf[k] /= weight
        buf[base + TOTAL] /= weight
        weight = 1.0
    buf[base + WEIGHT] = weight
    return raw
