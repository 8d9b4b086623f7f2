"""Augur's JVM-side stream functions (``jvm/``) inside a real Flink: they must agree with the Python codec, the
single reference for what a telemetry message is, and collect windows the way the reference pipeline does.

One batch job evaluates every case at once (a mini-cluster start is the slow part). It runs PyFlink in the test
process, which registers PyFlink's operations with Beam's worker: tests that run Beam after this module run it in
a process of their own (test_stream_e2e's backfill does)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collectors.synthetic import SyntheticTelemetry
from jobs import steps
from jobs.telemetry_windows import FUNCTIONS, sql_string
from schemas import codec, series, topics
from tests.test_schemas import _mutations, sample

pytestmark = [pytest.mark.flink]

TELEMETRY = topics.TELEMETRY.name
APPENDED = 1_700_000_000_000
SKEW = 300_000
MAX_BYTES = 4096


def corpus() -> list[bytes]:
    gen = SyntheticTelemetry(hosts=2, seed=11)
    good = gen.samples_at(APPENDED - 60_000)
    assert {r["type"] for r in good} >= {"gauge", "delta", "histogram"}
    out = [json.dumps(r).encode() for r in good]
    for rec in good[:12]:
        out += [json.dumps(bad).encode() for _, bad in _mutations(rec)]
    text = json.dumps(sample())
    out += [
        b"\xff\xfe\x00garbage", b'{"v": 1, "ts": ', b"[1, 2, 3]", b"", b"null", b'"text"',
        json.dumps(sample(v=2)).encode(), json.dumps(sample(v="1")).encode(), json.dumps(sample(v=1.0)).encode(),
        text.replace("0.5", "NaN").encode(), text.replace("0.5", "-Infinity").encode(),
        text.replace("0.5", "1e999").encode(), text.replace("0.5", "1e308").encode(),
        json.dumps(sample(ts=1_700_000_000_000.0)).encode(), json.dumps(sample(ts=True)).encode(),
        json.dumps(sample(ts=APPENDED + SKEW + 1)).encode(), json.dumps(sample(ts=APPENDED + SKEW)).encode(),
        json.dumps(sample(attrs={f"k{i}": "v" for i in range(17)})).encode(),
        json.dumps(sample(attrs={f"k{i}": "v" for i in range(16)})).encode(),
        json.dumps(sample(attrs={"Bad": "v"})).encode(), json.dumps(sample(attrs={"b": "2", "a": "1"})).encode(),
        json.dumps(sample(host="\u00e9" * 253), ensure_ascii=False).encode(),
        json.dumps(sample(host="\U0001f600" * 254), ensure_ascii=False).encode(),
        json.dumps(sample(metric="system.cpu.utilization\n")).encode(),
        json.dumps(sample(capacity=0)).encode(), json.dumps(sample(capacity=10)).encode(),
        json.dumps(sample(type="histogram", hist={"counts": [1, 2], "count": 3, "sum": 4.0})).encode(),
        json.dumps(sample(type="histogram", hist={"counts": [], "count": 0, "sum": 0})).encode(),
        json.dumps(sample(type="histogram", hist={"counts": [1], "count": 1, "sum": 1, "x": 1})).encode(),
        json.dumps(sample(producer={"name": "t", "version": "1", "instance": "i", "extra": 1})).encode(),
        json.dumps(sample(unit="x" * 17)).encode(), json.dumps(sample(interval_ms=0)).encode(),
        json.dumps({**sample(), "attrs": {"cpu": "total"}, "value": 1}).encode(),
        json.dumps(sample(attrs={"k": "x" * 5000})).encode(),  # oversized
    ]
    return out


def python_verdict(raw: bytes):
    """(accepted, fields) by the Python codec and the stream's skew rule (against the append time)."""
    try:
        rec = codec.decode(TELEMETRY, raw, max_bytes=MAX_BYTES)
    except codec.Rejected as e:
        return False, e.reason
    if rec["ts"] - APPENDED > SKEW:
        return False, "clock_skew"
    hist = rec.get("hist")
    return True, (rec["ts"], rec["host"], rec["metric"], rec["type"], dict(sorted(rec["attrs"].items())),
                  float(rec["value"]) if "value" in rec else None,
                  None if hist is None else list(hist["counts"]), None if hist is None else float(hist["sum"]),
                  None if rec.get("capacity") is None else float(rec["capacity"]))


def messages_view(t_env, name: str, messages: list[bytes]) -> None:
    """A view (i INT, m BYTES) over the messages: one source (a VALUES list this long would be a union of many)."""
    from pyflink.table import DataTypes
    t_env.create_temporary_view(name, t_env.from_elements(
        [(i, bytearray(m)) for i, m in enumerate(messages)], DataTypes.ROW([DataTypes.FIELD("i", DataTypes.INT()),
                                                  DataTypes.FIELD("m", DataTypes.BYTES())])))


@pytest.fixture(scope="module")
def t_env():
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from infra import maven
    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    env.get_config().set("pipeline.jars", ";".join(p.resolve().as_uri() for p in maven.flink_job_jars()))
    env.get_config().set("table.local-time-zone", "UTC")
    env.get_config().set("parallelism.default", "1")
    for name, cls in FUNCTIONS.items():
        env.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION {name} AS '{cls}' LANGUAGE JAVA")
    return env


def collect(t_env, sql: str) -> list:
    with t_env.execute_sql(sql).collect() as results:
        return [tuple(r) for r in results]


