"""Encode, decode and validate Augur messages against the JSON Schemas in ``schemas/json`` (the one source of truth).

``decode`` never raises anything but :class:`Rejected`, whose ``reason`` is one of the dead-letter reasons, so a job
can route any bad input to ``augur.deadletter.v1`` without crashing.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

from schemas import series, topics

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
COMMON_FILE = "common.v1.json"
SUPPORTED_VERSION = 1
PAYLOAD_KEEP_CHARS = 4096
DEADLETTER_REASONS = ("malformed", "schema_violation", "unknown_version", "non_finite", "oversized", "clock_skew",
                      "late")


class Rejected(ValueError):
    """A message that cannot be used. ``reason`` is a dead-letter reason; ``event_ts`` its event time if known."""

    def __init__(self, reason: str, detail: str, event_ts: int | None = None):
        assert reason in DEADLETTER_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:1024]
        self.event_ts = event_ts


def load_schema(topic_name: str) -> dict:
    """The topic's JSON Schema with references to ``common.v1.json`` inlined (a self-contained document)."""
    return copy.deepcopy(_resolved_schema(topic_name))


@lru_cache(maxsize=None)
def _resolved_schema(topic_name: str) -> dict:
    common = json.loads((SCHEMA_DIR / COMMON_FILE).read_text())
    doc = json.loads((SCHEMA_DIR / topics.BY_NAME[topic_name].schema_file).read_text())

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMMON_FILE + "#/definitions/"):
                target = copy.deepcopy(common["definitions"][ref.rsplit("/", 1)[1]])
                extra = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**target, **extra}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(doc)


@lru_cache(maxsize=None)
def _validator(topic_name: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(_resolved_schema(topic_name))


def validate(topic_name: str, record: Any) -> None:
    """Raise :class:`Rejected` (``schema_violation``/``unknown_version``/``non_finite``) unless ``record`` is valid."""
    if not isinstance(record, dict):
        raise Rejected("schema_violation", f"expected a JSON object, got {type(record).__name__}")
    version = record.get("v")
    if version != SUPPORTED_VERSION:
        if isinstance(version, int) and not isinstance(version, bool):
            raise Rejected("unknown_version", f"schema version {version} of {topic_name} is not supported "
                           f"(this consumer reads version {SUPPORTED_VERSION})", _event_ts(record))
        raise Rejected("schema_violation", f"field 'v' must be the schema version {SUPPORTED_VERSION}, "
                       f"got {version!r}", _event_ts(record))
    try:
        _validator(topic_name)(record)
    except fastjsonschema.JsonSchemaValueException as e:
        raise Rejected("schema_violation", e.message, _event_ts(record)) from None
    bad = _first_non_finite(record)
    if bad is not None:
        raise Rejected("non_finite", f"{bad} is not a finite number", _event_ts(record))


def decode(topic_name: str, data: bytes | str, max_bytes: int | None = None) -> dict:
    """Parse and validate one message; raise :class:`Rejected` with a reason for anything unusable."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    if max_bytes is not None and len(raw) > max_bytes:
        raise Rejected("oversized", f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _classify_parse_error(raw, e) from None
    validate(topic_name, record)
    return record


def encode(topic_name: str, record: dict, check: bool = True) -> bytes:
    """Serialise ``record`` as compact JSON (validating first unless ``check`` is false)."""
    if check:
        validate(topic_name, record)
    return orjson.dumps(record)


def key_for(topic_name: str, record: dict) -> bytes:
    """The Kafka key a record of this topic is published under (see :mod:`schemas.topics`)."""
    key = topics.BY_NAME[topic_name].key
    if key == "series_id":
        sid = record.get("series_id") or series.series_id(record["host"], record["metric"], record["attrs"])
        return sid.encode()
    return str(record[key]).encode()


def deadletter_record(rejected: Rejected, payload: bytes | str, source_topic: str, ts: int, host: str,
                      producer: dict) -> dict:
    text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8", "replace")
    size = len(payload.encode("utf-8", "surrogateescape")) if isinstance(payload, str) else len(payload)
    return {"v": SUPPORTED_VERSION, "ts": ts, "host": host, "producer": producer, "reason": rejected.reason,
            "detail": rejected.detail, "source_topic": source_topic, "event_ts": rejected.event_ts,
            "payload": text[:PAYLOAD_KEEP_CHARS], "payload_bytes": size}


def _event_ts(record: dict) -> int | None:
    ts = record.get("ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def _first_non_finite(node: Any) -> str | None:
    """JSON path of the first non-finite number (parsers turn out-of-range numbers such as 1e999 into
    infinities). The path is built only on the way back from a find, so the common clean record costs a walk."""
    found = _non_finite_steps(node)
    return None if found is None else "$" + "".join(reversed(found))


def _non_finite_steps(node: Any) -> list[str] | None:
    if isinstance(node, float):
        return None if math.isfinite(node) else []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for k, v in items:
        if isinstance(v, (int, str)):
            continue
        found = _non_finite_steps(v)
        if found is not None:
            found.append(f"[{k}]" if isinstance(k, int) else f".{k}")
            return found
    return None


def _classify_parse_error(raw: bytes, err: Exception) -> Rejected:
    """Tell NaN/Infinity literals (valid to Python's json, not to JSON) from plain garbage."""
    non_finite: list[str] = []

    def constant(name: str) -> float:
        non_finite.append(name)
        return float("nan")

    try:
        record = json.loads(raw.decode("utf-8"), parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Rejected("malformed", f"not valid UTF-8 JSON: {err}")
    event_ts = _event_ts(record) if isinstance(record, dict) else None
    if non_finite:
        return Rejected("non_finite", f"the message contains the non-JSON number {non_finite[0]}", event_ts)
    overflow = _first_non_finite(record)
    if overflow:
        return Rejected("non_finite", f"{overflow} overflows a double", event_ts)
    return Rejected("malformed", f"not valid JSON: {err}")
