"""``augur detect``: score one series from a CSV with the streaming ensemble, causally.

Input ``timestamp,value`` (ISO-like times, naive = UTC, or epoch seconds/milliseconds; any spacing). Output one row
per input row: ``timestamp, value, anomaly_score, is_anomaly, verdict, alert_score`` and each detector's calibrated
score. ``alert_score`` is the anomaly score except 0 inside an incident after its first point (:meth:`Scores.alert`):
thresholding it alerts once per incident.

The rows are replayed through exactly the streaming kernel (:class:`models.ensemble_scorer.EnsembleScorer`). Models
are trained on the fly from the series' own past only: at row ``train_after``, then at each doubling of the rows
seen (at most ``retrain_every`` rows apart), on the rows before that point. So the score of a row depends only on
the rows at or before it, and scoring a prefix of a file gives the same scores as the prefix of the full output.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.ensemble_scorer import EnsembleScorer, Models, Scores
from udfs import ensemble as ens
from udfs.ensemble_params import DETECTORS, EnsembleParams


class InputError(ValueError):
    """The input file cannot be scored (and why)."""


@dataclass(frozen=True)
class TrainingPolicy:
    train_after: int = 288          # rows before the first training (a day of 5-minute points)
    retrain_every: int = 4096       # the longest gap between trainings, in rows
    max_history: int = 8640         # rows a training uses at most (the latest ones)
    seasonal: bool = True
    lstm: bool = True

    def __post_init__(self):
        if self.train_after < 1 or self.retrain_every < 1 or self.max_history < 2:
            raise ValueError("train_after and retrain_every must be >= 1 and max_history >= 2")

    def schedule(self, n: int) -> list[int]:
        """Row indexes at which models are (re)trained on the rows before them."""
        out, k = [], self.train_after
        while k < n:
            out.append(k)
            k = min(2 * k, k + self.retrain_every)
        return out


@dataclass
class Timing:
    seasonal_s: list[float] = field(default_factory=list)
    lstm_s: list[float] = field(default_factory=list)
    scoring_s: float = 0.0


def read_series(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(timestamp texts, t seconds since the epoch, values)``; non-numeric values are NaN (scored as gaps)."""
    import pandas as pd
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV: {exc}") from exc
    cols = [c.strip().lower() for c in df.columns]
    if "timestamp" not in cols or "value" not in cols:
        raise InputError(f"{path}: needs the columns timestamp,value (found {', '.join(df.columns)})")
    if df.empty:
        raise InputError(f"{path}: no rows to score")
    stamps = df.iloc[:, cols.index("timestamp")].str.strip()
    values = pd.to_numeric(df.iloc[:, cols.index("value")], errors="coerce").to_numpy(np.float64)
    values[~np.isfinite(values)] = np.nan
    numeric = pd.to_numeric(stamps, errors="coerce")
    if len(stamps) and numeric.notna().all():
        t = numeric.to_numpy(np.float64)
        if np.nanmax(np.abs(t)) > 1e11:
            t = t / 1000.0
    else:
        try:
            parsed = pd.to_datetime(stamps, format="mixed", utc=True)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: unreadable timestamp: {exc}") from exc
        t = parsed.astype("int64").to_numpy() / 1e9
    if len(t) > 1 and np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0)) + 1
        raise InputError(f"{path}: timestamps go backwards at row {i + 2} ({stamps.iloc[i]})")
    return list(stamps), t, values


def train_models(t_s: np.ndarray, values: np.ndarray, policy: TrainingPolicy, params: EnsembleParams,
                 timing: Timing, seed: int = 0) -> Models:
    t_s, values = t_s[-policy.max_history:], values[-policy.max_history:]
    season = lstm_w = np.empty(0)
    if policy.seasonal:
        from models import seasonal_prophet
        start = time.perf_counter()
        season = seasonal_prophet.fit(t_s, values)
        timing.seasonal_s.append(time.perf_counter() - start)
    if policy.lstm:
        from models import lstm_train
        start = time.perf_counter()
        _, lstm_w = lstm_train.fit(values, hidden=params.hidden, seed=seed, input_clip=params.input_clip)
        timing.lstm_s.append(time.perf_counter() - start)
    return Models(season, lstm_w, f"trained@{len(values)}")


