"""The stream's host stage (``jobs.flink_functions.ScoreHosts``) restored from a savepoint of its old state layout,
in a real Flink (mini-cluster).

Before the map state, a host's open windows were one JSON value (``host_windows``) with an event-time timer per
window. A savepoint taken then holds that value and those timers; the stage moves the windows into its map when it
first sees the host after the restore. Producing such a savepoint would need the old code and a stop at a moment
when windows are open, so the restore is the one part played here: the test's stage writes three windows exactly
as the old code did (its ``process_element``, kept below), then forgets that it has looked at the host, as a
restored task has not. Everything else is the stage's own code on Flink's state and timers."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from pyflink.common import Row

from augur.config import Config
from augur.paths import REPO_ROOT
from jobs import flink_functions as fn
from jobs import host_state
from models import iforest_export
from models.registry import ModelRegistry
from schemas import codec, topics
from tests.test_host_state import W, windows_of

pytestmark = [pytest.mark.flink]

SHIFT_AT = 250                                         # windows 251..253: I/O and HTTP latency six times higher
OLD_LAYOUT = frozenset(e * W for e in range(SHIFT_AT + 1, SHIFT_AT + 4))
LEFT_BEHIND = "old layout left behind"


class RestoredFromOldLayout(fn.ScoreHosts):
    """The stage, except that the records of the windows in ``old_ends`` are kept as the old code kept them."""

    def __init__(self, cfg: dict, old_ends: frozenset):
        super().__init__(cfg)
        self.old_ends = old_ends

    def process_element(self, feature: dict, ctx):
        if feature["window_end"] not in self.old_ends:
            return super().process_element(feature, ctx)
        # the old process_element, verbatim but for the state's attribute name
        stored = self.legacy.value()
        pending = orjson.loads(stored) if stored else {}
        end = feature["window_end"]
        entry = pending.get(str(end))
        if entry is None:
            entry = pending[str(end)] = {"start": feature["window_start"], "parts": {}}
            ctx.timer_service().register_event_time_timer(end - 1)
        host_state.add_contribution(entry["parts"], feature)
        self.legacy.update(orjson.dumps(pending).decode())
        # a restored task has not looked at any host yet
        self.legacy_checked.discard(ctx.get_current_key())

    def on_timer(self, timestamp: int, ctx):
        yield from super().on_timer(timestamp, ctx)
        left = self.legacy.value()
        if left:                                       # moved windows must not stay behind for a later restore
            yield Row(LEFT_BEHIND, left)


def run_job(models_dir: str, features_path: str, out_path: str) -> None:
    """The stage over the features of ``features_path`` (JSON lines), its output rows to ``out_path``.

    Run in a process of its own (``python -m tests.test_host_stage_restore``), as users run jobs: PyFlink's
    loopback worker writes its settings into the environment of the process that runs a job, one of which stops
    any later job started from that process (the stream tests start theirs from the test process)."""
    from pyflink.common import Types

    from jobs.flink_env import create_stream_env

    cfg = Config.load(None, {"models.dir": models_dir})
    env = create_stream_env(cfg, checkpoint_interval_ms=0)
    env.set_parallelism(1)
    with open(features_path) as f:
        features = f.read().splitlines()
    # no watermark until the input ends: every window is open when the old-layout ones are written, and the
    # timers then fire in time order, the three restored windows' among them
    stream = (env.from_collection(features, type_info=Types.STRING())
              .map(orjson.loads, output_type=Types.PICKLED_BYTE_ARRAY())
              .key_by(lambda f: f["host"], key_type=Types.STRING())
              .process(RestoredFromOldLayout(cfg.to_dict(), OLD_LAYOUT), output_type=fn.KEYED_JSON))
    with stream.execute_and_collect() as rows, open(out_path, "wb") as out:
        for row in rows:
            out.write(orjson.dumps(list(row)) + b"\n")


def test_windows_of_an_old_layout_savepoint_are_scored_as_if_never_stopped(tmp_path):
    import numpy as np

    rng = np.random.default_rng(2)
    params = host_state.HostParams()
    registry = ModelRegistry(tmp_path / "models")
    rows = host_state.training_rows(windows_of(400, rng), params)["web-1"]
    registry.save_forest("web-1", iforest_export.host_artifact(rows, list(host_state.SIGNALS), "iforest/test"))
    features = windows_of(300, rng, shift_at=SHIFT_AT)
    assert {f["window_end"] for f in features} >= OLD_LAYOUT

    reference = host_state.HostRunner(host_state.HostScorer(params, registry))
    for f in features:
        reference.add(f)
    expected = reference.close_until(300 * W)
    # the windows kept in the old layout are among those the forest judges: losing them would show
    assert OLD_LAYOUT <= {a["window_end"] for a in expected}, [a["window_end"] // W for a in expected]

    (tmp_path / "features.jsonl").write_bytes(b"\n".join(orjson.dumps(f) for f in features))
    done = subprocess.run([sys.executable, "-m", "tests.test_host_stage_restore", str(tmp_path / "models"),
                           str(tmp_path / "features.jsonl"), str(tmp_path / "out.jsonl")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [r for r in out if r[0] == LEFT_BEHIND] == []
    got = [codec.decode(topics.ANOMALIES.name, r[1].encode()) for r in out]

    assert len(got) == len(expected)
    for g, e in zip(sorted(got, key=lambda a: a["window_end"]), expected):
        assert (g["window_end"], g["score"], g["explanation"]) == (e["window_end"], e["score"], e["explanation"])


if __name__ == "__main__":
    run_job(*sys.argv[1:4])
