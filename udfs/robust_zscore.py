"""Robust z-score over a trailing window: ``z = (x - median) / scale``, high |z| = anomalous.

``scale = max(1.4826 * MAD, rel_floor * |median|, abs_floor)``: the floors keep near-constant histories from
turning every wiggle into an enormous z.

State is one float64 array ``[n_learned, next_pos, n_rejected_in_a_row, w_0 .. w_{W-1}, s_0 .. s_{W-1}]``: a ring
of the last W learned values and the same values kept sorted, so the median is a lookup and the MAD one merge of
the two sides of the median (O(W) per point, no sort), and it lives in Flink keyed state or a checkpoint as plain numbers. Scoring is causal: ``step``
scores x against the past, then learns it, except that values scoring at or beyond the threshold are kept out of
the history (so an incident does not become its own baseline) for at most W in a row, after which a level shift is
accepted as the new normal. During warm-up (fewer than ``min_history`` values) the score is NaN; NaN inputs score
NaN and are not learned.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HEADER = 3
MAD_TO_SIGMA = 1.4826


@njit(cache=True)
def init_state(window: int) -> np.ndarray:
    state = np.full(HEADER + 2 * window, np.nan)
    state[0] = 0.0
    state[1] = 0.0
    state[2] = 0.0
    return state


@njit(cache=True)
def window_size(state: np.ndarray) -> int:
    return (state.shape[0] - HEADER) // 2


@njit(cache=True)
def _sorted(state: np.ndarray) -> np.ndarray:
    window = window_size(state)
    n = int(min(state[0], window))
    return state[HEADER + window:HEADER + window + n]


@njit(cache=True)
def _median_sorted(s: np.ndarray) -> float:
    n = s.shape[0]
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


@njit(cache=True)
def _mad_sorted(s: np.ndarray, med: float) -> float:
    """Median of |s - med| for sorted s: merge the deviations left and right of the median in increasing order."""
    n = s.shape[0]
    hi = np.searchsorted(s, med)          # s[hi:] >= med; s[:hi] < med
    lo = hi - 1
    want_a = (n - 1) // 2
    want_b = n // 2
    a = b = 0.0
    for k in range(want_b + 1):
        if lo >= 0 and (hi >= n or med - s[lo] <= s[hi] - med):
            d = med - s[lo]
            lo -= 1
        else:
            d = s[hi] - med
            hi += 1
        if k == want_a:
            a = d
        if k == want_b:
            b = d
    return 0.5 * (a + b)


@njit(cache=True)
def score(state: np.ndarray, x: float, min_history: int, rel_floor: float, abs_floor: float) -> float:
    """z of x against the history in ``state`` (NaN during warm-up or for NaN x). Does not learn."""
    if state[0] < min_history or np.isnan(x):
        return np.nan
    hist = _sorted(state)
    med = _median_sorted(hist)
    mad = _mad_sorted(hist, med)
    scale = max(MAD_TO_SIGMA * mad, rel_floor * abs(med), abs_floor, 1e-12)
    return (x - med) / scale


@njit(cache=True)
def learn(state: np.ndarray, x: float) -> None:
    if np.isnan(x):
        return
    window = window_size(state)
    pos = int(state[1])
    n = int(min(state[0], window))
    srt = state[HEADER + window:HEADER + 2 * window]
    if n == window:                       # the ring is full: drop its oldest value from the sorted copy
        i = np.searchsorted(srt[:n], state[HEADER + pos])
        for j in range(i, n - 1):
            srt[j] = srt[j + 1]
        n -= 1
    i = np.searchsorted(srt[:n], x)
    for j in range(n, i, -1):
        srt[j] = srt[j - 1]
    srt[i] = x
    state[HEADER + pos] = x
    state[1] = (pos + 1) % window
    state[0] += 1.0


@njit(cache=True)
def step(state: np.ndarray, x: float, min_history: int, threshold: float, rel_floor: float,
         abs_floor: float) -> float:
    """Score x, then learn it unless it is an outlier (see the module doc)."""
    z = score(state, x, min_history, rel_floor, abs_floor)
    window = window_size(state)
    if abs(z) >= threshold:
        if state[2] < window:
            state[2] += 1.0      # an outlier: keep it out of the history ...
            return z
        # ... unless W came in a row: a level shift, learned until values look normal again
    else:
        state[2] = 0.0
    learn(state, x)
    return z


@njit(cache=True)
def step_batch(state: np.ndarray, xs: np.ndarray, min_history: int, threshold: float, rel_floor: float,
               abs_floor: float) -> np.ndarray:
    """``step`` over a whole array in order (the backfill path); identical to calling ``step`` per point."""
    out = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        out[i] = step(state, xs[i], min_history, threshold, rel_floor, abs_floor)
    return out


@njit(cache=True)
def history_median(state: np.ndarray) -> float:
    """Median of the values currently held (NaN when empty); used to explain a verdict."""
    hist = _sorted(state)
    return _median_sorted(hist) if hist.shape[0] else np.nan


def z_to_score(z: float, threshold: float) -> float:
    """Map |z| to [0, 1], 0.5 exactly at the threshold; NaN stays NaN."""
    a = abs(z)
    return a / (a + threshold) if a == a else float("nan")


def reference_z(history: np.ndarray, x: float, rel_floor: float, abs_floor: float) -> float:
    """Plain NumPy reference for one score, for tests."""
    med = float(np.median(history))
    mad = float(np.median(np.abs(history - med)))
    return (x - med) / max(MAD_TO_SIGMA * mad, rel_floor * abs(med), abs_floor, 1e-12)