def detect(t_s: np.ndarray, values: np.ndarray, params: EnsembleParams | None = None,
           policy: TrainingPolicy | None = None, timing: Timing | None = None) -> Scores:
    """Score a whole series causally (see the module doc)."""
    params = params or EnsembleParams()
    policy = policy or TrainingPolicy()
    timing = timing if timing is not None else Timing()
    scorer = EnsembleScorer(params)
    parts: list[Scores] = []
    start = 0
    for k in policy.schedule(len(values)) + [len(values)]:
        began = time.perf_counter()
        parts.append(scorer.score(values[start:k], t_s[start:k]))
        timing.scoring_s += time.perf_counter() - began
        if k < len(values):
            models = train_models(t_s[:k], values[:k], policy, params, timing)
            scorer.adopt(models, values[max(0, k - 4 * params.window):k])
        start = k
    return Scores(*(np.concatenate([getattr(p, f) for p in parts]) for f in Scores._fields))


def write_scores(path, stamps: list[str], values: np.ndarray, scores: Scores, params: EnsembleParams) -> None:
    names = [n for d, n in enumerate(DETECTORS) if params.weights[d] > 0]
    out = open(path, "w", newline="") if path != "-" else sys.stdout
    try:
        w = csv.writer(out)
        w.writerow(["timestamp", "value", "anomaly_score", "is_anomaly", "verdict", "alert_score",
                    *[f"score_{n}" for n in names]])
        verdicts = {ens.VERDICT_WARMUP: "warmup", ens.VERDICT_NORMAL: "normal", ens.VERDICT_ANOMALY: "anomaly"}
        cols = [DETECTORS.index(n) for n in names]
        alert = scores.alert()
        for i, stamp in enumerate(stamps):
            s, a = scores.score[i], alert[i]
            w.writerow([stamp, _num(values[i]), f"{0.0 if math.isnan(s) else s:.6f}",
                        int(scores.verdict[i] == ens.VERDICT_ANOMALY), verdicts[int(scores.verdict[i])],
                        f"{0.0 if math.isnan(a) else a:.6f}", *[_num(scores.probs[i, d], 6) for d in cols]])
    finally:
        if out is not sys.stdout:
            out.close()


def _num(x: float, digits: int | None = None) -> str:
    if x != x:
        return ""
    return f"{x:.{digits}f}" if digits else repr(float(x))


def params_from(cfg, only: str | None) -> EnsembleParams:
    params = EnsembleParams.from_options(cfg.section("ensemble"))
    return params.only(only) if only else params


def run(args, cfg) -> int:
    params = params_from(cfg, args.only)
    try:
        policy = TrainingPolicy(train_after=args.train_after, retrain_every=args.retrain_every,
                                seasonal=not args.no_seasonal, lstm=not args.no_lstm)
        stamps, t_s, values = read_series(args.input)
    except (InputError, ValueError) as exc:
        print(f"augur detect: {exc}", file=sys.stderr)
        return 2
    timing = Timing()
    scores = detect(t_s, values, params, policy, timing)
    write_scores(args.output, stamps, values, scores, params)
    n_inc = int(scores.onset.sum())
    gaps = int(np.isnan(values).sum())
    print(f"augur detect: {len(values)} rows ({gaps} without a usable value, scored as gaps), {n_inc} incident(s), "
          f"scoring {timing.scoring_s:.2f} s, "
          f"training seasonal {sum(timing.seasonal_s):.1f} s / lstm {sum(timing.lstm_s):.1f} s "
          f"({len(timing.lstm_s) or len(timing.seasonal_s)} trainings)", file=sys.stderr)
    return 0
