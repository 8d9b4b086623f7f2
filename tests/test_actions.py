"""The closed loop: webhooks to a real HTTP server, real commands, dry-run, rate limits, audit, and Kafka input."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from augur import actions
from augur.config import Config
from infra.kafka_broker import free_port
from schemas import topics
from tests.test_schemas import schema_file_validator

T = 1_764_806_400_000


def forecast(state="active", series_id="00000000000000aa", **kw) -> dict:
    rec = {"v": 1, "ts": T, "host": "db-1", "producer": {"name": "t", "version": "1"}, "series_id": series_id,
           "metric": "system.filesystem.usage", "attrs": {"mountpoint": "/data"}, "resource": "fs /data",
           "usage": 90.0, "capacity": 100.0, "state": state, "exhaustion_ts": T + 3_600_000 if state == "active"
           else None, "exhaustion_lower_ts": None, "exhaustion_upper_ts": None, "method": "theil-sen",
           "horizon_ms": 86_400_000, "explanation": "fs /data on db-1 fills in 1 h"}
    rec.update(kw)
    return rec


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.received, Receiver.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/v2/alerts", Receiver
    server.shutdown()


def actor(tmp_path, clock=None, **options):
    cfg = Config({"actions.dry-run": "false", **options})
    return actions.Actor(cfg, audit_path=tmp_path / "audit.jsonl", clock=clock or (lambda: T + 60_000))


def audit_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_dry_run_is_the_default_and_does_nothing_but_audit(tmp_path, webhook):
    url, receiver = webhook
    marker = tmp_path / "ran"
    a = actions.Actor(Config({"actions.webhook-url": url,
                              "actions.command": f"{sys.executable} -c 'open(\"{marker}\", \"w\")'"}),
                      audit_path=tmp_path / "audit.jsonl")
    out = a.handle(topics.FORECASTS.name, forecast())
    assert [(x["action"], x["outcome"], x["dry_run"]) for x in out] == [("webhook", "dry_run", True),
                                                                         ("command", "dry_run", True)]
    assert receiver.received == [] and not marker.exists()
    assert audit_lines(tmp_path) == out


def test_webhook_posts_an_alertmanager_alert_and_resolves_it_on_retraction(tmp_path, webhook):
    url, receiver = webhook
    a = actor(tmp_path, **{"actions.webhook-url": url})
    sent = a.handle(topics.FORECASTS.name, forecast())
    assert sent[0]["outcome"] == "sent" and "HTTP 200" in sent[0]["detail"]
    path, ctype, alerts = receiver.received[0]
    assert path == "/api/v2/alerts" and ctype == "application/json" and len(alerts) == 1
    alert = alerts[0]
    assert alert["labels"]["alertname"] == "AugurResourceExhaustion" and alert["labels"]["host"] == "db-1"
    assert alert["annotations"]["exhaustion_time"] == "2025-12-04T01:00:00.000Z"
    assert alert["startsAt"] == "2025-12-04T00:00:00.000Z" and alert["endsAt"] == "2025-12-05T00:00:00.000Z"
    a.handle(topics.FORECASTS.name, forecast(state="retracted", ts=T + 30_000))
    resolved = receiver.received[1][2][0]
    assert resolved["endsAt"] == "2025-12-04T00:01:00.000Z"  # now: Alertmanager resolves it


def test_command_runs_with_the_record_in_its_environment(tmp_path):
    out_file = tmp_path / "env.json"
    script = ("import json, os; json.dump({k: v for k, v in os.environ.items() if k.startswith('AUGUR_')}, "
              f"open({str(out_file)!r}, 'w'))")
    a = actor(tmp_path, **{"actions.command": f"{sys.executable} -c \"{script}\""})
    res = a.handle(topics.FORECASTS.name, forecast())
    assert [(x["action"], x["outcome"]) for x in res] == [("command", "ran")]
    env = json.loads(out_file.read_text())
    assert env["AUGUR_TRIGGER"] == "forecast" and env["AUGUR_HOST"] == "db-1"
    assert env["AUGUR_EXHAUSTION_TS"] == str(T + 3_600_000)
    assert json.loads(env["AUGUR_RECORD"])["series_id"] == "00000000000000aa"
    # a retraction runs no command (and, with no webhook, nothing applies)
    res = a.handle(topics.FORECASTS.name, forecast(state="retracted"))
    assert [(x["action"], x["outcome"]) for x in res] == [("none", "skipped")]


def test_failures_are_audited_with_the_reason(tmp_path, webhook):
    url, receiver = webhook
    receiver.status = 503
    a = actor(tmp_path, **{"actions.webhook-url": url, "actions.command": f"{sys.executable} -c 'raise SystemExit(3)'"})
    res = a.handle(topics.FORECASTS.name, forecast())
    assert [(x["action"], x["outcome"]) for x in res] == [("webhook", "failed"), ("command", "failed")]
    assert "HTTP 503" in res[0]["detail"] and "exited with 3" in res[1]["detail"]
    dead = actor(tmp_path, **{"actions.webhook-url": f"http://127.0.0.1:{free_port()}/"})
    assert dead.handle(topics.FORECASTS.name, forecast(series_id="00000000000000bb"))[0]["outcome"] == "failed"


def test_rate_limit_per_series_and_overall(tmp_path, webhook):
    url, receiver = webhook
    now = [T]
    a = actor(tmp_path, clock=lambda: now[0], **{"actions.webhook-url": url, "actions.min-interval-ms": "600000",
                                                  "actions.max-per-minute": "3"})
    assert a.handle(topics.FORECASTS.name, forecast())[0]["outcome"] == "sent"
    now[0] += 60_000
    limited = a.handle(topics.FORECASTS.name, forecast())[0]
    assert limited["outcome"] == "rate_limited" and "60 s ago" in limited["detail"]
    outcomes = [a.handle(topics.FORECASTS.name, forecast(series_id=f"{i:016x}"))[0]["outcome"] for i in range(4)]
    assert outcomes == ["sent", "sent", "sent", "rate_limited"]
    now[0] += 600_000
    assert a.handle(topics.FORECASTS.name, forecast())[0]["outcome"] == "sent"
    assert len(receiver.received) == 5


def test_audit_records_follow_their_schema(tmp_path, webhook):
    url, _ = webhook
    a = actor(tmp_path, **{"actions.webhook-url": url})
    a.handle(topics.FORECASTS.name, forecast())
    anomaly = {"v": 1, "ts": T, "host": "web-1", "producer": {"name": "t", "version": "1"},
               "series_id": "00000000000000cc", "metric": "m", "attrs": {}, "window_start": T - 60_000,
               "window_end": T, "value": 1.0, "score": 0.9, "verdict": "anomaly", "detectors": [],
               "explanation": "m is high"}
    a.handle(topics.ANOMALIES.name, anomaly)
    from schemas import codec
    a.audit_rejected(topics.FORECASTS.name, 0, 7, codec.Rejected("malformed", "not JSON"))
    validator = schema_file_validator("augur.actions.v1.json")
    lines = audit_lines(tmp_path)
    assert len(lines) == 3
    for line in lines:
        assert validator.is_valid(line), list(validator.iter_errors(line))


@pytest.mark.kafka
def test_act_consumes_forecasts_from_kafka(tmp_path, bootstrap, webhook):
    from collectors.output import KafkaOutput
    from schemas import codec
    url, receiver = webhook
    sid = uuid.uuid4().hex[:16]
    with KafkaOutput(topics.FORECASTS, bootstrap, client_id="act-test", validate=False) as out:
        out.write_raw(sid.encode(), codec.encode(topics.FORECASTS.name, forecast(series_id=sid)))
        out.write_raw(sid.encode(), b"{not json")
    cfg = Config({"kafka.bootstrap-servers": bootstrap, "actions.dry-run": "false", "actions.webhook-url": url,
                  "actions.on": "forecasts", "actions.audit-file": str(tmp_path / "audit.jsonl"),
                  "actions.consumer-group": f"act-{sid}", "actions.max-per-minute": "100000"})
    seen = []
    actions.run(cfg, stop_after_s=8, on_audit=seen.append)
    mine = [x for x in seen if x["trigger"].get("series_id") == sid]
    assert [(x["action"], x["outcome"]) for x in mine] == [("webhook", "sent")]
    assert any(x["outcome"] == "skipped" and "malformed" in x["detail"] for x in seen)
    assert any(alert["labels"]["series_id"] == sid for _, _, alerts in receiver.received for alert in alerts)
