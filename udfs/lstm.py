"""A one-layer LSTM one-step-ahead forecaster, run in numba (the stream never imports torch).

Weights come from ``models/lstm_train.py`` as one flat float64 array::

    [hidden, mu, sd, W_ih (4H x 1), W_hh (4H x H), b_ih (4H), b_hh (4H), W_out (H), b_out]

with torch's gate order (input, forget, cell, output). The LSTM runs statefully, one step per point, exactly like
``torch.nn.LSTM`` over the whole sequence: the state ``[n, h_1..h_H, c_1..c_H, pred, abs_resid]`` carries the hidden
and cell vectors, the forecast of the next value, an EWMA of the absolute forecast error and scratch room for the
gates (so a step allocates nothing). Inputs are normalised
with the training mean and sd and clipped to +-``input_clip`` so an outlier cannot saturate the cell for long.

The score of x is its forecast residual over the error scale, ``(x - pred) / scale`` (NaN in warm-up).
"""

from __future__ import annotations

import numpy as np
from numba import njit

HEADER = 3


@njit(cache=True, inline="always")
def weights_size(h: int) -> int:
    """Length of the flat weight array of a model with h hidden units."""
    return HEADER + 4 * h + 4 * h * h + 8 * h + h + 1


@njit(cache=True, inline="always")
def hidden_size(weights: np.ndarray) -> int:
    """The model's hidden units, or 0 when ``weights`` is empty or not a whole model (never read past its end)."""
    if weights.shape[0] <= HEADER:
        return 0
    h = int(weights[0])
    return h if h > 0 and weights.shape[0] == weights_size(h) else 0


@njit(cache=True)
def state_size(h: int) -> int:
    return 3 + 6 * h


@njit(cache=True)
def init_state(h: int) -> np.ndarray:
    state = np.zeros(state_size(h))
    state[1 + 2 * h] = np.nan
    return state


# exp for the gates, in plain arithmetic so that a loop of activations compiles to SIMD code (libm's exp is a call
# per element): Cody-Waite reduction v = n ln2 + r with |r| <= ln2 / 2, a degree-12 Taylor polynomial for e^r and
# 2^n written as its IEEE bits. Within 3 ulp of NumPy's exp over the clamped range, and both uses saturate there:
# sigmoid(-40) is 4e-18 and tanh(20) rounds to 1.0. The polynomial is evaluated in Estrin's scheme (powers r^2,
# r^4, r^8 and pairs of terms, about 5 dependent steps where Horner's rule has 12), and the cell lets LLVM fuse
# each multiply-add (fastmath "contract" only: NaN and infinity keep their meaning): the LSTM step took 208 ns
# with Horner's rule and no fusion, 140 ns so.
_GATE_CLAMP = 40.0
_LN2_HI = 6.93147180369123816490e-01   # ln 2 split so that n * _LN2_HI is exact for |n| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634


@njit(cache=True, inline="always")
def _sigmoid(v: float) -> float:
    e = min(max(-v, -_GATE_CLAMP), _GATE_CLAMP)
    n = np.floor(e * _LOG2E + 0.5)
    r = e - n * _LN2_HI - n * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    p = ((1.0 + r) + r2 * (1.0 / 2 + r * (1.0 / 6))
         + r4 * ((1.0 / 24 + r * (1.0 / 120)) + r2 * (1.0 / 720 + r * (1.0 / 5040)))
         + r8 * ((1.0 / 40320 + r * (1.0 / 362880)) + r2 * (1.0 / 3628800 + r * (1.0 / 39916800))
                 + r4 * (1.0 / 479001600)))
    return 1.0 / (1.0 + p * np.int64((np.int64(n) + 1023) << 52).view(np.float64))   # p * 2^n, |n| <= 58


@njit(cache=True, inline="always")
def _tanh(v: float) -> float:
    return 2.0 * _sigmoid(2.0 * v) - 1.0


