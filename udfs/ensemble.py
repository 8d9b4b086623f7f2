"""The univariate ensemble: six detectors, each calibrated to [0, 1], combined into one score and a verdict.

Detectors (their raw score, higher = more anomalous):

- ``robust_z``: |x - median| / MAD-scale over a trailing window (:mod:`udfs.robust_zscore`);
- ``ewma``: |z| against an EWMA mean and variance (:mod:`udfs.ewma_cusum`);
- ``cusum``: the CUSUM statistic over its limit, which fires once per level shift (same module);
- ``seasonal``: |residual z| against a Prophet-style trend + seasonality model (:mod:`udfs.seasonal`);
- ``lstm``: |forecast residual z| of a one-layer LSTM (:mod:`udfs.lstm`);
- ``context``: the surprise of the series' last few quantised levels, a pattern rarely or never seen
  (:mod:`udfs.context_novelty`).

Each raw score goes through its own online calibrator (:mod:`udfs.calibration`), so every detector speaks the same
language: the score's rank in that detector's history on this series. That rank is capped by what the raw score
means on its own (``erf(|z| / (sqrt 2 * z_unit))`` for the z-like detectors, the CUSUM statistic over its limit; the
context surprise has no such scale and is its rank alone), so a deviation must be both rare for the series and
material (3.3 z_unit sigmas for 0.999, with the scale floors) to count: a very quiet series does not turn a 1-sigma
wiggle into an anomaly. The combiner (weighted ``mean``, ``max``, ``vote``, ``top2``: the mean of the two
highest, so that two detectors must agree, or ``views``, the default: the same over four kinds of evidence, where
``ewma``, ``seasonal`` and ``lstm``, which all judge a forecast's residual, count as one by their highest) gives
the ensemble score; a detector votes when its calibrated score
reaches ``vote_p``. The verdict has hysteresis: an incident opens when the score reaches ``enter`` and closes after
``exit_after`` points below ``exit``, so a long anomaly is one incident. Detectors that are disabled, without a
model, or still warming up give NaN and are left out; with fewer than ``min_detectors`` ready the verdict is
"warm-up".

Everything is one flat float64 state array (layout from :func:`layout`), the parameters one float64 array
(:class:`udfs.ensemble_params.EnsembleParams`), the models two flat arrays (empty = no model), so Flink keyed state,
the Beam backfill and ``augur detect`` all run exactly this code. The LSTM's slot is sized by the ``hidden``
parameter, so a model can arrive (or be replaced) without changing the state's layout. The state names its layout
in ``state[S_LAYOUT]`` (:func:`layout_tag`: the layout's version and its offsets), so a state kept in a savepoint
is read in place only by the layout that wrote it; :func:`restore` carries a state of layout 1 (before the tag)
over and refuses any other.

Speed: each detector module has a ``step_at(buf, base, ..)`` that works on its sub-state where it lies in the one
array (``step(state, ..)`` is ``step_at(state, 0, ..)``), and the ensemble inlines them into :func:`_step`, which is
compiled without numba's reference counting (``_nrt=False``: it allocates nothing). A view such as
``state[a:b]``, or an array passed to a function that is not inlined, costs numba two atomic reference-count
updates, about 13 ns a view here; with some twenty of them per point they were about 40% of the ensemble's time.
``augur bench kernels`` measures it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from udfs import calibration, context_novelty, ewma_cusum, lstm, robust_zscore, seasonal

from udfs.ensemble_params import (CONTEXT, CUSUM, EWMA, LSTM, N_DET, P_ABS_FLOOR, P_ADAPT_ALPHA, P_ALPHA, P_BINS,
                                  P_CAL_HI, P_CAL_LO, P_CAL_MAX, P_CAL_MIN, P_CLIP, P_COMBINER, P_CTX_BINS,
                                  P_CTX_DECAY, P_CTX_LENGTH, P_DRIFT, P_EDGES, P_ENTER, P_EXIT, P_EXIT_AFTER, P_HIDDEN,
                                  P_INPUT_CLIP, P_LIMIT, P_MIN_DETECTORS, P_MIN_HISTORY, P_OUTLIER_Z, P_REL_FLOOR,
                                  P_TAIL_INDEX, P_VOTE_P, P_WEIGHTS, P_WINDOW, P_Z_UNIT, ROBUST, SEASONAL)

# state header
S_ACTIVE, S_BELOW, S_POINTS, S_INCIDENTS, S_MODELS = range(5)   # S_MODELS: a tag of the models last adopted
S_LAYOUT = 5                                                     # layout_tag of the state's layout
S_HEADER = 6
# The layouts so far: 1, the calibrators were Fenwick trees and the header had no S_LAYOUT; 2, cumulative counts.
# Change it with any change to what a slot means, and teach restore() to carry the previous one over.
LAYOUT_VERSION = 2

VERDICT_WARMUP, VERDICT_NORMAL, VERDICT_ANOMALY = -1, 0, 1


@njit(cache=True)
def layout(params: np.ndarray) -> np.ndarray:
    """Offsets of the sub-states: robust, ewma/cusum, seasonal, lstm, context, the calibrators, and the total
    size (twice: the end of the last calibrator)."""
    if params.shape[0] < P_EDGES + max(int(params[P_BINS]) - 3, 0):
        raise ValueError("the parameter array lacks the calibrators' bin edges: make it with EnsembleParams.to_array")
    off = np.empty(7 + N_DET, dtype=np.int64)
    pos = S_HEADER
    off[0] = pos
    pos += robust_zscore.HEADER + 2 * int(params[P_WINDOW])
    off[1] = pos
    pos += ewma_cusum.STATE_SIZE
    off[2] = pos
    pos += seasonal.STATE_SIZE
    off[3] = pos
    pos += lstm.state_size(int(params[P_HIDDEN]))
    off[4] = pos
    pos += context_novelty.state_size(int(params[P_CTX_BINS]), int(params[P_CTX_LENGTH]))
    cal = calibration.HEADER + int(params[P_BINS])
    for d in range(N_DET):
        off[5 + d] = pos
        pos += cal
    off[5 + N_DET] = pos
    off[6 + N_DET] = pos
    return off


@njit(cache=True)
def layout_tag(off: np.ndarray) -> float:
    """A negative number naming the layout version and the offsets ``off`` (layout 1 held a count, >= 0, where
    this is kept)."""
    h = LAYOUT_VERSION
    for o in off:
        h = (h * 1_000_003 + o) % 2_147_483_647
    return -1.0 - h


@njit(cache=True)
def init_state(params: np.ndarray) -> np.ndarray:
    off = layout(params)
    state = np.zeros(off[5 + N_DET])
    state[S_LAYOUT] = layout_tag(off)
    state[off[0]:off[1]] = robust_zscore.init_state(int(params[P_WINDOW]))
    state[off[1]:off[2]] = ewma_cusum.init_state()
    state[off[2]:off[3]] = seasonal.init_state()
    state[off[3]:off[4]] = lstm.init_state(int(params[P_HIDDEN]))
    state[off[4]:off[5]] = context_novelty.init_state(int(params[P_CTX_BINS]), int(params[P_CTX_LENGTH]))
    for d in range(N_DET):
        state[off[5 + d]:off[6 + d]] = calibration.init_state(int(params[P_BINS]))
    return state


def restore(stored: np.ndarray, params: np.ndarray) -> np.ndarray | None:
    """A state kept by an earlier run, in the layout of ``params``: as it is if it has that layout, carried over if
    it is a state of layout 1 of the same sizes, else None (the series then warms up again rather than be read
    out of place). Layout 1 did not name its sizes: a state of it is taken for one of these sizes when its length
    fits and each calibrator's counts, where these sizes put them, rise to that calibrator's total."""
    off = layout(params)
    size = int(off[5 + N_DET])
    if stored.shape[0] == size:
        return stored if stored[S_LAYOUT] == layout_tag(off) else None
    if stored.shape[0] != size - 1 or not stored[S_LAYOUT] >= 0.0:   # layout 1: the robust detector's count there
        return None
    state = np.empty(size)
    state[:S_LAYOUT] = stored[:S_LAYOUT]
    state[S_LAYOUT] = layout_tag(off)
    state[S_HEADER:] = stored[S_LAYOUT:]
    n_bins = int(params[P_BINS])
    for d in range(N_DET):
        counts = int(off[5 + d]) + calibration.HEADER
        cum = calibration.cumulative_from_fenwick(state[counts:counts + n_bins])
        total = state[int(off[5 + d]) + calibration.TOTAL]
        if not (np.all(np.diff(cum) >= 0.0) and cum[0] >= 0.0 and abs(cum[-1] - total) <= 1e-9 * max(total, 1.0)):
            return None
        state[counts:counts + n_bins] = cum
    return state


@njit(cache=True, inline="always")
def combine(params: np.ndarray, probs: np.ndarray) -> tuple:
    """``(score, n_ready)`` of calibrated detector scores (NaN = not ready)."""
    mode = int(params[P_COMBINER])
    total_w = 0.0
    acc = 0.0
    best = 0.0
    second = 0.0
    ready = 0
    views = 0
    residual = -1.0  # views: the highest of the forecast-residual detectors, ranked as one view after the loop
    for d in range(N_DET):
        p = probs[d]
        w = params[P_WEIGHTS + d]
        if np.isnan(p) or w <= 0.0:
            continue
        ready += 1
        total_w += w
        if mode == 0:
            acc += w * p
        elif mode == 2:
            acc += w * (1.0 if p >= params[P_VOTE_P] else 0.0)
        elif mode == 4 and (d == EWMA or d == SEASONAL or d == LSTM):
            residual = max(residual, p)
            continue
        views += 1
        if p > best:
            second = best
            best = p
        elif p > second:
            second = p
    if ready == 0:
        return np.nan, 0
    if mode == 1:
        return best, ready
    if mode == 3:
        return (best + second) / 2.0 if ready > 1 else best, ready
    if mode == 4:
        if residual >= 0.0:
            views += 1
            if residual > best:
                second = best
                best = residual
            elif residual > second:
                second = residual
        return (best + second) / 2.0 if views > 1 else best, ready
    return acc / total_w, ready


@njit(cache=True)
def step(state: np.ndarray, params: np.ndarray, season: np.ndarray, lstm_weights: np.ndarray, x: float,
         t_s: float, raw: np.ndarray, probs: np.ndarray) -> tuple:
    """Score one point causally, then learn it. Fills ``raw``/``probs`` (per detector) and returns
    ``(score, verdict, onset, expected)``: onset is True on an incident's first point."""
    return _step(layout(params), state, params, season, lstm_weights, x, t_s, raw, probs)


