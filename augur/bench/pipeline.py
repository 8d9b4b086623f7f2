"""``augur bench pipeline``: the streaming job's three figures, on a private local broker, in one run.

1. **Raw samples/s through the windowed features** (the JVM stage, :mod:`jobs.telemetry_windows`): a bounded run
   over ``--series`` x ``--seconds`` synthetic samples (one per series per second, all valid and on time) already
   in Kafka, windows to a discarding sink; the rate is samples over the job's net runtime (Flink's own figure:
   from deployment to the end, without the client's start-up) and, the figure reported, its sustained rate (the
   source's record count from Flink's REST metrics, between 10% and 90% of the input). The baseline, in the same
   run, is the previous design on a slice of the data: one Python call per raw sample (parse in Python,
   DataStream windows with a Python window function), samples over its net runtime.
2. **Scored feature points/s through the keyed Python stage**: the whole streaming job (exactly-once sinks,
   checkpoints) bounded over ``--score-series`` x ``--score-seconds`` of samples; the sustained rate of feature
   windows into the keyed scoring operator (Flink's metrics, as for 1).
3. **End-to-end latency**: the job live, fed ``--live-series`` series at 1 s in real time; for every feature and
   anomaly record, the time from the moment its window could close (window end + out-of-orderness) to the moment a
   read_committed consumer received it. This includes the wait for the next sample to move the watermark (up to
   the 1 s sampling interval) and the exactly-once commit at the next checkpoint (``--checkpoint-ms``).

Last line: ``BENCH pipeline samples_per_s=... vs_python_per_sample=...x scored_per_s=... e2e_p50_ms=...
e2e_p99_ms=...``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from augur import paths
from augur.config import Config
from augur.timeparse import now_ms
from schemas import codec, topics

WINDOW_MS = 10_000
SERIES_PER_HOST = 12  # what the synthetic generator emits per host
METRICS_POLL_MS = 250  # how often the operators' record counts are read


def write_payload(path: Path, hosts: int, start_ms: int, seconds: int) -> int:
    """Telemetry of ``hosts`` synthetic hosts at 1 s, one message per line, in event-time order; returns the number
    of messages. The generator's samples of the first second are the templates; later seconds move their values
    (gauges and sums jitter, counters grow), which is all the window stage's cost depends on."""
    from collectors.synthetic import SyntheticTelemetry
    templates = SyntheticTelemetry(hosts=hosts, seed=7, interval_ms=1000).samples_at(start_ms)
    rng = np.random.default_rng(7)
    n = 0
    with open(path, "wb") as fh:
        for k in range(seconds):
            t = start_ms + 1000 * k
            jitter = rng.random(len(templates))
            lines = []
            for s, j in zip(templates, jitter):
                s = dict(s, ts=t)
                if "value" in s:
                    s["value"] = float(s["value"] + k if s["type"] == "counter" else s["value"] * (0.9 + 0.2 * j))
                lines.append(orjson.dumps(s))
            fh.write(b"\n".join(lines) + b"\n")
            n += len(lines)
    return n


def produce_file(bootstrap: str, topic: str, path: Path, limit: int | None = None) -> None:
    """Load a file of messages into Kafka with Kafka's own console producer (the Python client would be the
    bottleneck of the set-up, not of the measurement)."""
    from infra import maven
    from infra.kafka_broker import java_binary
    libs = maven.fetch_kafka()
    cmd = [java_binary(), "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ConsoleProducer",
           "--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "linger.ms=20",
           "--producer-property", "batch.size=262144", "--producer-property", "compression.type=lz4"]
    with open(path, "rb") as fh:
        data = fh.read() if limit is None else b"".join(fh.readlines()[:limit])
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the console producer failed: {proc.stderr.decode()[-2000:]}")


def env_with_rest(cfg: Config):
    """The job's execution environment (embedded mini-cluster) with a REST port of its own, and that address,
    so its metrics can be read while it runs."""
    from pyflink.common import Configuration

    from infra.kafka_broker import free_port
    from jobs.flink_env import create_stream_env
    env = create_stream_env(cfg)
    port = free_port()
    # the REST API serves metrics as fetched from the operators, by default every 10 s: a staircase that would skew
    # a slope measured over a run of a few tens of seconds
    env.configure(Configuration().set_string("rest.port", str(port))
                  .set_string("metrics.fetcher.update-interval", f"{METRICS_POLL_MS} ms"))
    return env, f"127.0.0.1:{port}"