# error_model="numpy": a division by zero (which cannot happen here) would not raise, so the activation loops have
# no branch out and vectorise; fastmath "contract": multiply-adds fuse (see _sigmoid); _nrt=False: see udfs/ensemble
@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def cell(weights: np.ndarray, buf: np.ndarray, base: int, u: float) -> float:
    """Advance the hidden/cell vectors of the state at ``buf[base:]`` by one normalised input u (the state's
    scratch holds the gates); return the next normalised output."""
    hs = int(weights[0])
    w_ih = HEADER
    w_hh = w_ih + 4 * hs
    b_ih = w_hh + 4 * hs * hs
    b_hh = b_ih + 4 * hs
    w_out = b_hh + 4 * hs
    b_out = w_out + hs
    h = buf[base + 1:base + 1 + hs]
    c = buf[base + 1 + hs:base + 1 + 2 * hs]
    gates = buf[base + 3 + 2 * hs:base + 3 + 6 * hs]
    for g in range(4 * hs):
        acc = weights[w_ih + g] * u + weights[b_ih + g] + weights[b_hh + g]
        row = w_hh + g * hs
        for j in range(hs):
            acc += weights[row + j] * h[j]
        gates[g] = acc
    for k in range(4 * hs):   # input, forget and output gates: sigmoid; cell gate: tanh = 2 sigmoid(2v) - 1
        m = 2.0 if 2 * hs <= k < 3 * hs else 1.0
        gates[k] = m * _sigmoid(m * gates[k]) - (m - 1.0)
    for j in range(hs):
        c[j] = gates[hs + j] * c[j] + gates[j] * gates[2 * hs + j]
        h[j] = gates[3 * hs + j] * _tanh(c[j])
    out = weights[b_out]
    for j in range(hs):
        out += weights[w_out + j] * h[j]
    return out


@njit(cache=True)
def reset(state: np.ndarray, h: int) -> None:
    """Forget the hidden and cell vectors and the pending forecast (the error scale and count are kept)."""
    reset_at(state, 0, h)


@njit(cache=True, inline="always")
def reset_at(buf: np.ndarray, base: int, h: int) -> None:
    for k in range(base + 1, base + 1 + 2 * h):
        buf[k] = 0.0
    buf[base + 1 + 2 * h] = np.nan


@njit(cache=True)
def advance(state: np.ndarray, weights: np.ndarray, x: float, input_clip: float) -> None:
    """Feed x (normalised, clipped) through the cell; the state then holds the forecast of the next value."""
    advance_at(state, 0, weights, x, input_clip)


@njit(cache=True, inline="always")
def advance_at(buf: np.ndarray, base: int, weights: np.ndarray, x: float, input_clip: float) -> None:
    hs = int(weights[0])
    mu, sd = weights[1], weights[2]
    u = min(max((x - mu) / sd, -input_clip), input_clip)
    buf[base + 1 + 2 * hs] = mu + sd * cell(weights, buf, base, u)


@njit(cache=True)
def step(state: np.ndarray, weights: np.ndarray, x: float, alpha: float, min_history: int, scale_floor: float,
         input_clip: float) -> tuple:
    """Return ``(z, pred)``: the residual z of x against the forecast made at the previous step, then advance."""
    return step_at(state, 0, weights, x, alpha, min_history, scale_floor, input_clip)


@njit(cache=True, inline="always")
def step_at(buf: np.ndarray, base: int, weights: np.ndarray, x: float, alpha: float, min_history: int,
            scale_floor: float, input_clip: float) -> tuple:
    """:func:`step` on the state at ``buf[base:]``."""
    hs = hidden_size(weights)
    if hs == 0:
        return np.nan, np.nan
    pred_i = base + 1 + 2 * hs
    scale_i = pred_i + 1
    pred = buf[pred_i]
    if np.isnan(x):
        return np.nan, pred
    n = buf[base]
    z = np.nan
    if not np.isnan(pred):
        resid = x - pred
        scale = max(1.2533 * buf[scale_i], scale_floor)
        if n >= min_history:
            z = resid / scale
        w = max(alpha, 1.0 / (n + 1.0))
        buf[scale_i] += w * (min(abs(resid), 10.0 * scale) - buf[scale_i])
        buf[base] = n + 1.0
    advance_at(buf, base, weights, x, input_clip)
    return z, pred


@njit(cache=True)
def forecast_sequence(weights: np.ndarray, xs: np.ndarray, input_clip: float) -> np.ndarray:
    """The forecast after each input of ``xs`` from a zero state (what torch computes over the sequence)."""
    hs = hidden_size(weights)
    state = init_state(hs)
    out = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        advance(state, weights, xs[i], input_clip)
        out[i] = state[1 + 2 * hs]
    return out