@njit(cache=True, _nrt=False)
def _step(off: np.ndarray, state: np.ndarray, params: np.ndarray, season: np.ndarray, lstm_weights: np.ndarray,
          x: float, t_s: float, raw: np.ndarray, probs: np.ndarray) -> tuple:
    min_history = int(params[P_MIN_HISTORY])
    rel_floor, abs_floor, clip = params[P_REL_FLOOR], params[P_ABS_FLOOR], params[P_CLIP]
    for d in range(N_DET):
        raw[d] = np.nan
        probs[d] = np.nan
    if params[P_WEIGHTS + ROBUST] > 0:
        z = robust_zscore.step_at(state, off[0], int(params[P_WINDOW]), x, min_history, params[P_OUTLIER_Z],
                                  rel_floor, abs_floor)
        raw[ROBUST] = abs(z)
    level = state[off[1] + ewma_cusum.MEAN]
    z, change = ewma_cusum.step_at(state, off[1], x, params[P_ALPHA], min_history, params[P_DRIFT],
                                   params[P_LIMIT], clip, (rel_floor * level) ** 2 + abs_floor ** 2 + 1e-300)
    if params[P_WEIGHTS + EWMA] > 0:
        raw[EWMA] = abs(z)
    if params[P_WEIGHTS + CUSUM] > 0:
        raw[CUSUM] = change
    floor = rel_floor * abs(level) + abs_floor + 1e-12
    z, expected = seasonal.step_at(state, off[2], season, x, t_s, params[P_ADAPT_ALPHA], min_history, floor, clip)
    if params[P_WEIGHTS + SEASONAL] > 0 and season.shape[0] > 0:
        raw[SEASONAL] = abs(z)
    if lstm_weights.shape[0] > 0 and lstm.hidden_size(lstm_weights) == int(params[P_HIDDEN]):
        z, _ = lstm.step_at(state, off[3], lstm_weights, x, params[P_ADAPT_ALPHA], min_history, floor,
                            params[P_INPUT_CLIP])
        if params[P_WEIGHTS + LSTM] > 0:
            raw[LSTM] = abs(z)
    if params[P_WEIGHTS + CONTEXT] > 0:
        raw[CONTEXT] = context_novelty.step_at(state, off[4], x, int(params[P_CTX_BINS]),
                                               int(params[P_CTX_LENGTH]), params[P_CTX_DECAY], min_history)
    cal_lo, cal_hi = params[P_CAL_LO], params[P_CAL_HI]
    n_bins = int(params[P_BINS])
    for d in range(N_DET):
        p = calibration.step_at(state, off[5 + d], n_bins, raw[d], cal_lo, cal_hi, params, P_EDGES,
                                int(params[P_CAL_MIN]), params[P_CAL_MAX], params[P_TAIL_INDEX])
        if np.isnan(p) or d == CONTEXT:  # abstaining or warming up; or a surprise, which has no z to be material
            probs[d] = p
        else:                            # rare for this series is not enough: the deviation must also be material
            probs[d] = min(p, raw[d] if d == CUSUM else math.erf(raw[d] / (math.sqrt(2.0) * params[P_Z_UNIT])))
    score, ready = combine(params, probs)
    state[S_POINTS] += 1.0
    if ready < int(params[P_MIN_DETECTORS]) or np.isnan(score):
        return np.nan, VERDICT_WARMUP, False, expected
    onset = False
    if state[S_ACTIVE] > 0:
        if score < params[P_EXIT]:
            state[S_BELOW] += 1.0
            if state[S_BELOW] >= params[P_EXIT_AFTER]:
                state[S_ACTIVE] = 0.0
        else:
            state[S_BELOW] = 0.0
    elif score >= params[P_ENTER]:
        state[S_ACTIVE] = 1.0
        state[S_BELOW] = 0.0
        state[S_INCIDENTS] += 1.0
        onset = True
    verdict = VERDICT_ANOMALY if state[S_ACTIVE] > 0 or onset else VERDICT_NORMAL
    return score, verdict, onset, expected