def test_parser_agrees_with_the_python_codec_and_extracts_the_same_fields(t_env):
    messages = corpus()
    schema = sql_string(json.dumps(codec.load_schema(TELEMETRY), separators=(",", ":")))
    messages_view(t_env, "messages", messages)
    rows = collect(t_env, f"""
        SELECT i, p.reject, p.ts, p.host, p.metric, p.mtype, p.attrs, p.val, p.counts, p.hsum, p.capacity,
               TELEMETRY_EVENT_TIME(m, TO_TIMESTAMP_LTZ({APPENDED}, 3), CAST({SKEW} AS BIGINT))
        FROM (SELECT i, m, PARSE_TELEMETRY(m, {MAX_BYTES}, TO_TIMESTAMP_LTZ({APPENDED}, 3),
                                          CAST({SKEW} AS BIGINT), {schema}) AS p
              FROM messages)""")
    assert len(rows) == len(messages)
    accepted = 0
    for i, reject, ts, host, metric, mtype, attrs, val, counts, hsum, capacity, event_ts in sorted(rows):
        ok, expected = python_verdict(messages[i])
        assert (reject is None) == ok, (messages[i][:300], reject, expected)
        if not ok:
            # the JVM's reason is the first word of its text; the codec's is what the dead letter says
            assert reject.split(":")[0] in codec.DEADLETTER_REASONS, reject
            continue
        accepted += 1
        e_ts, e_host, e_metric, e_type, e_attrs, e_val, e_counts, e_hsum, e_cap = expected
        assert (ts, host, metric, mtype, json.loads(attrs)) == (e_ts, e_host, e_metric, e_type, e_attrs)
        assert list(json.loads(attrs)) == sorted(e_attrs)  # canonical: keys sorted
        assert (val, None if counts is None else list(counts), hsum, capacity) == (e_val, e_counts, e_hsum, e_cap)
        assert event_ts == ts
    assert 20 < accepted < len(messages) - 60


def test_event_time_is_zero_when_unusable_or_too_far_ahead(t_env):
    cases = [(json.dumps(sample(ts=APPENDED + SKEW + 1)).encode(), 0),
             (json.dumps(sample(ts=APPENDED + SKEW)).encode(), APPENDED + SKEW),
             (b'{"v": 1, "producer": {"ts": 5}, "ts": 42}', 42), (b'{"v": 1}', 0), (b"not json", 0),
             (b'{"ts": -5}', 0), (b'{"ts": 1.5}', 0)]
    messages_view(t_env, "event_time_cases", [m for m, _ in cases])
    rows = collect(t_env, f"""
        SELECT i, TELEMETRY_EVENT_TIME(m, TO_TIMESTAMP_LTZ({APPENDED}, 3), CAST({SKEW} AS BIGINT))
        FROM event_time_cases""")
    assert sorted(rows) == [(i, expected) for i, (_, expected) in enumerate(cases)]


def test_series_window_collects_like_the_reference(t_env):
    """Samples in any arrival order -> the same arrays (and so the same features) as features_record."""
    rng = np.random.default_rng(5)
    base = 1_700_000_040_000
    gauge = [sample(ts=base + 10_000 * k, value=float(rng.normal()), capacity=float(100 + k)) for k in range(6)]
    gauge[5].pop("capacity")  # the latest sample's capacity wins, even when it has none
    hist = [sample(type="histogram", ts=base + 10_000 * k, attrs={"r": "/"},
                   hist={"counts": [int(c) for c in rng.integers(0, 9, size=3 + k)], "count": 1,
                         "sum": float(rng.random())})
            for k in range(4)]
    for h in hist:
        h.pop("value")
    arrival = [gauge[i] for i in (3, 0, 5, 1, 4, 2)] + [hist[i] for i in (2, 3, 0, 1)]
    def double(x) -> str:  # from its shortest repr, exactly (a decimal literal would be rounded through DECIMAL)
        return "CAST(NULL AS DOUBLE)" if x is None else f"CAST('{x!r}' AS DOUBLE)"
    values = ", ".join(
        f"({r['ts']}, '{r['type']}', '{json.dumps(r['attrs'])}', {double(r.get('value'))}, "
        f"{'CAST(NULL AS ARRAY<BIGINT>)' if 'hist' not in r else 'ARRAY[' + ', '.join(f'CAST({c} AS BIGINT)' for c in r['hist']['counts']) + ']'}, "  # noqa: E501
        f"{double(r['hist']['sum'] if 'hist' in r else None)}, {double(r.get('capacity'))}, {k})"
        for k, r in enumerate(arrival))
    # the row's fields one by one: PyFlink's collect() cannot read a null inside a ROW
    rows = collect(t_env, f"""
        SELECT a, w.mtype, w.ts, w.vals, w.counts, w.hsums, w.capacity FROM (
          SELECT a, SERIES_WINDOW(ts, v, c, hs, cap, mt) AS w FROM (
            SELECT * FROM (VALUES {values}) AS t(ts, mt, a, v, c, hs, cap, k) ORDER BY k)
          GROUP BY a)""")
    by_attrs = {json.loads(a)["cpu" if "cpu" in json.loads(a) else "r"]: w for a, *w in rows}
    for samples, w in ((gauge, by_attrs["total"]), (hist, by_attrs["/"])):
        window_start = base - base % 60_000
        first = samples[0]
        # what the stream's Python stage does with the row
        got = steps.collected_window_record(first["host"], first["metric"], first["attrs"], window_start,
                                            window_start + 60_000, *w)
        sid = series.series_id(first["host"], first["metric"], first["attrs"])
        assert got == steps.features_record(sid, window_start, window_start + 60_000, samples)
        assert list(w[1]) == sorted(s["ts"] for s in samples)
    assert by_attrs["total"][5] is None and by_attrs["/"][0] == "histogram"
