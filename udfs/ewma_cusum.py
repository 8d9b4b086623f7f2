"""EWMA z-score and a two-sided CUSUM on it, so a level shift is flagged once rather than for hours.

State is one float64 array ``[n, mean, var, s_pos, s_neg]``. ``step`` first scores x against the state, then learns
it. Until ``min_history`` values have been seen the mean and variance are plain running ones (the EWMA weight is
``max(alpha, 1/n)``) and the scores are NaN (warm-up). NaN inputs score NaN and change nothing.

CUSUM accumulates the standardised excess ``|z| - drift`` in each direction; when either sum passes ``limit`` a
change is reported (``change`` > 1), the EWMA is re-anchored at the new level and both sums restart, so a step is
one alarm. The values learned are clipped to ``mean +- clip * sigma`` so that one outlier cannot blow up the
variance.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N, MEAN, VAR, S_POS, S_NEG = 0, 1, 2, 3, 4
STATE_SIZE = 5


@njit(cache=True)
def init_state() -> np.ndarray:
    return np.zeros(STATE_SIZE)


@njit(cache=True)
def step(state: np.ndarray, x: float, alpha: float, min_history: int, drift: float, limit: float,
         clip: float, var_floor: float) -> tuple:
    """Return ``(z, change)``: EWMA z of x, and the CUSUM statistic over ``limit`` (> 1 = a change, reported once).

    Both are NaN during warm-up or for a NaN x.
    """
    return step_at(state, 0, x, alpha, min_history, drift, limit, clip, var_floor)


@njit(cache=True, inline="always")
def step_at(buf: np.ndarray, base: int, x: float, alpha: float, min_history: int, drift: float, limit: float,
            clip: float, var_floor: float) -> tuple:
    """:func:`step` on the state at ``buf[base:]``."""
    if np.isnan(x):
        return np.nan, np.nan
    n = buf[base + N]
    mean = buf[base + MEAN]
    z = np.nan
    change = np.nan
    sd = np.sqrt(max(buf[base + VAR], var_floor))
    if n >= min_history:
        z = (x - mean) / sd
        zc = min(max(z, -clip), clip)
        s_pos = max(0.0, buf[base + S_POS] + zc - drift)
        s_neg = max(0.0, buf[base + S_NEG] - zc - drift)
        change = max(s_pos, s_neg) / limit
        if change > 1.0:
            buf[base + MEAN] = x          # re-anchor at the new level; the variance is kept
            buf[base + S_POS] = 0.0
            buf[base + S_NEG] = 0.0
            buf[base + N] = n + 1.0
            return z, change
        buf[base + S_POS] = s_pos
        buf[base + S_NEG] = s_neg
    w = max(alpha, 1.0 / (n + 1.0))
    xl = x
    if n >= min_history:
        xl = min(max(x, mean - clip * sd), mean + clip * sd)
    d = xl - mean
    buf[base + MEAN] = mean + w * d
    buf[base + VAR] = (1.0 - w) * (buf[base + VAR] + w * d * d)
    buf[base + N] = n + 1.0
    return z, change


@njit(cache=True)
def step_batch(state: np.ndarray, xs: np.ndarray, alpha: float, min_history: int, drift: float, limit: float,
               clip: float, var_floor: float) -> tuple:
    zs = np.empty(xs.shape[0])
    changes = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        zs[i], changes[i] = step(state, xs[i], alpha, min_history, drift, limit, clip, var_floor)
    return zs, changes


def reference_ewma(xs: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy/Python EWMA mean and variance after each value (no clipping, no CUSUM), for tests."""
    mean, var = 0.0, 0.0
    means, variances = np.empty(len(xs)), np.empty(len(xs))
    for i, x in enumerate(xs):
        w = max(alpha, 1.0 / (i + 1.0))
        d = x - mean
        mean += w * d
        var = (1.0 - w) * (var + w * d * d)
        means[i], variances[i] = mean, var
    return means, variances
