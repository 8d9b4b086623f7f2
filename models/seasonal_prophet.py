"""Fit Prophet (trend + daily/weekly seasonality) on a series' history and export it for :mod:`udfs.seasonal`.

Prophet chooses the seasonalities from the history's span as usual (daily from 2 days, weekly from 2 weeks);
the fitted MAP parameters are flattened into the array layout documented in :mod:`udfs.seasonal`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from models.artifacts import Artifact

KIND = "seasonal_prophet"
MIN_POINTS = 20


def fit(t_s: np.ndarray, y: np.ndarray, changepoint_prior_scale: float = 0.05) -> np.ndarray:
    """Fit on ``(t_s seconds since the epoch, y)``; return the flat parameter array (empty if it can't be fitted)."""
    import pandas as pd
    from prophet import Prophet
    for name in ("cmdstanpy", "prophet"):        # after the import, which configures them
        logging.getLogger(name).setLevel(logging.WARNING)

    ok = np.isfinite(y) & np.isfinite(t_s)
    if ok.sum() < MIN_POINTS or np.ptp(t_s[ok]) <= 0:
        return np.empty(0)
    df = pd.DataFrame({"ds": pd.to_datetime(t_s[ok].astype(np.int64), unit="s"), "y": y[ok]})
    model = Prophet(changepoint_prior_scale=changepoint_prior_scale, yearly_seasonality=False,
                    uncertainty_samples=0)
    model.fit(df)
    return export(model)


def export(model) -> np.ndarray:
    if model.seasonality_mode != "additive" or model.growth != "linear" or model.extra_regressors:
        raise ValueError("only additive, linear-growth Prophet models without extra regressors are exported")
    params = model.params
    cps = np.asarray(model.changepoints_t, dtype=float)
    delta = np.asarray(params["delta"], dtype=float).reshape(-1)[:cps.shape[0]]
    beta = np.asarray(params["beta"], dtype=float).reshape(-1)
    out = [model.start.value / 1e9, model.t_scale.total_seconds(), float(model.y_scale),
           float(np.asarray(params["k"]).reshape(-1)[0]), float(np.asarray(params["m"]).reshape(-1)[0]),
           float(cps.shape[0]), *cps, *delta, float(len(model.seasonalities))]
    col = 0
    for props in model.seasonalities.values():
        if props.get("mode", "additive") != "additive" or props.get("condition_name") is not None:
            raise ValueError("only unconditional additive seasonalities are exported")
        order = int(props["fourier_order"])
        out += [float(props["period"]), float(order), *beta[col:col + 2 * order]]
        col += 2 * order
    if model.seasonalities and col != beta.shape[0]:  # without seasonalities Prophet fits one dummy zero column
        raise ValueError(f"Prophet has {beta.shape[0]} seasonal coefficients, {col} exported")
    return np.asarray(out, dtype=np.float64)


def train_artifact(t_s: np.ndarray, y: np.ndarray, series_id: str) -> Artifact:
    start = time.perf_counter()
    params = fit(t_s, y)
    return Artifact(KIND, f"{KIND}/{int(t_s[-1])}", {"params": params},
                    {"series_id": series_id, "points": int(len(y)), "fit_s": time.perf_counter() - start})
