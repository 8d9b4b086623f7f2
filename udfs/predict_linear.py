"""The rule SREs run today, faithfully: node-exporter's ``NodeFilesystemSpaceFillingUp`` alerts.

    warning:  avail / size * 100 < 40  and  predict_linear(avail[6h], 24h) < 0   for 1h
    critical: avail / size * 100 < 20  and  predict_linear(avail[6h],  4h) < 0   for 1h

``predict_linear(v[range], d)`` is Prometheus' ordinary least-squares line through the samples in ``(now - range,
now]`` with time measured from the evaluation time, evaluated ``d`` seconds later. ``for: 1h`` means the condition
must hold at every evaluation for an hour before the alert fires. The memory equivalent is the same rule over
available memory. This is the baseline the forecaster is compared with (``augur bench forecast``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

H_MS = 3_600_000.0


@njit(cache=True)
def predict_linear(t: np.ndarray, v: np.ndarray, eval_t: np.ndarray, range_ms: float, ahead_ms: float):
    """For each evaluation time: ``(prediction, slope_per_ms, n_samples)`` over the samples in (e - range, e].

    ``t`` must be sorted. Fewer than 2 samples give NaN, as Prometheus returns no result.
    """
    m = eval_t.shape[0]
    pred = np.full(m, np.nan)
    slope = np.full(m, np.nan)
    count = np.zeros(m, dtype=np.int64)
    lo = 0
    hi = 0
    n = t.shape[0]
    for k in range(m):
        e = eval_t[k]
        while hi < n and t[hi] <= e:
            hi += 1
        while lo < hi and t[lo] <= e - range_ms:
            lo += 1
        c = hi - lo
        count[k] = c
        if c < 2:
            continue
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        sxy = 0.0
        for i in range(lo, hi):
            x = (t[i] - e) / 1000.0
            sx += x
            sy += v[i]
            sxx += x * x
            sxy += x * v[i]
        cov = sxy - sx * sy / c
        var = sxx - sx * sx / c
        if var == 0:
            continue
        b = cov / var
        a = sy / c - b * sx / c
        pred[k] = a + b * ahead_ms / 1000.0
        slope[k] = b / 1000.0
    return pred, slope, count


@njit(cache=True)
def _hold_for(cond: np.ndarray, eval_t: np.ndarray, for_ms: float) -> np.ndarray:
    """Prometheus ``for:``: firing where ``cond`` has held continuously for at least ``for_ms``."""
    out = np.zeros(cond.shape[0], dtype=np.bool_)
    since = np.nan
    for k in range(cond.shape[0]):
        if cond[k]:
            if np.isnan(since):
                since = eval_t[k]
            out[k] = eval_t[k] - since >= for_ms
        else:
            since = np.nan
    return out


def filling_up_alerts(t: np.ndarray, used: np.ndarray, capacity: np.ndarray, eval_t: np.ndarray,
                      warn_pct: float = 40.0, crit_pct: float = 20.0, range_ms: float = 6 * H_MS,
                      warn_ahead_ms: float = 24 * H_MS, crit_ahead_ms: float = 4 * H_MS,
                      for_ms: float = 1 * H_MS) -> dict[str, np.ndarray]:
    """Warning and critical firing states at each evaluation time, and the time the warning line predicts the
    resource runs out (where the fitted line reaches zero, for lines that fall; NaN elsewhere)."""
    avail = capacity - used
    idx = np.searchsorted(t, eval_t, side="right") - 1
    valid = idx >= 0
    avail_now = np.where(valid, avail[np.clip(idx, 0, None)], np.nan)
    cap_now = np.where(valid, capacity[np.clip(idx, 0, None)], np.nan)
    pct = avail_now / cap_now * 100.0
    warn_pred, slope, _ = predict_linear(t, avail, eval_t, range_ms, warn_ahead_ms)
    crit_pred, _, _ = predict_linear(t, avail, eval_t, range_ms, crit_ahead_ms)
    warn_cond = (pct < warn_pct) & (warn_pred < 0)
    crit_cond = (pct < crit_pct) & (crit_pred < 0)
    intercept = warn_pred - slope * warn_ahead_ms  # the fitted line's available space at the evaluation time
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = np.where(slope < 0, eval_t + np.maximum(intercept, 0.0) / -slope, np.nan)
    return {"warning": _hold_for(warn_cond, eval_t, for_ms), "critical": _hold_for(crit_cond, eval_t, for_ms),
            "predicted_exhaustion": predicted}
