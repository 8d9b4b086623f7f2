"""The closed loop: forecasts and anomalies trigger actions (detect -> predict -> alert -> repair).

Two kinds of action, each optional:

* **webhook**: an Alertmanager-compatible ``POST`` of a JSON list of alerts (the ``/api/v2/alerts`` shape:
  ``labels``, ``annotations``, ``startsAt``, ``endsAt``); a retracted forecast is sent with ``endsAt`` = now, which
  resolves the alert.
* **command**: a configured local program (e.g. a cleanup script), run without a shell, with the triggering record
  in its environment (``AUGUR_RECORD`` as JSON, plus ``AUGUR_TRIGGER``, ``AUGUR_HOST``, ``AUGUR_SERIES_ID``,
  ``AUGUR_RESOURCE``, ``AUGUR_STATE``, ``AUGUR_EXHAUSTION_TS``). Commands run for raised forecasts and anomalies only.

**Dry-run is the default**: nothing is sent or run until ``actions.dry-run`` is false. Every decision, taken or
not, is written as one audit record (``schemas/json/augur.actions.v1.json``) to the audit file: ``sent``/``ran``,
``dry_run``, ``rate_limited`` (at most one action per series and action kind per ``actions.min-interval-ms``, and
at most ``actions.max-per-minute`` in all), ``failed`` (with the reason), or ``skipped`` (nothing applies).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from augur import __version__
from augur.config import Config
from augur.paths import run_dir
from schemas import codec, topics

TRIGGER_TOPICS = {"forecasts": topics.FORECASTS, "anomalies": topics.ANOMALIES}
AUDIT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "json" / "augur.actions.v1.json"
OUTPUT_LIMIT = 2000
PRODUCER = {"name": "augur-actions", "version": __version__}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trigger_kind(topic: str) -> str:
    return "forecast" if topic == topics.FORECASTS.name else "anomaly"


def alertmanager_alert(topic: str, record: dict, now_ms: int) -> dict:
    """One alert in Alertmanager's API v2 shape for a forecast or anomaly record."""
    if topic == topics.FORECASTS.name:
        active = record["state"] == "active"
        labels = {"alertname": "AugurResourceExhaustion", "severity": "warning", "host": record["host"],
                  "series_id": record["series_id"], "resource": record["resource"]}
        annotations = {"summary": record.get("explanation") or record["resource"], "method": record["method"]}
        if active and record.get("exhaustion_ts") is not None:
            annotations["exhaustion_time"] = _iso(record["exhaustion_ts"])
        ends = record["ts"] + record["horizon_ms"] if active else now_ms
        return {"labels": labels, "annotations": annotations, "startsAt": _iso(record["ts"]), "endsAt": _iso(ends)}
    labels = {"alertname": "AugurAnomaly", "severity": "warning", "host": record["host"],
              "series_id": record["series_id"], "metric": record["metric"]}
    annotations = {"summary": record.get("explanation", ""), "score": f"{record['score']:.3f}"}
    return {"labels": labels, "annotations": annotations, "startsAt": _iso(record["window_start"]),
            "endsAt": _iso(record["window_end"] + 10 * 60_000)}


def command_env(topic: str, record: dict) -> dict[str, str]:
    return {"AUGUR_TRIGGER": trigger_kind(topic), "AUGUR_HOST": record["host"],
            "AUGUR_SERIES_ID": record["series_id"],
            "AUGUR_RESOURCE": record.get("resource") or record.get("metric", ""),
            "AUGUR_STATE": record.get("state", "anomaly"),
            "AUGUR_EXHAUSTION_TS": str(record.get("exhaustion_ts") or ""),
            "AUGUR_RECORD": json.dumps(record, separators=(",", ":"))}


@dataclass
class RateLimit:
    """At most one action per key per ``min_interval_ms``, and ``per_minute`` actions in all."""

    min_interval_ms: int
    per_minute: int
    _last: dict = field(default_factory=dict)
    _recent: deque = field(default_factory=deque)

    def allow(self, key: tuple, now_ms: int) -> str | None:
        """None if allowed (and counted), else why not."""
        last = self._last.get(key)
        if last is not None and now_ms - last < self.min_interval_ms:
            return f"the same action ran for this series {(now_ms - last) / 1000:.0f} s ago " \
                   f"(limit: one per {self.min_interval_ms / 1000:.0f} s)"
        while self._recent and now_ms - self._recent[0] >= 60_000:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            return f"{self.per_minute} actions in the last minute (actions.max-per-minute)"
        self._last[key] = now_ms
        self._recent.append(now_ms)
        return None


