"""``augur bench kernels``: the ensemble's scoring speed, batch and per point, against the same math in plain
NumPy/Python, River's HalfSpaceTrees and scikit-learn's IsolationForest, plus training time per series.

All on one core, in one run, on the same seeded data (a daily-seasonal series with noise, 5-minute points):

- ``batch``: :func:`udfs.ensemble.score_batch` over whole arrays, all six detectors with trained models;
- ``stream``: one :func:`udfs.ensemble.step` call per point from Python (what a keyed operator does per record);
- ``plain``: the very same kernel code run as plain Python/NumPy (numba's JIT disabled, in a subprocess);
- ``river``: ``HalfSpaceTrees.score_one`` + ``learn_one`` per point (River's streaming anomaly detector);
- ``iforest``: our numba Isolation Forest vs ``IsolationForest.score_samples`` on the same 7-feature rows.

Last line: ``BENCH kernels batch_pts_per_s=.. stream_pts_per_s=.. vs_river=..x vs_sklearn_if=..x``
(``vs_river`` = stream / river per point; ``vs_sklearn_if`` = our forest / scikit-learn's, batch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

T0 = 1_700_000_000.0


def series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + 300.0 * np.arange(n)
    y = 100 + 10 * np.sin(2 * np.pi * t / 86400) + 3 * np.sin(2 * np.pi * t / (7 * 86400)) + rng.normal(0, 1, n)
    y[n // 2:n // 2 + 20] += 25
    return t, y


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def train_models(t: np.ndarray, y: np.ndarray, hidden: int) -> tuple[dict, dict]:
    from models import lstm_train, seasonal_prophet
    from models.ensemble_scorer import Models
    timings = {}
    start = time.perf_counter()
    season = seasonal_prophet.fit(t, y)
    timings["seasonal_prophet"] = time.perf_counter() - start
    start = time.perf_counter()
    _, weights = lstm_train.fit(y, hidden=hidden)
    timings["lstm"] = time.perf_counter() - start
    return {"models": Models(season, weights, "bench")}, timings


def bench_batch(models, t, y) -> float:
    from models.ensemble_scorer import EnsembleScorer
    from udfs.ensemble_params import EnsembleParams
    EnsembleScorer(EnsembleParams(), models).score(y[:200], t[:200])          # compile
    scorer = EnsembleScorer(EnsembleParams(), models)
    start = time.perf_counter()
    scorer.score(y, t)
    return _rate(len(y), time.perf_counter() - start)


def bench_stream(models, t, y) -> float:
    from udfs import ensemble as ens
    from udfs.ensemble_params import EnsembleParams
    p = EnsembleParams().to_array()
    state = ens.init_state(p)
    raw, probs = np.empty(ens.N_DET), np.empty(ens.N_DET)
    season, weights = models.season, models.lstm
    step = ens.step
    step(state, p, season, weights, float(y[0]), float(t[0]), raw, probs)
    start = time.perf_counter()
    for x, ts in zip(y.tolist(), t.tolist()):
        step(state, p, season, weights, x, ts, raw, probs)
    return _rate(len(y), time.perf_counter() - start)


def bench_plain(n: int, hidden: int, model_file: str) -> float:
    """The same kernels with numba disabled, in a child process (the switch is read at import)."""
    code = ("import json,sys,time,numpy as np\n"
            "from augur.bench.kernels import series\n"
            "from models.ensemble_scorer import EnsembleScorer, Models\n"
            "from udfs.ensemble_params import EnsembleParams\n"
            f"m=np.load({model_file!r}); t,y=series({n})\n"
            "s=EnsembleScorer(EnsembleParams(), Models(m['season'], m['lstm']))\n"
            "a=time.perf_counter(); s.score(y,t); print(json.dumps(len(y)/(time.perf_counter()-a)))\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_river(y: np.ndarray) -> float:
    from river import anomaly, preprocessing
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=0)
    start = time.perf_counter()
    for x in y.tolist():
        row = {"x": x}
        model.score_one(row)
        model.learn_one(row)
    return _rate(len(y), time.perf_counter() - start)


def bench_iforest(rows: int) -> tuple[float, float, float, float]:
    from sklearn.ensemble import IsolationForest
    from models import iforest_export
    rng = np.random.default_rng(1)
    train = rng.normal(size=(4000, 7))
    test = rng.normal(size=(rows, 7))
    start = time.perf_counter()
    forest = IsolationForest(n_estimators=100, random_state=0).fit(train)
    fit_s = time.perf_counter() - start
    arrays = iforest_export.export(forest)
    iforest_export.score(arrays, test[:10])
    start = time.perf_counter()
    ours = iforest_export.score(arrays, test)
    ours_rate = _rate(rows, time.perf_counter() - start)
    start = time.perf_counter()
    ref = forest.score_samples(test)
    sk_rate = _rate(rows, time.perf_counter() - start)
    return ours_rate, sk_rate, fit_s, float(np.max(np.abs(ours - ref)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="augur bench kernels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=400_000, help="points in the batch and stream runs")
    ap.add_argument("--plain-points", type=int, default=20_000, help="points for the slow plain-Python run")
    ap.add_argument("--river-points", type=int, default=50_000)
    ap.add_argument("--train-points", type=int, default=4032, help="history each model trains on (14 days)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from udfs.ensemble_params import EnsembleParams
    hidden = EnsembleParams().hidden
    t, y = series(args.points)
    models, train_s = train_models(t[:args.train_points], y[:args.train_points], hidden)
    models = models["models"]
    model_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"augur-bench-kernels-{os.getpid()}.npz")
    np.savez(model_file, season=models.season, lstm=models.lstm)
    try:
        batch = bench_batch(models, t, y)
        stream = bench_stream(models, t[:args.points // 4], y[:args.points // 4])
        plain = bench_plain(args.plain_points, hidden, model_file)
    finally:
        os.unlink(model_file)
    river = bench_river(y[:args.river_points])
    if_ours, if_sk, if_fit, if_err = bench_iforest(200_000)
    print(f"{'scorer':<44} {'points/s (1 core)':>18}")
    for name, rate in (("ensemble, numba, batch (whole arrays)", batch),
                       ("ensemble, numba, per point from Python", stream),
                       ("ensemble, same code as plain Python/NumPy", plain),
                       ("River HalfSpaceTrees, per point", river),
                       ("Isolation Forest, numba (7 features)", if_ours),
                       ("Isolation Forest, scikit-learn score_samples", if_sk)):
        print(f"{name:<44} {rate:>18,.0f}")
    print(f"\nbatch vs plain Python: {batch / plain:.0f}x; per point vs plain: {stream / plain:.0f}x")
    print(f"our forest's largest difference from scikit-learn's score_samples: {if_err:.1e}")
    print(f"training per series ({args.train_points} points): Prophet {train_s['seasonal_prophet']:.2f} s, "
          f"LSTM {train_s['lstm']:.2f} s; Isolation Forest (4000 x 7): {if_fit:.2f} s")
    print(f"BENCH kernels batch_pts_per_s={batch:.0f} stream_pts_per_s={stream:.0f} vs_river={stream / river:.1f}x "
          f"vs_sklearn_if={if_ours / if_sk:.1f}x vs_plain={batch / plain:.0f}x")
    return 0
