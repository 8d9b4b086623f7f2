"""The message contracts: the codec enforces the JSON Schemas, and rejects bad input with the right reason."""

import json

import jsonschema
import pytest
from referencing import Registry, Resource

from collectors.synthetic import SyntheticTelemetry
from schemas import codec, series, topics

TELEMETRY = topics.TELEMETRY.name


def _registry() -> Registry:
    common = json.loads((codec.SCHEMA_DIR / codec.COMMON_FILE).read_text())
    return Registry().with_resource(codec.COMMON_FILE, Resource.from_contents(common))


def reference_validator(topic: str) -> jsonschema.Draft7Validator:
    """jsonschema on the schema files as published (references resolved by a registry, not by our inlining)."""
    return schema_file_validator(topics.BY_NAME[topic].schema_file)


def schema_file_validator(filename: str) -> jsonschema.Draft7Validator:
    schema = json.loads((codec.SCHEMA_DIR / filename).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, registry=_registry())


def sample(**changes) -> dict:
    rec = {"v": 1, "ts": 1_700_000_000_000, "host": "web-1", "producer": {"name": "t", "version": "1"},
           "metric": "system.cpu.utilization", "type": "gauge", "attrs": {"cpu": "total"}, "value": 0.5}
    rec.update(changes)
    return rec


def test_every_schema_file_is_a_valid_draft7_schema():
    for t in topics.ALL:
        schema = json.loads((codec.SCHEMA_DIR / t.schema_file).read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        jsonschema.Draft7Validator.check_schema(codec.load_schema(t.name))


def _mutations(rec: dict):
    yield "missing host", {k: v for k, v in rec.items() if k != "host"}
    yield "extra field", {**rec, "surprise": 1}
    yield "bad metric name", {**rec, "metric": "CPU Usage"}
    yield "bad type", {**rec, "type": "summary"}
    yield "string value", {**rec, "value": "0.5"} if "value" in rec else {**rec, "hist": "x"}
    yield "negative ts", {**rec, "ts": -1}
    yield "attr not a string", {**rec, "attrs": {"cpu": 1}}
    yield "producer without version", {**rec, "producer": {"name": "x"}}


def test_fast_validator_agrees_with_reference_validator():
    gen = SyntheticTelemetry(hosts=2, seed=3)
    ref = reference_validator(TELEMETRY)
    checked = 0
    for rec in gen.samples_at(1_700_000_000_000):
        assert ref.is_valid(rec)
        codec.validate(TELEMETRY, rec)  # must not raise
        for what, bad in _mutations(rec):
            assert not ref.is_valid(bad), what
            with pytest.raises(codec.Rejected) as e:
                codec.validate(TELEMETRY, bad)
            assert e.value.reason == "schema_violation", what
            checked += 1
    assert checked > 50


def test_histogram_requires_hist_and_others_require_value():
    rec = sample(type="histogram")
    with pytest.raises(codec.Rejected, match="hist"):
        codec.validate(TELEMETRY, rec)
    rec = sample()
    del rec["value"]
    with pytest.raises(codec.Rejected, match="value"):
        codec.validate(TELEMETRY, rec)


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe\x00garbage", "malformed"),
    (b'{"v": 1, "ts": ', "malformed"),
    (b"[1, 2, 3]", "schema_violation"),
    (b'{"v": 2, "ts": 5, "anything": "new"}', "unknown_version"),
    (b'{"v": "1"}', "schema_violation"),
    (json.dumps(sample()).replace("0.5", "NaN").encode(), "non_finite"),
    (json.dumps(sample()).replace("0.5", "-Infinity").encode(), "non_finite"),
    (json.dumps(sample()).replace("0.5", "1e999").encode(), "non_finite"),
])
def test_decode_rejects_with_reason(payload, reason):
    with pytest.raises(codec.Rejected) as e:
        codec.decode(TELEMETRY, payload)
    assert e.value.reason == reason
    assert e.value.detail


def test_unknown_version_keeps_event_time_and_says_which_version():
    with pytest.raises(codec.Rejected) as e:
        codec.decode(TELEMETRY, json.dumps(sample(v=7)).encode())
    assert e.value.reason == "unknown_version" and "7" in e.value.detail and e.value.event_ts == 1_700_000_000_000


def test_oversized_is_rejected_before_parsing():
    big = json.dumps(sample(attrs={"k": "x" * 200})).encode()
    with pytest.raises(codec.Rejected) as e:
        codec.decode(TELEMETRY, big, max_bytes=100)
    assert e.value.reason == "oversized"
    assert codec.decode(TELEMETRY, big, max_bytes=len(big))["attrs"]["k"] == "x" * 200


def test_encode_decode_roundtrip_and_encode_validates():
    rec = sample()
    assert codec.decode(TELEMETRY, codec.encode(TELEMETRY, rec)) == rec
    with pytest.raises(codec.Rejected):
        codec.encode(TELEMETRY, sample(value=float("nan")))


def test_deadletter_records_are_valid_and_truncate_payload():
    rej = codec.Rejected("malformed", "not json")
    payload = b"\xff" * 10_000
    rec = codec.deadletter_record(rej, payload, TELEMETRY, 5, "h", {"name": "x", "version": "1"})
    codec.validate(topics.DEADLETTER.name, rec)
    assert rec["payload_bytes"] == 10_000 and len(rec["payload"]) == codec.PAYLOAD_KEEP_CHARS
    assert reference_validator(topics.DEADLETTER.name).is_valid(rec)


def test_series_id_is_stable_and_order_independent():
    a = series.series_id("h1", "m.x", {"a": "1", "b": "2"})
    assert a == series.series_id("h1", "m.x", {"b": "2", "a": "1"})
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != series.series_id("h2", "m.x", {"a": "1", "b": "2"})
    assert a != series.series_id("h1", "m.x", {"a": "1", "b": "3"})
    # the documented recipe, computed independently
    import hashlib
    canon = '["h1","m.x",[["a","1"],["b","2"]]]'.encode()
    assert a == hashlib.blake2b(canon, digest_size=8).hexdigest()


def test_kafka_keys_follow_the_topic_registry():
    rec = sample()
    assert codec.key_for(TELEMETRY, rec) == series.series_id("web-1", rec["metric"], rec["attrs"]).encode()
    ev = {"host": "web-1"}
    assert codec.key_for(topics.EVENTS.name, ev) == b"web-1"
    assert codec.key_for(topics.DEADLETTER.name, {"reason": "late"}) == b"late"


def test_topic_registry():
    assert [t.name for t in topics.ALL] == ["augur.telemetry.v1", "augur.events.v1", "augur.profiles.v1",
                                            "augur.features.v1", "augur.anomalies.v1", "augur.forecasts.v1",
                                            "augur.deadletter.v1"]
    assert topics.resolve("anomalies") is topics.ANOMALIES
    assert topics.resolve("augur.features.v1") is topics.FEATURES
    with pytest.raises(KeyError):
        topics.resolve("nope")
    for t in topics.ALL:
        assert (codec.SCHEMA_DIR / t.schema_file).exists()
