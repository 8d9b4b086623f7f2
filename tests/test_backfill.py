"""``augur backfill`` on Beam's DirectRunner: the same answers as the pipeline's reference (and, in
test_stream_e2e, as the Flink job), from files, the Parquet archive and a Kafka range; idempotent re-runs; corrupt
files and archive gaps reported; late input dead-lettered."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from augur.config import Config
from jobs import archive, backfill, host_state, reference, steps
from jobs.forecasting import Forecaster
from schemas import series
from tests.scenarios import FAST_FORECAST, cpu_hog_and_disk_fill_scenario

WINDOW_MS = 60_000


@pytest.fixture(scope="module")
def scenario():
    return cpu_hog_and_disk_fill_scenario(hours=5)


@pytest.fixture(scope="module")
def sets(host_models) -> list[str]:
    """The backfill's options: fast forecasts, and the hosts' forests (so the host stage judges)."""
    return [a for k, v in {**FAST_FORECAST, "models.dir": host_models}.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def expected(scenario, host_models):
    return reference.run(scenario.samples(), WINDOW_MS,
                         steps.EnsembleFeatureScorer.from_config(Config({"models.dir": host_models})),
                         Forecaster.from_config(Config(FAST_FORECAST)))


@pytest.fixture(scope="module")
def jsonl(scenario, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "history.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in scenario.samples()))
    return path


def read_output(root: Path, kind: str) -> list[dict]:
    return [json.loads(rec) for _, _, pdir in archive.partitions(root, kind)
            for _, _, rec in archive.partition_rows(pdir)]


def without_producer(records) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "producer"} for r in records),
                  key=lambda r: (r["series_id"], r["ts"], r.get("state", "")))


def assert_same_as_reference(out: Path, expected) -> None:
    for kind, recs in (("features", expected.features), ("anomalies", expected.anomalies),
                       ("forecasts", expected.forecasts)):
        got = read_output(out, kind)
        assert got and all(r["producer"]["name"] == "augur-backfill" for r in got)
        assert without_producer(got) == without_producer(recs), kind


def test_backfill_of_files_gives_the_reference_results(sets, jsonl, expected, tmp_path, capsys):
    assert backfill.main([str(jsonl), "-o", str(tmp_path / "out"), *sets]) == 0
    assert_same_as_reference(tmp_path / "out", expected)
    assert expected.forecasts and expected.anomalies
    # the host stage judged too: the hosts' forests found the disk filling on host-1 and the CPU hog on host-2
    host_records = [a for a in expected.anomalies if a["metric"] == host_state.HOST_METRIC]
    assert {"host-1", "host-2"} <= {a["host"] for a in host_records}
    err = capsys.readouterr().err
    assert "64,800 points" in err and "dead letters: 0" in err and "points/s" in err


def test_backfill_of_the_archive_and_rerun_leaves_one_set(sets, scenario, expected, tmp_path):
    arch = tmp_path / "archive"
    archive.write_archive(arch, "telemetry", ((s["ts"], s["host"], series.series_id(s["host"], s["metric"],
                                                                                      s["attrs"]), json.dumps(s))
                                               for s in scenario.samples()))
    out = tmp_path / "out"
    assert backfill.main([str(arch), "-o", str(out), *sets]) == 0
    assert_same_as_reference(out, expected)
    files_before = sorted(p.name for p in out.rglob("*.parquet"))
    assert backfill.main([str(arch), "-o", str(out), *sets]) == 0  # the same range again
    assert_same_as_reference(out, expected)  # one set of results, not two
    assert len(sorted(out.rglob("*.parquet"))) == len(files_before)
    assert not (out / "_staging").exists()


def test_rerun_of_a_sub_range_keeps_the_rows_outside_it(sets, jsonl, expected, scenario, tmp_path):
    out = tmp_path / "out"
    assert backfill.main([str(jsonl), "-o", str(out), *sets]) == 0
    mid = scenario.start + 2 * 3_600_000
    assert backfill.main([str(jsonl), "-o", str(out), "--from", str(mid), *sets]) == 0
    feats = read_output(out, "features")
    keys = [(f["series_id"], f["window_start"]) for f in feats]
    assert len(keys) == len(set(keys)) == len(expected.features)  # nothing lost, nothing doubled


def test_corrupt_parquet_fails_or_is_skipped_and_counted_and_gaps_are_reported(scenario, tmp_path, capsys):
    arch = tmp_path / "archive"
    two_days = [dict(s, ts=s["ts"] + d * 86_400_000) for d in (0, 1, 2) for s in scenario.samples(
        scenario.start, scenario.start + 3_600_000)]
    archive.write_archive(arch, "telemetry", ((s["ts"], s["host"], "x", json.dumps(s)) for s in two_days))
    day2 = archive.partition_dir(arch, "telemetry", archive.date_of(scenario.start + 86_400_000), "host-3")
    for f in day2.glob("*.parquet"):
        f.unlink()
    day2.rmdir()  # host-3 has no data on the middle day: a gap
    bad = next(archive.partition_dir(arch, "telemetry", archive.date_of(scenario.start), "host-1").glob("*.parquet"))
    bad.write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out"
    assert backfill.main([str(arch), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "corrupt input" in err and bad.name in err and "--on-corrupt skip" in err
    assert "gap:" in err and "host-3" in err
    assert backfill.main([str(arch), "-o", str(out), "--on-corrupt", "skip"]) == 0
    err = capsys.readouterr().err
    assert f"corrupt input skipped: {bad}" in err
    assert backfill.main([str(arch), "-o", str(out), "--on-gap", "fail"]) == 1


def test_late_and_bad_records_are_dead_lettered_with_reasons(scenario, tmp_path):
    samples = scenario.samples(scenario.start, scenario.start + 30 * 60_000)
    late = dict(samples[0], attrs={"m": "late"})  # 30 minutes behind the last record: its window has closed
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples) + json.dumps(late) + "\n"
                    + "{not json\n" + json.dumps(dict(samples[0], v=7)) + "\n")
    out = tmp_path / "out"
    assert backfill.main([str(path), "-o", str(out)]) == 0
    reasons = sorted(d["reason"] for d in read_output(out, "deadletter"))
    assert reasons == ["late", "malformed", "unknown_version"]


@pytest.mark.kafka
def test_backfill_of_a_kafka_range(sets, bootstrap, scenario, expected, tmp_path):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from augur.timeparse import now_ms
    topic = f"backfill-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    start = now_ms()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    for s in scenario.samples():
        producer.send(topic, json.dumps(s).encode(), series.series_id(s["host"], s["metric"], s["attrs"]).encode())
    producer.flush()
    producer.close()
    out = tmp_path / "out"
    args = ["--kafka-topic", topic, "--from", str(start), "--to", str(now_ms() + 1000), "-o", str(out),
            "--set", f"kafka.bootstrap-servers={bootstrap}", *sets]
    assert backfill.main(args) == 0
    assert_same_as_reference(out, expected)