@njit(cache=True)
def adopt_models(state: np.ndarray, params: np.ndarray, lstm_weights: np.ndarray, recent: np.ndarray) -> None:
    """Prepare the state for newly trained models: the seasonal level correction restarts at 0 (the new fit already
    includes the recent level) and the LSTM's hidden state is rebuilt by running the new weights over ``recent``
    (the last points, oldest first). Error scales, warm-up counts and calibration history are kept."""
    off = layout(params)
    state[off[2] + seasonal.OFFSET] = 0.0
    hs = int(params[P_HIDDEN])
    lstm.reset_at(state, off[3], hs)
    if lstm.hidden_size(lstm_weights) != hs:
        return
    for x in recent:
        if not np.isnan(x):
            lstm.advance_at(state, off[3], lstm_weights, x, params[P_INPUT_CLIP])


@njit(cache=True)
def recent_values(state: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The robust detector's window (the last values it learned), oldest first: what primes a new LSTM."""
    off = layout(params)
    sub = state[off[0]:off[1]]
    window = int(params[P_WINDOW])
    n = int(min(sub[0], window))
    pos = int(sub[1])
    out = np.empty(n)
    start = (pos - n) % window
    for i in range(n):
        out[i] = sub[robust_zscore.HEADER + (start + i) % window]
    return out


@njit(cache=True)
def score_batch(state: np.ndarray, params: np.ndarray, season: np.ndarray, lstm_weights: np.ndarray,
                xs: np.ndarray, t_s: np.ndarray) -> tuple:
    """:func:`step` over whole arrays, in order; identical to calling it per point."""
    n = xs.shape[0]
    scores = np.empty(n)
    verdicts = np.empty(n, dtype=np.int8)
    onsets = np.zeros(n, dtype=np.bool_)
    expected = np.empty(n)
    raws = np.empty((n, N_DET))
    probs = np.empty((n, N_DET))
    raw = np.empty(N_DET)            # per-point scratch: a row view of raws/probs per point would cost more
    prob = np.empty(N_DET)           # than the copy (see the module doc)
    off = layout(params)
    for i in range(n):
        scores[i], verdicts[i], onsets[i], expected[i] = _step(off, state, params, season, lstm_weights, xs[i],
                                                               t_s[i], raw, prob)
        for d in range(N_DET):
            raws[i, d] = raw[d]
            probs[i, d] = prob[d]
    return scores, verdicts, onsets, expected, raws, probs
