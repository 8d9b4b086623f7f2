"""Robust z-score over a trailing window: ``z = (x - median) / scale``, high |z| = anomalous.

``scale = max(1.4826 * MAD, rel_floor * |median|, abs_floor)``: the floors keep near-constant histories from
turning every wiggle into an enormous z.

State is one float64 array ``[n_learned, next_pos, n_rejected_in_a_row, w_0 .. w_{W-1}]`` (a ring of the last W
learned values), so it lives in Flink keyed state or a checkpoint as plain numbers. Scoring is causal: ``step``
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
    state = np.full(HEADER + window, np.nan)
    state[0] = 0.0
    state[1] = 0.0
    state[2] = 0.0
    return state


@njit(cache=True)
def _history(state: np.ndarray) -> np.ndarray:
    window = state.shape[0] - HEADER
    n = int(min(state[0], window))
    return state[HEADER:HEADER + n]


@njit(cache=True)
def score(state: np.ndarray, x: float, min_history: int, rel_floor: float, abs_floor: float) -> float:
    """z of x against the history in ``state`` (NaN during warm-up or for NaN x). Does not learn."""
    if state[0] < min_history or np.isnan(x):
        return np.nan
    hist = _history(state)
    med = np.median(hist)
    mad = np.median(np.abs(hist - med))
    scale = max(MAD_TO_SIGMA * mad, rel_floor * abs(med), abs_floor, 1e-12)
    return (x - med) / scale


@njit(cache=True)
def learn(state: np.ndarray, x: float) -> None:
    if np.isnan(x):
        return
    window = state.shape[0] - HEADER
    pos = int(state[1])
    state[HEADER + pos] = x
    state[1] = (pos + 1) % window
    state[0] += 1.0


@njit(cache=True)
def step(state: np.ndarray, x: float, min_history: int, threshold: float, rel_floor: float,
         abs_floor: float) -> float:
    """Score x, then learn it unless it is an outlier (see the module doc)."""
    z = score(state, x, min_history, rel_floor, abs_floor)
    window = state.shape[0] - HEADER
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
    hist = _history(state)
    return np.median(hist) if hist.shape[0] else np.nan


def z_to_score(z: float, threshold: float) -> float:
    """Map |z| to [0, 1], 0.5 exactly at the threshold; NaN stays NaN."""
    a = abs(z)
    return a / (a + threshold) if a == a else float("nan")


def reference_z(history: np.ndarray, x: float, rel_floor: float, abs_floor: float) -> float:
    """Plain NumPy reference for one score, for tests."""
    med = float(np.median(history))
    mad = float(np.median(np.abs(history - med)))
    return (x - med) / max(MAD_TO_SIGMA * mad, rel_floor * abs(med), abs_floor, 1e-12)