def windows_stage_rate(cfg: Config, samples: int) -> tuple[float, float]:
    """Sustained samples/s of the JVM window stage alone (bounded), and the job's net runtime."""
    from pyflink.table import StreamTableEnvironment, TableDescriptor

    from jobs import telemetry_windows
    env, rest = env_with_rest(cfg)
    t_env = StreamTableEnvironment.create(env)
    windows, rejected, late = telemetry_windows.build(t_env, cfg, bounded=True)
    statements = t_env.create_statement_set()
    for table in (windows, rejected, late):  # a descriptor without a schema takes the table's
        statements.add_insert(TableDescriptor.for_connector("blackhole").build(), table)
    client = statements.execute().get_job_client()
    result = client.get_job_execution_result()
    rate = sustained_rate(rest, str(client.get_job_id()), samples, result.done)
    return rate, result.result().get_net_runtime() / 1000.0


def sustained_rate(rest: str, job_id: str, total: int, done, vertex: str = "Source:",
                   metric: str = "numRecordsOut") -> float:
    """Records/s through one operator (the first whose name starts with ``vertex``) in steady state: the slope of
    its record count between 10% and 90% of ``total`` (start-up, deployment and the final drain left out),
    sampled from Flink's REST metrics (fetched from the operators every ``METRICS_POLL_MS``)."""
    from infra.flink_cluster import ClusterError, rest_call
    points: list[tuple[float, float]] = []
    source = None
    while not done():
        try:
            if source is None:
                source = next(v["id"] for v in rest_call(rest, f"/jobs/{job_id}")["vertices"]
                              if v["name"].startswith(vertex))
            got = rest_call(rest, f"/jobs/{job_id}/vertices/{source}/subtasks/metrics?get={metric}")
            if got:
                points.append((time.monotonic(), float(got[0]["sum"])))
        except (ClusterError, KeyError, IndexError, StopIteration):
            pass
        time.sleep(METRICS_POLL_MS / 1000)
    steady = [(t, n) for t, n in points if 0.1 * total <= n <= 0.9 * total]
    if len(steady) < 3:
        raise RuntimeError(f"too few metric samples in steady state ({len(steady)}): use more --seconds")
    t, n = np.asarray(steady).T
    return float(np.polyfit(t - t[0], n, 1)[0])  # least squares: each reading is up to one poll old


def python_per_sample_rate(cfg: Config, samples: int) -> float:
    """The baseline: the same windows with one Python call per raw sample (the design this stage replaced)."""
    from pyflink.common import Time, Types
    from pyflink.datastream import ProcessFunction
    from pyflink.datastream.functions import ProcessWindowFunction
    from pyflink.datastream.window import TumblingEventTimeWindows
    from pyflink.table import StreamTableEnvironment

    from jobs import steps, telemetry_windows

    class Parse(ProcessFunction):
        def process_element(self, row, ctx):
            try:
                yield steps.parse_telemetry(row[0], now_ms(), cfg)
            except codec.Rejected:  # the bench input is all valid
                pass

    class Features(ProcessWindowFunction):
        def process(self, key, context, elements):
            w = context.window()
            yield steps.features_record(key, w.start, w.end, [r for _, r in elements])

    from jobs.flink_env import create_stream_env
    env = create_stream_env(cfg)
    t_env = StreamTableEnvironment.create(env)
    telemetry_windows.register_source(t_env, cfg, bounded=True)
    raw = t_env.to_data_stream(t_env.sql_query("SELECT v, event_time FROM telemetry_source"))
    (raw.process(Parse(), output_type=Types.PICKLED_BYTE_ARRAY())
     .key_by(lambda sv: sv[0], key_type=Types.STRING())
     .window(TumblingEventTimeWindows.of(Time.milliseconds(cfg["stream.window-size-ms"])))
     .process(Features(), output_type=Types.PICKLED_BYTE_ARRAY())
     .map(lambda f: 1, output_type=Types.INT()).sink_to(discarding_sink()))
    seconds = env.execute("bench-python-per-sample").get_net_runtime() / 1000.0
    return samples / seconds


