"""The model registry: per-series artifacts picked up by a running scorer without a restart, bad files reported."""

import numpy as np

from augur.config import Config
from jobs import steps
from models.artifacts import Artifact
from models.registry import ModelRegistry

SID = "host-1|system.cpu.utilization|"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _season(level: float) -> Artifact:
    # no trend, no changepoint, no seasonality: a constant expectation `level`
    return Artifact("seasonal_prophet", f"seasonal_prophet/{level}",
                    {"params": np.array([0.0, 1.0, 1.0, 0.0, level, 0.0, 0.0])})


def test_new_versions_are_loaded_after_the_recheck_interval(tmp_path, capsys):
    clock = Clock()
    reg = ModelRegistry(tmp_path, recheck_s=60, clock=clock)
    assert reg.models_for(SID).season.shape == (0,)
    reg.save(SID, _season(5.0))
    assert reg.models_for(SID).season.shape == (0,)          # cached until the recheck
    clock.now = 61
    first = reg.models_for(SID)
    assert first.season[4] == 5.0 and first.version == "seasonal_prophet/5.0"
    reg.save(SID, _season(7.0))
    clock.now = 200
    assert reg.models_for(SID).season[4] == 7.0
    reg.path(SID, "lstm").write_bytes(b"not a model")
    clock.now = 300
    kept = reg.models_for(SID)
    assert kept.season[4] == 7.0 and kept.lstm.shape == (0,)
    assert "ignoring lstm model of " + SID in capsys.readouterr().err
    reg.save(SID, Artifact("lstm", "lstm/short", {"weights": np.array([8.0, 0.0, 1.0, 0.5])}))
    reg.save(SID, Artifact("seasonal_prophet", "bad", {"params": np.array([0.0, 1.0, 1.0, 0.0, 1.0, 3.0, 0.0])}))
    clock.now = 400
    kept = reg.models_for(SID)
    assert kept.season[4] == 7.0 and kept.lstm.shape == (0,)       # truncated models are refused, not read past
    err = capsys.readouterr().err
    assert "not a whole model" in err and "do not match their own layout" in err


def test_the_stream_scorer_switches_to_registry_models(tmp_path):
    # the registry's clock is the test's: with a wall clock and a short recheck interval, how many windows were
    # scored before the model was seen depended on the machine's speed (too many, and the seasonal detector's
    # calibration had not seen enough scores by the last window)
    cfg = Config({"models.dir": str(tmp_path), "models.recheck-s": "60"})
    scorer = steps.EnsembleFeatureScorer.from_config(cfg)
    clock = scorer.registry.clock = Clock()
    state = scorer.init_state()
    rng = np.random.default_rng(2)

    def feature(i, value):
        return {"series_id": SID, "host": "host-1", "metric": "system.cpu.utilization", "attrs": {},
                "type": "gauge", "value": value, "window_start": i * 60_000, "window_end": (i + 1) * 60_000}
    for i in range(200):
        assert scorer.score(state, feature(i, 0.5 + 0.01 * rng.normal())) is None
    ModelRegistry(tmp_path).save(SID, _season(0.5))
    clock.now = 61                                    # the next window looks at the registry again
    records = [scorer.score(state, feature(200 + i, 0.5 + 0.01 * rng.normal())) for i in range(100)]
    records.append(scorer.score(state, feature(300, 0.95)))
    assert all(r is None for r in records[:-1])
    anomaly = records[-1]
    assert anomaly is not None and anomaly["verdict"] == "anomaly"
    names = {d["name"]: d for d in anomaly["detectors"]}
    assert names["seasonal"]["model_version"] == "seasonal_prophet/0.5"


def test_augur_train_fills_the_registry_from_history(tmp_path, capsys):
    import json
    from augur.cli import main
    from collectors.synthetic import SyntheticTelemetry
    from udfs import lstm
    gen = SyntheticTelemetry(hosts=1, seed=3)
    start = 1_767_225_600_000
    history = tmp_path / "history.jsonl"
    with open(history, "w") as f:
        f.write("not json\n")                                   # rejected and counted, not fatal
        for batch in gen.iter_range(start, start + 6 * 3_600_000):
            f.writelines(json.dumps(s) + "\n" for s in batch)
    models = tmp_path / "models"
    assert main(["train", str(history), "--models-dir", str(models), "--match", "^host-1 system.cpu.utilization",
                 "--min-windows", "300"]) == 0
    out = capsys.readouterr().out
    assert "of 12 series (1 input messages rejected); trained 1, skipped 0" in out
    from schemas import series
    sid = series.series_id("host-1", "system.cpu.utilization", {})
    got = ModelRegistry(models).models_for(sid)
    assert got.season.shape[0] > 7 and lstm.hidden_size(got.lstm) == 8
    assert got.version.startswith("seasonal_prophet/") and "+lstm/" in got.version
    assert main(["train", str(history), "--models-dir", str(models), "--match", "cpu.utilization",
                 "--min-windows", "1000", "--no-lstm"]) == 0
    assert "trained 0, skipped 1 with fewer than 1000 windows" in capsys.readouterr().out
    # the host's forest, over the host's signals (its name is what --match sees for it)
    assert main(["train", str(history), "--models-dir", str(models), "--match", "^host-1$",
                 "--min-windows", "300"]) == 0
    assert "trained 0, skipped 0 with fewer than 300 windows; 1 host forest(s)" in capsys.readouterr().out
    from jobs import host_state
    forest = ModelRegistry(models).forest_for("host-1", len(host_state.SIGNALS))
    assert forest is not None and forest.version.startswith("iforest/") and -1 < forest.threshold < 0
