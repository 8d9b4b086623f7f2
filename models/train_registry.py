"""``augur train``: fit each series' models on its history and put them in the model registry.

Reads telemetry history (the Parquet archive, or JSONL/Parquet files from ``augur synth`` / ``augur record``),
builds the same window features as the stream, and for every series with at least ``--min-windows`` usable windows
fits Prophet (trend + seasonality) and the LSTM on exactly what the stream's scorer sees: the type's
variance-stabilised primary value at each window end. Each host with at least ``--min-windows`` windows also gets an
Isolation Forest over its signals' deviations (:mod:`jobs.host_state`), fitted on exactly the rows the stream
computes. The models land in ``models.dir`` (or ``--models-dir``); a running job picks them up within
``models.recheck-s``. History is held in memory, so train on days, not months, per run.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict

import numpy as np

from augur.config import Config, parse_set_args
from models import lstm_train, seasonal_prophet
from models.artifacts import Artifact
from models.registry import ModelRegistry
from udfs.transforms import stabilize


def history_features(inputs: list[str], cfg: Config) -> tuple[list[dict], int]:
    """Feature records of the history in ``inputs``, and how many input messages were rejected."""
    from jobs import reference, steps
    from jobs.history_sources import plan_files, read_shard
    from schemas import codec
    samples, rejected = [], 0
    now = time.time_ns() // 1_000_000
    for shard in plan_files(inputs).shards:
        for raw, _ in read_shard(shard, "fail", []):
            try:
                samples.append(steps.parse_telemetry(raw, now, cfg)[1])
            except codec.Rejected:
                rejected += 1
    window = cfg["stream.window-size-ms"]
    return reference.features(samples, window), rejected


def series_labels(features: list[dict]) -> dict[str, str]:
    """Per series id: ``host metric{attrs}``, what ``--match`` is matched against."""
    from schemas import series
    return {f["series_id"]: f"{f['host']} {series.describe(f['metric'], f['attrs'])}" for f in features}


def series_histories(features: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per series: (window ends in seconds, stabilised values), in time order."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for f in features:
        v = f["value"]
        x = np.nan if v is None else stabilize(f["type"], float(v), f["window_end"] - f["window_start"])
        by[f["series_id"]].append((f["window_end"] / 1000.0, x))
    return {sid: tuple(np.array(c) for c in zip(*sorted(rows))) for sid, rows in by.items()}


def train_forests(features: list[dict], cfg: Config, registry: ModelRegistry, min_windows: int,
                  match: str | None = None) -> int:
    """Fit and save the forest of every host with ``min_windows`` warm windows (and matching ``match``)."""
    from jobs import host_state
    from models import iforest_export
    done = 0
    last_end = max((f["window_end"] for f in features), default=0)
    for host, rows in host_state.training_rows(features, host_state.HostParams.from_config(cfg)).items():
        if (match and not re.search(match, host)) or rows.shape[0] < min_windows:
            continue
        registry.save_forest(host, iforest_export.host_artifact(
            rows, list(host_state.SIGNALS), f"{iforest_export.KIND}/{last_end // 1000}"))
        done += 1
    return done


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="augur train", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="archive folder(s) or telemetry files (.jsonl[.gz], .parquet)")
    ap.add_argument("--models-dir", help="the registry (default: the models.dir option)")
    ap.add_argument("--match", help="regex: only the series whose 'host metric{attrs}' matches")
    ap.add_argument("--min-windows", type=int, default=288, help="usable windows a series needs to be trained")
    ap.add_argument("--no-lstm", action="store_true", help="fit the seasonal model only (no torch needed)")
    ap.add_argument("--no-forest", action="store_true", help="fit no host forests")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    cfg = Config.load(args.config, parse_set_args(args.set))
    root = args.models_dir or cfg["models.dir"]
    if not root:
        print("augur train: no registry: pass --models-dir or set models.dir", file=sys.stderr)
        return 2
    registry = ModelRegistry(root)
    features, rejected = history_features(args.inputs, cfg)
    histories = series_histories(features)
    labels = series_labels(features)
    params_hidden = cfg["ensemble.hidden"]
    trained = skipped = 0
    start = time.perf_counter()
    for sid, (t_s, y) in sorted(histories.items()):
        if args.match and not re.search(args.match, labels[sid]):
            continue
        if np.isfinite(y).sum() < args.min_windows:
            skipped += 1
            continue
        version = f"{int(t_s[-1])}"
        registry.save(sid, Artifact(seasonal_prophet.KIND, f"{seasonal_prophet.KIND}/{version}",
                                    {"params": seasonal_prophet.fit(t_s, y)}, {"series_id": sid, "points": len(y)}))
        if not args.no_lstm:
            _, weights = lstm_train.fit(y, hidden=params_hidden, input_clip=cfg["ensemble.input-clip"])
            registry.save(sid, Artifact(lstm_train.KIND, f"{lstm_train.KIND}/{version}", {"weights": weights},
                                        {"series_id": sid, "points": len(y)}))
        trained += 1
    forests = 0 if args.no_forest else train_forests(features, cfg, registry, args.min_windows, args.match)
    print(f"augur train: {len(features)} windows of {len(histories)} series ({rejected} input messages rejected); "
          f"trained {trained}, skipped {skipped} with fewer than {args.min_windows} windows; {forests} host "
          f"forest(s); in {time.perf_counter() - start:.1f} s; models in {root}")
    return 0
