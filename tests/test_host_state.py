"""The per-host Isolation Forest stage (jobs/host_state.py): its residual kernel, its rows, its registry models and
its verdicts. The engines' agreement on it is checked with the rest of their output (test_backfill, test_stream_e2e)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from jobs import host_state
from models import iforest_export
from models.artifacts import Artifact, ArtifactError
from models.registry import ModelRegistry, host_forest
from schemas import codec, series, topics
from udfs import host_residuals, robust_zscore

W = 60_000
N_SIGNALS = len(host_state.SIGNALS)
METRICS = {"cpu": ("system.cpu.utilization", "gauge"), "io_p99": ("ebpf.block.io.latency", "histogram"),
           "http_p99": ("http.server.request.duration", "histogram"), "memory": ("system.memory.usage", "gauge")}


def feature(host: str, metric: str, mtype: str, value, end: int, attrs: dict | None = None) -> dict:
    attrs = attrs or {}
    return {"host": host, "metric": metric, "type": mtype, "attrs": attrs, "value": value,
            "series_id": series.series_id(host, metric, attrs), "window_start": end - W, "window_end": end}


def test_residuals_are_each_signals_robust_z_against_its_own_trailing_window():
    rng = np.random.default_rng(4)
    window, min_history = 20, 5
    rows = rng.normal(10.0, 2.0, size=(120, N_SIGNALS))
    rows[::7, 3] = np.nan                                   # a signal the host did not report in some windows
    rows[:, 5] = np.nan                                     # one it never reports
    rel, abs_ = np.full(N_SIGNALS, 1e-3), np.full(N_SIGNALS, 1e-9)
    state = host_residuals.init_state(N_SIGNALS, window)
    z = np.empty(N_SIGNALS)
    for i, row in enumerate(rows):
        ready = host_residuals.step(state, row, min_history, 6.0, rel, abs_, z)
        for k in range(N_SIGNALS):
            past = rows[:i, k][~np.isnan(rows[:i, k])][-window:]
            if np.isnan(row[k]) or past.size < min_history:
                assert z[k] == 0.0
            else:
                assert z[k] == pytest.approx(robust_zscore.reference_z(past, row[k], 1e-3, 1e-9), rel=1e-12)
        warming = any(not np.isnan(row[k]) and (~np.isnan(rows[:i, k])).sum() < min_history
                      for k in range(N_SIGNALS))
        assert ready == (not warming)


def test_a_hosts_row_does_not_depend_on_the_order_its_series_arrive():
    end = 10 * W
    feats = [feature("h", "system.cpu.utilization", "gauge", 0.1 * (i + 1) + 1e-9 * i, end, {"cpu": str(i)})
             for i in range(16)]
    feats += [feature("h", "http.server.requests", "counter", 30.0, end, {series.HTTP_STATUS_CLASS: "2xx"}),
              feature("h", "http.server.requests", "counter", 6.0, end, {series.HTTP_STATUS_CLASS: "4xx"}),
              feature("h", "http.server.requests", "counter", 4.0, end, {series.HTTP_STATUS_CLASS: "5xx"}),
              feature("h", "ebpf.block.io.latency", "histogram", None, end)]          # no value: adds nothing
    rows = []
    for seed in range(5):
        parts: host_state.Parts = {}
        for f in random.Random(seed).sample(feats, len(feats)):
            host_state.add_contribution(parts, f)
        rows.append(host_state.host_row(parts))
    assert all(r.tobytes() == rows[0].tobytes() for r in rows)
    row = dict(zip(host_state.SIGNALS, rows[0]))
    assert row["http_errors"] == 4.0 / 40.0
    assert row["cpu"] == pytest.approx(np.mean([0.1 * (i + 1) for i in range(16)]))
    assert np.isnan(row["io_p99"])                                     # not reported: unknown
    assert row["retrans"] == 0.0                                       # no retransmit counted: none happened


def test_retransmits_starting_on_a_quiet_host_are_judged_at_once():
    """The TCP collector sends retransmit counts only for ports with recent activity (and only non-zero ones with
    collect.zero-fill-ms 0): a storm on a host that never had one must be a departure from zero in its first
    window, not a new signal that leaves the host unjudged while it warms up (what a recorded drill showed)."""
    params = host_state.HostParams()
    scorer = host_state.HostScorer(params, ModelRegistry(None))
    state = scorer.init_state()
    k = host_state.SIGNALS.index("retrans")
    for i in range(params.min_history + 5):
        parts: host_state.Parts = {}
        host_state.add_contribution(parts, feature("h", "system.cpu.utilization", "gauge", 0.3, (i + 1) * W))
        z, ready = scorer.residuals(state, parts)
    assert ready and z[k] == 0.0
    storm = (params.min_history + 6) * W
    parts = {}
    for f in (feature("h", "system.cpu.utilization", "gauge", 0.3, storm),
              feature("h", "ebpf.tcp.retransmits", "delta", 40.0, storm, {"port": "8080"})):
        host_state.add_contribution(parts, f)
    z, ready = scorer.residuals(state, parts)
    assert ready and z[k] > params.outlier_z


def test_a_kept_host_state_is_recognised_by_its_layout_tag_and_an_untagged_one_is_carried_over(monkeypatch):
    """A state kept before states named their layout (the kernel's state alone) scores on exactly as if never
    stopped; a state of the same length but another layout (here: another signal list) starts fresh, where a length
    check alone would have read it out of place."""
    params = host_state.HostParams(min_history=5)
    scorer = host_state.HostScorer(params, ModelRegistry(None))
    rng = np.random.default_rng(9)
    windows = []
    for i in range(40):
        parts: host_state.Parts = {}
        for name, (metric, mtype) in METRICS.items():
            host_state.add_contribution(parts, feature("h", metric, mtype, 10.0 + rng.normal(), (i + 1) * W))
        windows.append(parts)
    state = scorer.init_state()
    assert state.shape[0] == scorer.size + 1 and state[-1] == scorer.tag
    untagged = host_residuals.init_state(N_SIGNALS, params.window)   # what the stream kept before
    z_ref, z_old = [], []
    for parts in windows[:30]:
        z_ref.append(scorer.residuals(state, parts)[0])
        host_residuals.step(untagged, host_state.host_row(parts), params.min_history, params.outlier_z,
                            host_state.REL_FLOORS, host_state.ABS_FLOORS, np.empty(N_SIGNALS))
    carried = scorer.restored(untagged.tolist())
    assert carried[-1] == scorer.tag and np.array_equal(carried[:-1], untagged, equal_nan=True)
    kept = scorer.restored(state.tolist())
    assert np.array_equal(kept, state, equal_nan=True)                  # this layout: as it is
    for parts in windows[30:]:
        z_ref.append(scorer.residuals(state, parts)[0])
        z_old.append(scorer.residuals(carried, parts)[0])
    assert np.array_equal(np.array(z_old), np.array(z_ref[30:]))
    assert np.array_equal(carried, state, equal_nan=True)

    assert scorer.tag != host_state.HostScorer(host_state.HostParams(window=61), None).tag
    monkeypatch.setattr(host_state, "SIGNALS", tuple(reversed(host_state.SIGNALS)))
    reordered = host_state.HostScorer(params, ModelRegistry(None))    # same sizes, signals in another order
    assert reordered.size == scorer.size and reordered.tag != scorer.tag
    foreign = state.copy()                                             # learned, but under the other layout
    foreign[-1] = reordered.tag
    assert np.array_equal(scorer.restored(foreign.tolist()), scorer.init_state(), equal_nan=True)
    assert not np.array_equal(scorer.restored(state.tolist()), scorer.init_state(), equal_nan=True)


def windows_of(n: int, rng, shift_at: int | None = None) -> list[dict]:
    feats = []
    for i in range(n):
        end = (i + 1) * W
        for name, (metric, mtype) in METRICS.items():
            v = {"cpu": 0.4, "io_p99": 2000.0, "http_p99": 50.0, "memory": 4e9}[name]
            v *= 1 + 0.05 * rng.normal()
            if shift_at is not None and shift_at <= i < shift_at + 3 and name in ("io_p99", "http_p99"):
                v *= 6.0                                      # I/O and HTTP latency up together
            feats.append(feature("web-1", metric, mtype, v, end))
    return feats


def test_the_forest_judges_a_hosts_windows_and_explains_its_verdict(tmp_path):
    rng = np.random.default_rng(2)
    registry = ModelRegistry(tmp_path)
    params = host_state.HostParams()
    rows = host_state.training_rows(windows_of(400, rng), params)["web-1"]
    assert rows.shape == (400 - params.min_history, N_SIGNALS)
    registry.save_forest("web-1", iforest_export.host_artifact(rows, list(host_state.SIGNALS), "iforest/test"))
    scorer = host_state.HostScorer(params, registry)
    runner = host_state.HostRunner(scorer)
    for f in windows_of(300, rng, shift_at=250):
        runner.add(f)
    got = runner.close_until(300 * W)
    assert runner.pending == {"web-1": {}}
    at_shift = [a for a in got if 251 * W <= a["window_end"] <= 253 * W]
    assert at_shift and len(got) <= 10, [a["window_end"] // W for a in got]
    forest = registry.forest_for("web-1", N_SIGNALS)
    for a in at_shift:
        codec.encode(topics.ANOMALIES.name, a)                  # a valid augur.anomalies.v1 record
        assert a["metric"] == host_state.HOST_METRIC and a["series_id"] == series.series_id("web-1", a["metric"], {})
        assert [d["name"] for d in a["detectors"]] == ["iforest", "envelope"]
        assert all(d["model_version"] == "iforest/test" for d in a["detectors"])
        assert a["score"] == max(d["score"] for d in a["detectors"] if d["vote"])
        assert "io_p99 +" in a["explanation"] and "http_p99 +" in a["explanation"]
    # the jump is beyond the envelope of both latencies from its first window on ...
    first = at_shift[0]
    assert first["window_end"] == 251 * W and first["detectors"][1]["vote"]
    assert "io_p99, http_p99 beyond anything in its training" in first["explanation"] \
        or "http_p99, io_p99 beyond anything in its training" in first["explanation"]
    # ... and the forest isolates it in one of its three windows (it knows only the training range: a point far
    # beyond it lands in the leaves of the most extreme training points, so not necessarily in the first)
    isolated = [a for a in at_shift if a["detectors"][0]["vote"]]
    assert isolated and all(a["detectors"][0]["raw"] < forest.threshold for a in isolated)
    assert "more isolated than any window its forest was trained on" in isolated[0]["explanation"]
    # a host without a forest is followed but never judged
    other = host_state.HostRunner(host_state.HostScorer(params, ModelRegistry(tmp_path / "empty")))
    for f in windows_of(300, rng, shift_at=250):
        other.add(f)
    assert other.close_until(300 * W) == [] and other.states["web-1"][0] == 300


def test_a_signal_flat_in_training_that_departs_is_judged_by_the_envelope_not_the_forest(tmp_path):
    """A host that never had a 5xx: its error-ratio signal is 0 in every training row, so the forest never splits on
    it and an error burst scores like any window. The envelope (the largest |z| per signal in training, at least
    ensemble.outlier-z) flags it, and names the signal. A forest saved before envelopes existed still scores."""
    rng = np.random.default_rng(4)
    params = host_state.HostParams()
    k = host_state.SIGNALS.index("http_errors")

    def windows(n: int, burst_at: int | None = None) -> list[dict]:
        feats = windows_of(n, rng)
        for i in range(n):
            end = (i + 1) * W
            ok = feature("web-1", "http.server.requests", "delta", 1000.0, end, {"http.response.status_class": "2xx"})
            feats.append(ok)
            if burst_at is not None and burst_at <= i < burst_at + 3:
                feats.append(feature("web-1", "http.server.requests", "delta", 400.0, end,
                                     {"http.response.status_class": "5xx"}))
        return feats

    rows = host_state.training_rows(windows(300), params)["web-1"]
    assert np.all(rows[:, k] == 0.0)                               # flat in training
    art = iforest_export.host_artifact(rows, list(host_state.SIGNALS), "iforest/flat")
    assert art.meta["envelope"][k] == 0.0
    registry = ModelRegistry(tmp_path / "with")
    registry.save_forest("web-1", art)
    runner = host_state.HostRunner(host_state.HostScorer(params, registry))
    burst = windows(300, burst_at=250)
    for f in burst:
        runner.add(f)
    got = {a["window_end"]: a for a in runner.close_until(300 * W)}
    a = got.get(251 * W)
    assert a is not None, sorted(e // W for e in got)
    forest_vote, envelope_vote = (d["vote"] for d in a["detectors"])
    assert envelope_vote and not forest_vote                       # the forest alone would have missed it
    assert a["explanation"].startswith("state of host web-1: http_errors beyond anything in its training")
    assert a["detectors"][1]["raw"] > 1.0 and a["score"] == a["detectors"][1]["score"]
    # the same forest without its envelope (saved by an earlier version): the forest alone, which misses the burst
    old = Artifact(art.kind, art.version, art.arrays, {m: v for m, v in art.meta.items() if m != "envelope"})
    assert host_forest(old, N_SIGNALS).envelope is None
    registry = ModelRegistry(tmp_path / "without")
    registry.save_forest("web-1", old)
    runner = host_state.HostRunner(host_state.HostScorer(params, registry))
    for f in burst:
        runner.add(f)
    judged = runner.close_until(300 * W)
    assert [a for a in judged if 251 * W <= a["window_end"] <= 253 * W] == []
    assert all([d["name"] for d in a["detectors"]] == ["iforest"] for a in judged)


def test_the_registry_refuses_a_forest_that_does_not_fit_and_keeps_the_previous_one(tmp_path, capsys):
    rng = np.random.default_rng(0)
    good = iforest_export.host_artifact(rng.normal(size=(200, N_SIGNALS)), list(host_state.SIGNALS), "v1")
    assert host_forest(good, N_SIGNALS).threshold == good.meta["threshold"]
    with pytest.raises(ArtifactError, match="signals"):
        host_forest(good, N_SIGNALS - 1)
    looping = Artifact(good.kind, "v2", {**good.arrays, "left": good.arrays["left"].copy()}, good.meta)
    inner = np.flatnonzero(looping.arrays["feature"] >= 0)[5]
    looping.arrays["left"][inner] = inner                     # a node that is its own child would never end
    with pytest.raises(ArtifactError, match="outside the forest"):
        host_forest(looping, N_SIGNALS)
    for bad in ([1.0] * (N_SIGNALS - 1), [float("nan")] * N_SIGNALS, [-1.0] * N_SIGNALS, "high"):
        with pytest.raises(ArtifactError, match="envelope|not a host forest"):
            host_forest(Artifact(good.kind, "v3", good.arrays, {**good.meta, "envelope": bad}), N_SIGNALS)
    registry = ModelRegistry(tmp_path, recheck_s=0.0)
    registry.save_forest("h", good)
    assert registry.forest_for("h", N_SIGNALS).version == "v1"
    registry.save_forest("h", looping)
    os.utime(registry.forest_path("h"), ns=(1, 1))            # another version on disk
    assert registry.forest_for("h", N_SIGNALS).version == "v1"
    assert "ignoring the iforest model of host h" in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="iforest"):
        registry.save_forest("h", Artifact("lstm", "x", {}))