def discarding_sink():
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway
    return Sink(get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def full_job_rate(cfg: Config, windows: int) -> tuple[float, int]:
    """Sustained feature windows/s into the keyed scoring stage of the whole job (bounded, exactly-once sinks),
    and the number of feature records it wrote (about ``windows``)."""
    from augur.consume import read_all
    from jobs import stream_job
    env, rest = env_with_rest(cfg)
    stream_job.build(env, cfg, bounded=True)
    client = env.execute_async("bench-full-job")
    result = client.get_job_execution_result()
    rate = sustained_rate(rest, str(client.get_job_id()), windows, result.done,
                          vertex="score-ensemble", metric="numRecordsIn")
    result.result()
    return rate, len(read_all(cfg["kafka.bootstrap-servers"], topics.FEATURES, max_s=300))


def live_latency(sets: dict, hosts: int, seconds: int) -> dict[str, list[float]]:
    """Latency (ms) of every feature and anomaly record of a live run (the job run with the options ``sets``),
    from its window's earliest close."""
    from augur.consume import consumer
    from collectors.output import KafkaOutput
    from collectors.synthetic import SyntheticTelemetry
    cfg = Config(sets)
    bootstrap = cfg["kafka.bootstrap-servers"]
    ooo = cfg["stream.out-of-orderness-ms"]
    cmd = [sys.executable, "-m", "jobs.stream_job"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    log = Path(paths.run_dir()) / f"bench-pipeline-live-{uuid.uuid4().hex[:6]}.log"
    # a job process of its own: without the variables PyFlink set in this one (its gateway, and the flag that
    # forbids starting another)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_GATEWAY")}
    with open(log, "wb") as fh:
        job = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    latencies: dict[str, list[float]] = {"features": [], "anomalies": []}
    stop = threading.Event()

    def consume(topic: topics.Topic, into: list[float]) -> None:
        cons = consumer(bootstrap, topic, from_beginning=False)
        try:
            while not stop.is_set():
                for msg in cons:
                    rec = orjson.loads(msg.value)
                    into.append(now_ms() - (rec["window_end"] + ooo))
                    if stop.is_set():
                        break
        finally:
            cons.close()

    readers = [threading.Thread(target=consume, args=(t, latencies[t.name.split(".")[1]]), daemon=True)
               for t in (topics.FEATURES, topics.ANOMALIES)]
    try:
        time.sleep(25)  # the job's start-up
        for r in readers:
            r.start()
        time.sleep(3)
        gen = SyntheticTelemetry(hosts=hosts, seed=9, interval_ms=1000)
        with KafkaOutput(topics.TELEMETRY, bootstrap, client_id="bench-live") as out:
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                if job.poll() is not None:
                    raise RuntimeError(f"the streaming job exited: see {log}")
                t = now_ms()
                for s in gen.samples_at(t - t % 1000):
                    out.write(s)
                out.flush()
                time.sleep(1 - (time.time() % 1))
        time.sleep(WINDOW_MS / 1000 + ooo / 1000 + 8)
    finally:
        stop.set()
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(30)
    warm = WINDOW_MS * 2  # the first windows include the job's and the consumers' warm-up
    return {k: v[int(len(v) * warm / (seconds * 1000)):] for k, v in latencies.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="augur bench pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=2400, help="series of the throughput runs (12 per host)")
    parser.add_argument("--seconds", type=int, default=1000, help="seconds of samples at 1 s per series")
    parser.add_argument("--score-series", type=int, default=240, help="series of the whole-job (scoring) run")
    parser.add_argument("--score-seconds", type=int, default=2400,
                        help="seconds of samples at 1 s for it (long enough for the JIT's warm-up to be a small part)")
    parser.add_argument("--baseline-samples", type=int, default=30_000,
                        help="first samples of the scoring data, for the Python-per-sample baseline")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--live-series", type=int, default=240, help="series of the live latency run")
    parser.add_argument("--live-seconds", type=int, default=90)
    parser.add_argument("--checkpoint-ms", type=int, default=2000)
    args = parser.parse_args(argv)

    from infra.kafka_broker import KafkaBroker, free_port
    from infra.kafka_topics import ensure_topics
    run = Path(paths.run_dir()) / f"bench-pipeline-{uuid.uuid4().hex[:6]}"
    broker = KafkaBroker(free_port(), free_port(), 1024, state_dir=run / "kafka")
    bootstrap = broker.up().bootstrap
    try:
        ensure_topics(bootstrap)
        # one history, in event-time order: the scoring part (fewer series, more windows each), then the bulk
        start = now_ms() - (args.score_seconds + args.seconds) * 1000 - 120_000
        start -= start % WINDOW_MS
        score_hosts = max(1, args.score_series // SERIES_PER_HOST)
        scoring = run / "scoring.jsonl"
        print(f"generating {score_hosts * SERIES_PER_HOST:,} series x {args.score_seconds} s, then "
              f"{args.series:,} series x {args.seconds} s ...", file=sys.stderr, flush=True)
        score_samples = write_payload(scoring, score_hosts, start, args.score_seconds)
        hosts = max(1, args.series // SERIES_PER_HOST)
        payload = run / "telemetry.jsonl"
        samples = write_payload(payload, hosts, start + args.score_seconds * 1000, args.seconds)
        base = {"kafka.bootstrap-servers": bootstrap, "stream.window-size-ms": WINDOW_MS,
                "stream.out-of-orderness-ms": 2000, "stream.parallelism": args.parallelism,
                "stream.start-from": "earliest", "stream.checkpoint-interval-ms": args.checkpoint_ms,
                "stream.checkpoint-dir": str(run / "checkpoints")}

        baseline_n = min(args.baseline_samples, score_samples)
        print(f"baseline on the first {baseline_n:,} samples ...", file=sys.stderr, flush=True)
        produce_file(bootstrap, topics.TELEMETRY.name, scoring, limit=baseline_n)
        baseline = python_per_sample_rate(Config({**base, "stream.consumer-group": "bench-baseline"}), baseline_n)
        print(f"python per sample (previous design): {baseline_n:,} samples at {baseline:,.0f}/s")

        rest_of_scoring = run / "scoring-rest.jsonl"
        with open(scoring, "rb") as src, open(rest_of_scoring, "wb") as dst:
            for i, line in enumerate(src):
                if i >= baseline_n:
                    dst.write(line)
        produce_file(bootstrap, topics.TELEMETRY.name, rest_of_scoring)
        windows = score_hosts * SERIES_PER_HOST * args.score_seconds * 1000 // WINDOW_MS
        scored, n_features = full_job_rate(Config({**base, "stream.consumer-group": "bench-full"}), windows)
        print(f"whole job (bounded, exactly-once) on {score_samples:,} samples: {n_features:,} feature windows; "
              f"sustained {scored:,.0f} windows/s into the keyed scoring stage")

        print(f"loading {samples:,} more samples ...", file=sys.stderr, flush=True)
        produce_file(bootstrap, topics.TELEMETRY.name, payload)
        total = score_samples + samples
        rate, seconds = windows_stage_rate(Config({**base, "stream.consumer-group": "bench-windows"}), total)
        print(f"JVM window stage: {total:,} samples in {seconds:.1f} s of net runtime (start-up included = "
              f"{total / seconds:,.0f}/s); sustained {rate:,.0f} samples/s (parallelism {args.parallelism})")

        print(f"live: {args.live_series} series at 1 s for {args.live_seconds} s ...", file=sys.stderr, flush=True)
        live = live_latency({**base, "stream.consumer-group": "bench-live", "stream.start-from": "latest",
                             "stream.transactional-id-prefix": "bench-live",
                             # every partition gets samples each second: a short timeout only matters at the end
                             "stream.idle-timeout-ms": 2000},
                            max(1, args.live_series // SERIES_PER_HOST), args.live_seconds)
        lat = np.asarray(live["features"], dtype=np.float64)
        if lat.size == 0:
            raise RuntimeError("the live run produced no feature record")
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"end-to-end (window close -> record received, read_committed): {lat.size:,} feature records, "
              f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, max {lat.max():,.0f} ms; {len(live['anomalies'])} anomaly "
              f"records" + (f", p99 {np.percentile(live['anomalies'], 99):,.0f} ms" if live["anomalies"] else ""))
        print(f"BENCH pipeline samples_per_s={rate:.0f} vs_python_per_sample={rate / baseline:.1f}x "
              f"scored_per_s={scored:.0f} e2e_p50_ms={p50:.0f} e2e_p99_ms={p99:.0f}")
        return 0
    finally:
        broker.down()
