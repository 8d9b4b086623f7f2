"""The engine-independent steps on a labelled scenario, in-process: the expectations the Flink job must meet."""

from augur.config import Config
from jobs import reference, steps
from schemas import codec, topics
from tests.scenarios import cpu_hog_scenario, in_fault_window
from tests.test_schemas import reference_validator


def test_reference_pipeline_finds_the_fault_and_nothing_else():
    sc = cpu_hog_scenario()
    feats, anomalies, _ = reference.run(sc.samples(), 60_000, steps.EnsembleFeatureScorer.from_config(Config()))
    assert len(feats) == 36 * 5 * 60  # 36 series x 300 one-minute windows
    on_fault_host = [a for a in anomalies if a["host"] == sc.fault.host]
    assert any(in_fault_window(a, sc.fault) and a["metric"] in sc.fault.metrics for a in on_fault_host)
    assert not [a for a in anomalies if a["host"] in sc.untouched_hosts]
    assert all(in_fault_window(a, sc.fault) for a in on_fault_host)


def test_output_records_honour_the_published_contracts():
    sc = cpu_hog_scenario(hours=4)
    feats, anomalies, _ = reference.run(sc.samples(), 60_000, steps.EnsembleFeatureScorer.from_config(Config()))
    assert anomalies
    for topic, records in ((topics.FEATURES, feats[:2000]), (topics.ANOMALIES, anomalies)):
        ref = reference_validator(topic.name)
        for rec in records:
            codec.validate(topic.name, rec)
            assert ref.is_valid(rec), list(ref.iter_errors(rec))[:1]
    a = anomalies[0]
    assert 0.999 <= a["score"] <= 1 and any(d["vote"] for d in a["detectors"])
    assert "above the expected" in a["explanation"] and "detectors vote anomaly" in a["explanation"]
    assert {d["name"] for d in a["detectors"]} >= {"robust_z", "ewma", "cusum"}
    by_series: dict[str, list[dict]] = {}
    for rec in anomalies:
        by_series.setdefault(rec["series_id"], []).append(rec)
    for recs in by_series.values():   # each series' first anomaly opens an incident; a record says which it is
        assert recs[0]["explanation"].endswith("; opens an incident")
        for prev, rec in zip(recs, recs[1:]):
            continues = rec["window_start"] == prev["window_end"]   # the next window, in the same incident
            assert rec["explanation"].endswith("; opens an incident") != continues
            assert ("continues an open incident, which closes after 6 windows in a row below 0.95"
                    in rec["explanation"]) == continues


def test_parse_rejects_clock_skew():
    import pytest
    cfg = Config()
    rec = cpu_hog_scenario().samples()[0]
    now = rec["ts"] - cfg["stream.max-future-skew-ms"] - 1
    with pytest.raises(codec.Rejected) as e:
        steps.parse_telemetry(codec.encode(topics.TELEMETRY.name, rec), now, cfg)
    assert e.value.reason == "clock_skew"
    sid, parsed = steps.parse_telemetry(codec.encode(topics.TELEMETRY.name, rec), rec["ts"], cfg)
    assert parsed == rec and len(sid) == 16
