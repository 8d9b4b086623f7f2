"""Seasonal baseline in the spirit of Prophet: piecewise-linear trend + Fourier seasonalities, evaluated in numba.

The model is fitted offline (``models/seasonal_prophet.py``) and exported to one flat float64 array::

    [t0_s, t_scale_s, y_scale, k, m, n_cp, cp_1..cp_n, delta_1..delta_n, n_seasonalities,
     (period_days, order, beta_sin_1, beta_cos_1, .., beta_sin_order, beta_cos_order) per seasonality]

which is exactly Prophet's additive model: ``yhat(t) = y_scale * (trend(t') + sum_j beta_j * X_j(t))`` with
``t' = (t - t0) / t_scale`` and ``X`` the Fourier terms of days since the Unix epoch. An empty array means "no
model": the baseline is then the online level alone (the ensemble's seasonal detector abstains, but the level
still serves as the expectation that explanations quote).

Between refits the model adapts online. The state ``[n, offset, scale]`` holds an EWMA of the residual (a level
correction) and an EWMA of the absolute residual (the scale). The score is the residual z:
``(x - yhat - offset) / scale``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N, OFFSET, SCALE = 0, 1, 2
STATE_SIZE = 3
SECONDS_PER_DAY = 86400.0
ABS_TO_SIGMA = 1.2533  # E|X| = sigma * sqrt(2/pi) for a normal residual


@njit(cache=True)
def init_state() -> np.ndarray:
    return np.zeros(STATE_SIZE)


def params_valid(params: np.ndarray) -> bool:
    """Whether a non-empty parameter array is laid out as documented above (so :func:`predict` stays inside it)."""
    if params.shape[0] < 7:
        return False
    n_cp = int(params[5])
    pos = 6 + 2 * n_cp
    if n_cp < 0 or pos >= params.shape[0]:
        return False
    n_seas, pos = int(params[pos]), pos + 1
    for _ in range(n_seas):
        if pos + 2 > params.shape[0]:
            return False
        pos += 2 + 2 * int(params[pos + 1])
    return pos == params.shape[0]


@njit(cache=True, inline="always")
def predict(params: np.ndarray, t_s: float) -> float:
    """Prophet's ``yhat`` at time ``t_s`` (seconds since the epoch); 0.0 when ``params`` is empty (no model)."""
    if params.shape[0] == 0:
        return 0.0
    t0, t_scale, y_scale, k, m = params[0], params[1], params[2], params[3], params[4]
    n_cp = int(params[5])
    tt = (t_s - t0) / t_scale
    slope = k
    intercept = m
    for i in range(n_cp):
        cp = params[6 + i]
        if tt >= cp:
            d = params[6 + n_cp + i]
            slope += d
            intercept -= cp * d
    y = slope * tt + intercept
    pos = 6 + 2 * n_cp
    n_seas = int(params[pos])
    pos += 1
    days = t_s / SECONDS_PER_DAY
    for _ in range(n_seas):
        period = params[pos]
        order = int(params[pos + 1])
        pos += 2
        base = 2.0 * np.pi * days / period
        s1, c1 = np.sin(base), np.cos(base)
        sj, cj = s1, c1
        for j in range(order):          # harmonics by angle addition: two trig calls per seasonality
            y += params[pos] * sj + params[pos + 1] * cj
            sj, cj = sj * c1 + cj * s1, cj * c1 - sj * s1
            pos += 2
    return y * y_scale


@njit(cache=True)
def step(state: np.ndarray, params: np.ndarray, x: float, t_s: float, alpha: float, min_history: int,
         scale_floor: float, clip: float) -> tuple:
    """Return ``(z, expected)`` for x at ``t_s``, then adapt the level and scale. z is NaN during warm-up."""
    return step_at(state, 0, params, x, t_s, alpha, min_history, scale_floor, clip)


@njit(cache=True, inline="always")
def step_at(buf: np.ndarray, base: int, params: np.ndarray, x: float, t_s: float, alpha: float, min_history: int,
            scale_floor: float, clip: float) -> tuple:
    """:func:`step` on the state at ``buf[base:]``."""
    expected = predict(params, t_s) + buf[base + OFFSET]
    if np.isnan(x):
        return np.nan, expected
    n = buf[base + N]
    resid = x - expected
    scale = max(ABS_TO_SIGMA * buf[base + SCALE], scale_floor)
    z = np.nan
    if n >= min_history:
        z = resid / scale
        resid = min(max(resid, -clip * scale), clip * scale)   # learn outliers only partly
    w = max(alpha, 1.0 / (n + 1.0))
    buf[base + OFFSET] += w * resid
    buf[base + SCALE] += w * (abs(resid) - buf[base + SCALE])
    buf[base + N] = n + 1.0
    return z, expected


@njit(cache=True)
def predict_batch(params: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    out = np.empty(t_s.shape[0])
    for i in range(t_s.shape[0]):
        out[i] = predict(params, t_s[i])
    return out
