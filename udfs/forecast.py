"""Time-to-exhaustion of a resource with a capacity: robust trend on a resampled history, with bounds.

The history is the **upper envelope** of the usage: one point per step (e.g. 20 min), the maximum seen in that
step, because a resource is exhausted when its peaks reach the ceiling (a GC sawtooth's highs, a log file just
before rotation), not when its mean does.

The trend is a **long-lag Theil-Sen** slope: the median of the slopes of all pairs of points at least a third of
the history apart (deterministically thinned to a bounded number of pairs). Pairs that far apart straddle resets
(log rotation, cleanups) and daily cycles, so the slope measures the *net* growth that fills a disk rather than the
climb inside one tooth, and a seasonal pattern without growth gives a slope near zero. Two regime checks adjust it:

* **stopped**: the recent slope (over the last ``recent_ms``, at least an eighth of the history) is confidently
  below the long one and the recent part holds no reset: growth has slowed or stopped, so the recent slope is used
  (a fill that stops is retracted within hours).
* **accelerating**: the whole history (at least 1.5 seasons) confidently grows, its last season confidently faster,
  and it holds no reset: the last season's slope is used (more lead time on accelerating fills). A whole season,
  so that a daily cycle is not taken for acceleration.

Level: the median of ``y_i + slope * (now - t_i)``. Once the history covers a whole season (a day), the residuals
around the trend line give a **seasonal profile** (their median per phase of the day), and the exhaustion point is
the first future step at which trend + profile reaches the capacity: a daily peak or a rotation sawtooth is
projected at its own phase. Before that, or beyond the searched span, the pattern is summarised by ``peak``, a high
quantile of the residuals (the sawtooth's or the cycle's amplitude). Bounds: the same with the slope's
order-statistic interval (the median's rank interval with the number of points, not pairs, as the sample size),
so the earliest plausible exhaustion uses the steepest plausible slope. A trend is only called growth when a clear
majority of pairs agree in sign (``trend``, a Kendall-like statistic in [-1, 1]).

State is one float64 array (Flink keyed state, checkpoints): ``HEADER`` numbers then a ring of bucket start times
and a ring of bucket maxima. All times are ms since the epoch as float64 (exact below 2^53).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# header slots of the state array
N_FILLED, POS, CUR_START, CUR_MAX, CAPACITY, ACTIVE, LAST_POINT, STREAK = range(8)
HEADER = 8

# fit() result slots
(SLOPE, SLOPE_LO, SLOPE_HI, LEVEL, PEAK, TREND, METHOD, POINT_TS, LOWER_TS, UPPER_TS, N_POINTS,
 SPAN_MS) = range(12)
FIT_SIZE = 12

METHODS = ("insufficient-history", "theil-sen", "theil-sen/stopped", "theil-sen/accelerating")
MAX_PAIRS = 4096


@njit(cache=True)
def init_state(buckets: int) -> np.ndarray:
    state = np.full(HEADER + 2 * buckets, np.nan)
    state[N_FILLED] = 0.0
    state[POS] = 0.0
    state[ACTIVE] = 0.0
    state[STREAK] = 0.0
    return state


def resized(state: np.ndarray, buckets: int) -> np.ndarray:
    """``state`` with a ring of ``buckets`` steps, keeping its newest closed steps (as many as fit) and its header:
    a state kept in a savepoint follows a new ``forecast.history-steps``."""
    t, y = history(state)
    keep = min(t.shape[0], buckets)
    out = init_state(buckets)
    out[CUR_START:HEADER] = state[CUR_START:HEADER]
    for k in range(t.shape[0] - keep, t.shape[0]):
        _push(out, t[k], y[k])
    return out


@njit(cache=True)
def _push(state: np.ndarray, t: float, y: float) -> None:
    buckets = (state.shape[0] - HEADER) // 2
    pos = int(state[POS])
    state[HEADER + pos] = t
    state[HEADER + buckets + pos] = y
    state[POS] = (pos + 1) % buckets
    state[N_FILLED] += 1.0


@njit(cache=True)
def observe(state: np.ndarray, t_ms: float, y: float, capacity: float, step_ms: float) -> bool:
    """Fold one observation into the current step's maximum; True when this closed the previous step.

    Observations must come in event-time order per series (an older one is folded into the current step).
    Non-finite values are ignored; the capacity is the latest finite, positive one seen.
    """
    if capacity > 0 and math.isfinite(capacity):
        state[CAPACITY] = capacity
    if not math.isfinite(y):
        return False
    start = t_ms - (t_ms % step_ms)
    cur = state[CUR_START]
    if math.isnan(cur):
        state[CUR_START] = start
        state[CUR_MAX] = y
        return False
    if start > cur:
        _push(state, cur, state[CUR_MAX])
        state[CUR_START] = start
        state[CUR_MAX] = y
        return True
    if y > state[CUR_MAX]:
        state[CUR_MAX] = y
    return False


@njit(cache=True)
def history(state: np.ndarray):
    """The closed steps, oldest first: ``(t, y)``."""
    buckets = (state.shape[0] - HEADER) // 2
    n = int(min(state[N_FILLED], buckets))
    t = np.empty(n)
    y = np.empty(n)
    first = (int(state[POS]) - n) % buckets
    for k in range(n):
        i = (first + k) % buckets
        t[k] = state[HEADER + i]
        y[k] = state[HEADER + buckets + i]
    return t, y


@njit(cache=True)
def last_closed(state: np.ndarray) -> float:
    """The maximum of the most recently closed step (NaN before the first)."""
    if state[N_FILLED] < 1:
        return np.nan
    buckets = (state.shape[0] - HEADER) // 2
    return state[HEADER + buckets + (int(state[POS]) - 1) % buckets]


@njit(cache=True)
def _quantile_sorted(a: np.ndarray, q: float) -> float:
    n = a.shape[0]
    if n == 0:
        return np.nan
    pos = min(max(q, 0.0), 1.0) * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return a[lo] + (a[hi] - a[lo]) * (pos - lo)


@njit(cache=True)
def _pair_slopes(t: np.ndarray, y: np.ndarray, lo: int, hi: int, min_lag: int, max_pairs: int) -> np.ndarray:
    """Slopes of pairs (i, j) in [lo, hi) with j - i >= min_lag, thinned evenly to at most ``max_pairs``."""
    m = hi - lo - min_lag
    if m <= 0:
        return np.empty(0)
    total = m * (m + 1) // 2
    stride = 1
    while total // (stride * stride) > max_pairs:
        stride += 1
    out = np.empty(total // (stride * stride) + 2 * (hi - lo) + 1)
    k = 0
    for i in range(lo, hi - min_lag, stride):
        for j in range(i + min_lag, hi, stride):
            dt = t[j] - t[i]
            if dt > 0:
                out[k] = (y[j] - y[i]) / dt
                k += 1
    return np.sort(out[:k])


@njit(cache=True)
def _median_interval(slopes: np.ndarray, n_points: int, z: float):
    half = z / (2.0 * math.sqrt(max(n_points, 1)))
    return (_quantile_sorted(slopes, 0.5), _quantile_sorted(slopes, 0.5 - half),
            _quantile_sorted(slopes, 0.5 + half))


@njit(cache=True)
def _has_reset(y: np.ndarray, lo: int, hi: int, min_drop: float) -> bool:
    """A drop between consecutive points well beyond their usual wiggle (and at least ``min_drop``)."""
    if hi - lo < 3:
        return False
    d = np.diff(y[lo:hi])
    med = np.median(d)
    mad = np.median(np.abs(d - med))
    limit = max(8.0 * 1.4826 * mad, min_drop)
    for v in d:
        if v < med - limit:
            return True
    return False


@njit(cache=True)
def fit(t: np.ndarray, y: np.ndarray, capacity: float, now: float, min_points: int, season_ms: float,
        recent_ms: float, search_ms: float, z: float, peak_quantile: float) -> np.ndarray:
    """Trend, level and exhaustion times (ms since the epoch, NaN = not within reach) from ``(t, y)``."""
    out = np.full(FIT_SIZE, np.nan)
    n = t.shape[0]
    out[N_POINTS] = n
    out[METHOD] = 0
    out[SPAN_MS] = t[n - 1] - t[0] if n > 0 else 0.0
    if n < min_points or not capacity > 0:
        return out
    slopes = _pair_slopes(t, y, 0, n, max(1, n // 3), MAX_PAIRS)
    if slopes.shape[0] == 0:
        return out
    slope, s_lo, s_hi = _median_interval(slopes, n, z)
    pos = 0
    neg = 0
    for s in slopes:
        if s > 0:
            pos += 1
        elif s < 0:
            neg += 1
    trend = (pos - neg) / slopes.shape[0]
    method = 1
    min_drop = 0.005 * capacity
    # regime: growth stopped (recent part confidently slower, and no reset in it to explain the drop)
    step = (t[n - 1] - t[0]) / (n - 1)
    r = max(6, n // 8, min(n // 3, int(math.ceil(recent_ms / step))))
    if n >= 2 * r and not _has_reset(y, n - r, n, min_drop):
        rs = _pair_slopes(t, y, n - r, n, max(1, r // 3), MAX_PAIRS)
        if rs.shape[0] > 0:
            r_mid, r_lo, r_hi = _median_interval(rs, r, z)
            if r_hi < s_lo:
                slope, s_lo, s_hi = r_mid, r_lo, r_hi
                method = 2
    # regime: accelerating (the last season, at most two thirds of the history, confidently faster; no resets)
    h = n - int(math.ceil(season_ms / step))
    if method == 1 and s_lo > 0 and 3 * h >= n and not _has_reset(y, 0, n, min_drop):
        hs = _pair_slopes(t, y, h, n, max(1, (n - h) // 3), MAX_PAIRS)
        if hs.shape[0] > 0:
            h_mid, h_lo, h_hi = _median_interval(hs, n - h, z)
            if h_lo > s_hi:
                slope, s_lo, s_hi = h_mid, h_lo, h_hi
                method = 3
    base = np.empty(n)
    for i in range(n):
        base[i] = y[i] + slope * (now - t[i])
    level = np.median(base)
    resid = base - level
    peak = _quantile_sorted(np.sort(resid), peak_quantile)
    out[SLOPE] = slope
    out[SLOPE_LO] = s_lo
    out[SLOPE_HI] = s_hi
    out[LEVEL] = level
    out[PEAK] = peak
    out[TREND] = trend
    out[METHOD] = method
    profile = _seasonal_profile(t, resid, now, step, season_ms)
    kmax = int(math.ceil(search_ms / step))
    out[POINT_TS] = _exhaustion(level, slope, peak, profile, capacity, now, step, kmax)
    out[LOWER_TS] = _exhaustion(level, s_hi, peak, profile, capacity, now, step, kmax)
    out[UPPER_TS] = _exhaustion(level, s_lo, peak, profile, capacity, now, step, kmax)
    return out


@njit(cache=True)
def _seasonal_profile(t: np.ndarray, resid: np.ndarray, now: float, step: float, season_ms: float) -> np.ndarray:
    """Median residual per phase of the season, bin 0 = the phase of ``now`` (empty before a whole season)."""
    bins = int(round(season_ms / step))
    n = t.shape[0]
    if bins < 2 or t[n - 1] - t[0] + step < season_ms:
        return np.empty(0)
    phase = np.empty(n, dtype=np.int64)
    for i in range(n):
        phase[i] = int(round(((t[i] - now) % season_ms) / step)) % bins
    order = np.argsort(phase, kind="mergesort")
    profile = np.zeros(bins)
    buf = np.empty(n)
    i = 0
    while i < n:
        b = phase[order[i]]
        k = 0
        while i < n and phase[order[i]] == b:
            buf[k] = resid[order[i]]
            k += 1
            i += 1
        profile[b] = np.median(buf[:k])
    return profile


@njit(cache=True)
def _exhaustion(level: float, slope: float, peak: float, profile: np.ndarray, capacity: float, now: float,
                step: float, kmax: int) -> float:
    """When ``level + slope * dt`` plus the usage's pattern first reaches the capacity (NaN: not foreseeable).

    With a seasonal profile, the pattern is the profile at each future step's phase, searched step by step up to
    ``kmax`` steps ahead; beyond that (or without a profile) it is the ``peak`` residual, a closed form."""
    bins = profile.shape[0]
    if bins > 0:
        prev = level + profile[0]
        if prev >= capacity:
            return now
        for k in range(1, kmax + 1):
            v = level + slope * (k * step) + profile[k % bins]
            if v >= capacity:  # crossed within this step: interpolate
                return now + (k - 1 + min(max((capacity - prev) / (v - prev), 0.0), 1.0)) * step
            prev = v
    room = capacity - (level + peak)
    if room <= 0:
        return now if bins == 0 else now + kmax * step
    if slope <= 0:
        return np.nan
    return max(now + room / slope, now + kmax * step) if bins > 0 else now + room / slope


@njit(cache=True)
def fit_state(state: np.ndarray, now: float, min_points: int, season_ms: float, recent_ms: float,
              search_ms: float, z: float, peak_quantile: float) -> np.ndarray:
    t, y = history(state)
    return fit(t, y, state[CAPACITY], now, min_points, season_ms, recent_ms, search_ms, z, peak_quantile)


@njit(cache=True)
def at_risk(f: np.ndarray, now: float, horizon_ms: float, min_trend: float, was_active: bool,
            hysteresis: float) -> bool:
    """Whether the resource is at risk: the earliest plausible exhaustion falls inside the horizon and most pairs
    agree that it grows. Once at risk it stays so until the earliest exhaustion leaves ``horizon * (1 +
    hysteresis)`` or the growth is no longer clear (so a forecast near the edge does not flap)."""
    lower = f[LOWER_TS]
    if math.isnan(lower):
        return False
    if lower <= now and f[POINT_TS] <= now:
        return True  # already at the ceiling
    reach = horizon_ms * (1.0 + hysteresis) if was_active else horizon_ms
    trend_needed = min_trend * 0.5 if was_active else min_trend
    return lower - now <= reach and f[TREND] >= trend_needed and f[SLOPE] > 0
