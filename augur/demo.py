"""``augur demo``: Kafka + telemetry + the streaming job on this machine, with anomalies shown as they arrive
and matched against the injected faults. Ctrl-C (or --duration) stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from augur import paths
from augur.config import Config, env_name
from augur.tail import format_record
from augur.timeparse import format_ms, now_ms
from collectors.faults import Fault, parse_duration_ms, read_labels
from schemas import codec, topics

DEMO_HOSTS = 4
DEMO_SPEED = "60"
DEMO_HISTORY = "now-4h"
# the demo's history is hours, not days: forecast on 5-minute steps after an hour (defaults: 20 min, a day)
DEMO_FORECAST = {"forecast.step-ms": "300000", "forecast.min-history-ms": "3600000", "forecast.recent-ms": "1800000"}


def telemetry_source() -> tuple[str, str]:
    """Which telemetry the demo uses, and why."""
    from infra.ebpf import unavailable_reason
    reason = unavailable_reason()
    if reason is None:
        return "real+synthetic", (f"real eBPF collectors on {socket.gethostname()} join once the replayed history "
                                  f"has caught up with the clock; synthetic hosts carry the injected faults")
    return "synthetic", f"eBPF collectors unavailable: {reason}; `augur replay FILE` plays a recording instead"


def history_catch_up_s() -> float:
    """Wall seconds until the synthetic replay reaches the present (then live data can share the event time)."""
    return history_ms() / 1000 / float(DEMO_SPEED)


def history_ms() -> int:
    return parse_duration_ms(DEMO_HISTORY.removeprefix("now-"))


def _spawn(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=paths.REPO_ROOT)
    finally:
        fh.close()


def _stop(proc: subprocess.Popen | None, timeout_s: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the job's JVM and Python workers live in the same process group: make sure none outlives it
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


DEMO_FOREST_HOURS = 6


def train_demo_forests(registry_dir: Path, history_start_ms: int, cfg: Config) -> int:
    """Fit each demo host's Isolation Forest, as ``augur train`` does, on fault-free synthetic telemetry of the
    hours before the replayed history (the generator ``augur synth`` runs, without faults); returns how many."""
    from collectors.synthetic import SyntheticTelemetry
    from jobs import reference
    from models.registry import ModelRegistry
    from models.train_registry import train_forests
    gen = SyntheticTelemetry(hosts=DEMO_HOSTS)
    start = history_start_ms - DEMO_FOREST_HOURS * 3_600_000
    samples = [s for batch in gen.iter_range(start - start % 60_000, history_start_ms) for s in batch]
    features = reference.features(samples, cfg["stream.window-size-ms"])
    return train_forests(features, cfg, ModelRegistry(registry_dir), min_windows=60)


def _matches(fault: Fault, anomaly: dict) -> bool:
    return (anomaly["host"] == fault.host and anomaly["metric"] in fault.metrics
            and anomaly["window_end"] > fault.start_ms and anomaly["window_start"] < fault.end_ms)


def run_demo(cfg: Config, duration_s: float | None = None, until_detected: int | None = None,
             out=sys.stdout) -> int:
    from kafka import KafkaConsumer

    from infra.kafka_broker import KafkaBroker
    from infra.kafka_topics import ensure_topics

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    run = paths.run_dir() / "demo"
    run.mkdir(parents=True, exist_ok=True)
    labels = run / "labels.json"
    labels.unlink(missing_ok=True)  # a previous run's labels must not be matched against this run's anomalies
    broker = KafkaBroker(cfg["infra.kafka.port"], cfg["infra.kafka.controller-port"], cfg["infra.kafka.heap-mb"])
    started_broker = not broker.status().running
    job = synth = collect = None
    consumer = None
    detected: dict[Fault, dict] = {}
    seen = forecasts = 0
    try:
        say("augur demo: starting Kafka (KRaft, 127.0.0.1) ...")
        bootstrap = broker.up().bootstrap
        ensure_topics(bootstrap)
        kind, why = telemetry_source()
        say(f"augur demo: telemetry source: {kind} ({why}); {DEMO_HOSTS} hosts, 4 h of history replayed at "
            f"{DEMO_SPEED}x, then live, with one injected fault of each kind")
        consumer = KafkaConsumer(topics.ANOMALIES.name, topics.FORECASTS.name, bootstrap_servers=bootstrap,
                                 auto_offset_reset="latest",
                                 isolation_level="read_committed", client_id="augur-demo", group_id=None)
        consumer.poll(timeout_ms=1000)  # fix the starting position before anything is produced
        env = {**os.environ, env_name("kafka.bootstrap-servers"): bootstrap}
        models = run / "models"
        forests = train_demo_forests(models, now_ms() - history_ms(), cfg)
        say(f"augur demo: fitted {forests} hosts' Isolation Forests on {DEMO_FOREST_HOURS} h of fault-free history "
            f"(models in {models}); they judge each host as a whole")
        start_from = str(now_ms())
        forecast_sets = [a for k, v in DEMO_FORECAST.items() for a in ("--set", f"{k}={v}")]
        job = _spawn([sys.executable, "-m", "jobs.stream_job", "--set", f"stream.start-from={start_from}",
                      "--set", "stream.consumer-group=augur-demo-" + start_from, "--set", f"models.dir={models}",
                      *forecast_sets], run / "job.log", env)
        synth = _spawn([sys.executable, "-m", "augur.cli", "synth", "--hosts", str(DEMO_HOSTS), "--demo-faults",
                        "--start", DEMO_HISTORY, "--speed", DEMO_SPEED, "--labels", str(labels)],
                       run / "synth.log", env)
        say(f"augur demo: streaming job starting on the Flink mini-cluster (log: {run / 'job.log'})")
        say("augur demo: anomalies and exhaustion forecasts appear below as the job finds them; "
            "Ctrl-C stops everything\n")
        t0 = time.monotonic()
        faults: list[Fault] = []
        collect_at = history_catch_up_s() + 5 if kind == "real+synthetic" else None
        while duration_s is None or time.monotonic() - t0 < duration_s:
            if collect_at is not None and time.monotonic() - t0 >= collect_at:
                collect_at = None
                collect = _spawn([sys.executable, "-m", "augur.cli", "collect", "--set",
                                  "collect.prometheus-port=0"], run / "collect.log", env)
                say(f"augur demo: real eBPF collectors started on {socket.gethostname()} (log: {run / 'collect.log'})")
            if not faults and labels.exists():
                faults = read_labels(labels)
            for proc, name, log in ((job, "streaming job", "job.log"), (synth, "telemetry generator", "synth.log"),
                                    (collect, "eBPF collectors", "collect.log")):
                if proc is not None and proc.poll() is not None:
                    tail = (run / log).read_text(errors="replace").splitlines()[-25:]
                    say(f"augur demo: the {name} exited with code {proc.returncode}; last lines of {run / log}:")
                    say("\n".join(tail))
                    return 1
            for batch in consumer.poll(timeout_ms=1000).values():
                for msg in batch:
                    try:
                        rec = codec.decode(msg.topic, msg.value)
                    except codec.Rejected as e:
                        say(f"(a {msg.topic} message that breaks the contract: {e})")
                        continue
                    if msg.topic == topics.FORECASTS.name:
                        forecasts += rec["state"] == "active"
                        say(format_record(topics.FORECASTS, rec))
                        continue
                    seen += 1
                    say(format_record(topics.ANOMALIES, rec))
                    for f in faults:
                        if f not in detected and _matches(f, rec):
                            detected[f] = rec
                            lag = (rec["window_end"] - f.start_ms) / 1000
                            say(f"  -> detected injected fault {f.kind} on {f.host} (injected {format_ms(f.start_ms)}"
                                f" UTC; flagged by the window ending {lag:.0f} s of event time later)")
            if until_detected and len(detected) >= until_detected:
                break
    except KeyboardInterrupt:
        say("\naugur demo: stopping ...")
    finally:
        if consumer is not None:
            consumer.close()
        _stop(collect)
        _stop(synth)
        _stop(job)
        if started_broker:
            broker.down()
        say(f"augur demo: {seen} anomalies and {forecasts} exhaustion forecasts shown; faults detected: {len(detected)}"
            + (f" of {len(faults)} injected" if labels.exists() and (faults := read_labels(labels)) else ""))
        for f, rec in sorted(detected.items(), key=lambda kv: kv[0].start_ms):
            say(f"  {f.kind:<20} {f.host:<8} first flagged: {rec['explanation']}")
        say("augur demo: stopped " + ("Kafka, " if started_broker else "") + "the job, the generator"
            + (" and the collectors" if collect is not None else ""))
    return 0 if (until_detected is None or len(detected) >= until_detected) else 1