class Actor:
    """Decides and performs the actions for one triggering record, and audits every decision."""

    def __init__(self, cfg: Config, audit_path: str | Path | None = None, clock=None):
        self.cfg = cfg
        self.dry_run = cfg["actions.dry-run"]
        self.webhook = cfg["actions.webhook-url"]
        self.command = shlex.split(cfg["actions.command"]) if cfg["actions.command"] else []
        self.timeout_s = cfg["actions.timeout-ms"] / 1000
        self.limit = RateLimit(cfg["actions.min-interval-ms"], cfg["actions.max-per-minute"])
        path = audit_path or cfg["actions.audit-file"] or run_dir() / "actions.audit.jsonl"
        self.audit_path = Path(path)
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)

    def handle(self, topic: str, record: dict) -> list[dict]:
        """Act on one record of a trigger topic; returns the audit records written."""
        now = self.clock()
        planned = []
        if self.webhook:
            planned.append("webhook")
        is_raise = topic == topics.ANOMALIES.name or record.get("state") == "active"
        if self.command and is_raise:
            planned.append("command")
        if not planned:
            return [self._audit(now, topic, record, "none", "skipped",
                                "no action applies (no webhook configured, or no command for a retraction)")]
        audits = []
        for action in planned:
            why_not = self.limit.allow((action, record["series_id"], record.get("state", "anomaly")), now)
            if why_not:
                audits.append(self._audit(now, topic, record, action, "rate_limited", why_not))
            elif self.dry_run:
                audits.append(self._audit(now, topic, record, action, "dry_run", self._describe(action)))
            else:
                outcome, detail = self._perform(action, topic, record, now)
                audits.append(self._audit(now, topic, record, action, outcome, detail))
        return audits

    def _describe(self, action: str) -> str:
        if action == "webhook":
            return f"would POST the alert to {self.webhook} (actions.dry-run is true)"
        return f"would run {shlex.join(self.command)} (actions.dry-run is true)"

    def _perform(self, action: str, topic: str, record: dict, now: int) -> tuple[str, str]:
        if action == "webhook":
            body = json.dumps([alertmanager_alert(topic, record, now)]).encode()
            req = urllib.request.Request(self.webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return "sent", f"POST {self.webhook} -> HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                return "failed", f"POST {self.webhook} -> HTTP {e.code} {e.reason}"
            except (urllib.error.URLError, OSError) as e:
                return "failed", f"POST {self.webhook}: {getattr(e, 'reason', e)}"
        try:
            proc = subprocess.run(self.command, env={**os.environ, **command_env(topic, record)},
                                  capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            return "failed", f"command not found: {self.command[0]}"
        except subprocess.TimeoutExpired:
            return "failed", f"{shlex.join(self.command)} did not finish within {self.timeout_s:g} s (killed)"
        out = (proc.stdout + proc.stderr).strip()[-OUTPUT_LIMIT:]
        if proc.returncode != 0:
            return "failed", f"{shlex.join(self.command)} exited with {proc.returncode}: {out}"
        return "ran", f"{shlex.join(self.command)} exited with 0" + (f": {out}" if out else "")

    def audit_rejected(self, topic: str, partition: int, offset: int, rejected: codec.Rejected) -> dict:
        """A trigger message that breaks its topic's contract: no action, audited with the reason."""
        return self._write({"v": 1, "ts": self.clock(), "producer": PRODUCER, "action": "none",
                            "outcome": "skipped", "dry_run": self.dry_run,
                            "detail": f"unusable trigger message: {rejected.reason}: {rejected.detail}"[:4096],
                            "trigger": {"topic": topic, "partition": partition, "offset": offset}})

    def _audit(self, now: int, topic: str, record: dict, action: str, outcome: str, detail: str) -> dict:
        return self._write({"v": 1, "ts": now, "producer": PRODUCER, "action": action, "outcome": outcome,
                            "dry_run": self.dry_run, "detail": detail[:4096],
                            "trigger": {"topic": topic, "series_id": record["series_id"], "host": record["host"],
                                        "ts": record["ts"], "state": record.get("state", "anomaly"),
                                        "summary": (record.get("explanation") or "")[:512]}})

    def _write(self, rec: dict) -> dict:
        with open(self.audit_path, "a") as fh:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return rec


def run(cfg: Config, stop_after_s: float | None = None, on_audit=None) -> int:
    """Consume the trigger topics (committed offsets of group ``actions.consumer-group``) and act on each record."""
    from kafka import KafkaConsumer
    names = [TRIGGER_TOPICS[t.strip()].name for t in cfg["actions.on"].split(",") if t.strip()]
    actor = Actor(cfg)
    cons = KafkaConsumer(*names, bootstrap_servers=cfg["kafka.bootstrap-servers"],
                         group_id=cfg["actions.consumer-group"], enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level="read_committed", client_id="augur-actions")
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    handled = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            for batch in cons.poll(timeout_ms=500).values():
                for msg in batch:
                    try:
                        audits = actor.handle(msg.topic, codec.decode(msg.topic, msg.value))
                    except codec.Rejected as e:
                        audits = [actor.audit_rejected(msg.topic, msg.partition, msg.offset, e)]
                    for audit in audits:
                        if on_audit:
                            on_audit(audit)
                    handled += 1
            cons.commit()  # after acting: a crash repeats at most the last batch (rate-limited) rather than skip it
    finally:
        cons.close()
    return handled
