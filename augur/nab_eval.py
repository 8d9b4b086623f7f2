"""NAB quality harness: ``python -m augur.nab_eval [--data DIR] [--out DIR]``.

Runs :func:`augur.detect.detect` (exactly what ``augur detect`` runs) over every CSV of the NAB subset, writes one
output folder for the ensemble score, one for the alert score (``augur detect``'s ``alert_score``: the ensemble
score with an open incident's later points at 0) and one per detector alone (its calibrated score as
``anomaly_score``, from the same run, so the ablation compares like with like), and scores each folder with the
benchmark's own ``eval/nab_score.py``. Prints a table and ends with ``NAB ensemble standard=.. low_fp=.. low_fn=..
alert_standard=.. ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_DATA = SHARED / "data" / "nab-open"
DEFAULT_SCORER = SHARED / "eval" / "nab_score.py"
SUMMARY = re.compile(r"NAB\[open\] standard=(\S+) low_fp=(\S+) low_fn=(\S+)")


def _score_file(job: tuple[str, str, dict]) -> tuple[str, dict]:
    rel, data_dir, overrides = job
    from augur.config import Config
    from augur.detect import Timing, TrainingPolicy, detect, read_series
    from udfs.ensemble_params import EnsembleParams
    params = EnsembleParams.from_options(Config(overrides).section("ensemble"))
    stamps, t_s, values = read_series(Path(data_dir) / rel)
    timing = Timing()
    scores = detect(t_s, values, params, TrainingPolicy(), timing)
    return rel, {"stamps": stamps, "values": values, "score": scores.score, "alert": scores.alert(),
                 "probs": scores.probs, "onset": scores.onset, "timing": timing}


def write_outputs(out: Path, name: str, rel: str, stamps, values, score: np.ndarray) -> None:
    path = out / name / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    s = np.nan_to_num(score, nan=0.0)
    with open(path, "w") as f:
        f.write("timestamp,value,anomaly_score\n")
        for ts, v, a in zip(stamps, values, s):
            f.write(f"{ts},{float(v)!r},{a:.6f}\n")


def nab_score(data: Path, folder: Path, scorer: Path) -> tuple[float, float, float]:
    proc = subprocess.run([sys.executable, str(scorer), "--data", str(data), str(folder)], capture_output=True,
                          text=True, check=True)
    m = SUMMARY.search(proc.stdout)
    if not m:
        raise RuntimeError(f"nab_score.py printed no summary:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return tuple(float(x) for x in m.groups())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m augur.nab_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    ap.add_argument("--out", type=Path, default=Path(".cache/augur/nab"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ensemble option override")
    ap.add_argument("--files", help="regex: only the files whose path matches (quick looks; not a full score)")
    args = ap.parse_args(argv)
    from augur.config import parse_set_args
    from udfs.ensemble_params import DETECTORS
    overrides = parse_set_args(args.set)
    labels = json.loads((args.data / "labels.json").read_text())
    files = sorted(r for r in labels if not args.files or re.search(args.files, r))
    start = time.perf_counter()
    timings = []
    with ProcessPoolExecutor(args.workers) as pool:
        for rel, res in pool.map(_score_file, [(r, str(args.data), overrides) for r in files]):
            write_outputs(args.out, "ensemble", rel, res["stamps"], res["values"], res["score"])
            write_outputs(args.out, "alert", rel, res["stamps"], res["values"], res["alert"])
            for d, name in enumerate(DETECTORS):
                write_outputs(args.out, name, rel, res["stamps"], res["values"], res["probs"][:, d])
            timings.append(res["timing"])
            print(f"  {rel}: {len(res['values'])} rows, {int(res['onset'].sum())} incidents", file=sys.stderr)
    elapsed = time.perf_counter() - start
    rows = {}
    for name in ("alert", "ensemble", *DETECTORS):
        rows[name] = nab_score(args.data, args.out / name, args.scorer)
    base = rows["ensemble"][0]
    print(f"{'detector':<10} {'standard':>9} {'low_fp':>8} {'low_fn':>8}  ensemble vs it (standard)")
    for name, (st, lfp, lfn) in rows.items():
        rel = "" if name in ("ensemble", "alert") else (f"{(base - st) / abs(st) * 100:+.0f}%" if st else "n/a")
        print(f"{name:<10} {st:>9.2f} {lfp:>8.2f} {lfn:>8.2f}  {rel}")
    seas = [s for t in timings for s in t.seasonal_s]
    lstm = [s for t in timings for s in t.lstm_s]
    print(f"{len(files)} files in {elapsed:.0f} s ({args.workers} workers); trainings: seasonal {len(seas)} x "
          f"{np.mean(seas) if seas else 0:.2f} s, lstm {len(lstm)} x {np.mean(lstm) if lstm else 0:.2f} s")
    st, lfp, lfn = rows["ensemble"]
    ast, alfp, alfn = rows["alert"]
    print(f"NAB ensemble standard={st:.2f} low_fp={lfp:.2f} low_fn={lfn:.2f} alert_standard={ast:.2f} "
          f"alert_low_fp={alfp:.2f} alert_low_fn={alfn:.2f} files={len(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
