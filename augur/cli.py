"""The ``augur`` command line: one entry point, one subcommand per task."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from augur import __version__
from augur.config import Config, ConfigError, parse_set_args
from schemas import topics


def _config(args) -> Config:
    return Config.load(args.config, parse_set_args(args.set))


def _broker(cfg: Config):
    from infra.kafka_broker import KafkaBroker
    return KafkaBroker(cfg["infra.kafka.port"], cfg["infra.kafka.controller-port"], cfg["infra.kafka.heap-mb"])


def cmd_infra(args) -> int:
    from infra import maven
    from infra.kafka_topics import ensure_topics
    cfg = _config(args)
    broker = _broker(cfg)
    if args.action == "fetch":
        maven.fetch_all()
        print(f"jars ready: {maven.fetch_kafka()} and {maven.fetch_flink_connectors()}")
    elif args.action == "up":
        maven.fetch_flink_connectors()
        status = broker.up()
        created = ensure_topics(status.bootstrap)
        print(status.describe())
        print(f"topics: {len(topics.ALL)} ready" + (f" ({len(created)} created)" if created else ""))
    elif args.action == "ebpf":
        from infra.ebpf import unavailable_reason
        reason = unavailable_reason()
        print("ebpf: ready (tracefs mounted, kernel headers linked, bcc importable)" if reason is None
              else f"ebpf: unavailable: {reason}")
        return 0 if reason is None else 1
    elif args.action == "down":
        print("kafka: stopped" if broker.down() else "kafka: was not running")
    elif args.action == "status":
        status = broker.status()
        print(status.describe())
        if status.answering:
            from infra.kafka_topics import describe_partitions
            for name, n in describe_partitions(status.bootstrap).items():
                print(f"  {name}: {n} partitions")
        return 0 if status.running else 3
    return 0


def _cluster(cfg: Config):
    from infra.flink_cluster import FlinkCluster
    return FlinkCluster(cfg["infra.flink.rest-port"], cfg["infra.flink.rpc-port"], cfg["infra.flink.taskmanagers"],
                        cfg["infra.flink.slots"])


def _rest(args, cfg: Config) -> str:
    return args.rest or _cluster(cfg).rest


def cmd_cluster(args) -> int:
    cluster = _cluster(_config(args))
    if args.action == "up":
        print(cluster.up().describe())
    elif args.action == "down":
        print("flink: stopped" if cluster.down() else "flink: was not running")
    else:
        status = cluster.status()
        print(status.describe())
        return 0 if status.answering else 3
    return 0


def cmd_submit(args) -> int:
    from infra import flink_jobs
    cfg = _config(args)
    sets = dict(parse_set_args(args.set))
    if args.parallelism:
        sets["stream.parallelism"] = str(args.parallelism)
    job_id = flink_jobs.submit(_rest(args, cfg), sets, savepoint=args.from_savepoint, config_file=args.config,
                               job=args.job)
    print(f"submitted the {args.job} job as {job_id} to http://{_rest(args, cfg)}" +
          (f" from {args.from_savepoint}" if args.from_savepoint else ""))
    return 0


def cmd_jobs(args) -> int:
    from infra import flink_jobs
    cfg = _config(args)
    rest = _rest(args, cfg)
    if args.action == "list":
        for j in flink_jobs.list_jobs(rest):
            print(f"{j['jid']}  {j['state']:<10} {j['name']}  ({j.get('duration', 0) / 1000:.0f} s)")
        return 0
    if args.action == "resume":
        if not args.target:
            raise ConfigError("jobs resume: name the savepoint to resume from")
        job_id = flink_jobs.submit(rest, dict(parse_set_args(args.set)), savepoint=args.target,
                                   config_file=args.config, job=args.job)
        print(f"resumed as {job_id} from {args.target}")
        return 0
    if not args.target:
        raise ConfigError(f"jobs {args.action}: name the job id (see `augur jobs list`)")
    if args.action == "cancel":
        flink_jobs.cancel(rest, args.target)
        print(f"cancelling {args.target}")
    else:
        where = flink_jobs.savepoint(rest, args.target, args.dir, stop=args.stop)
        print(f"savepoint {where}" + (" (job stopped; `augur jobs resume` it)" if args.stop else ""))
    return 0


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so a long-running command stops as on Ctrl-C: its outputs
    flushed, its eBPF programs detached. SIGINT is set too because a command started in the background by a
    non-interactive shell (``augur collect &`` in a script) inherits it ignored, and would not stop on it."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def cmd_synth(args) -> int:
    from augur.timeparse import format_ms, now_ms, parse_time_ms
    from collectors.faults import DEMO_FAULTS, parse_duration_ms, parse_fault, write_labels
    from collectors.output import JsonlOutput, KafkaOutput, StdoutOutput
    from collectors.synthetic import SyntheticTelemetry
    from collectors.synthetic_run import play
    cfg = _config(args)
    now = now_ms()
    start = parse_time_ms(args.start, now)
    end = start + parse_duration_ms(args.duration) if args.duration else None
    specs = list(args.fault or []) + (list(DEMO_FAULTS) if args.demo_faults else [])
    faults = [parse_fault(s, start) for s in specs]
    gen = SyntheticTelemetry(hosts=args.hosts, seed=args.seed, interval_ms=parse_duration_ms(args.interval),
                             faults=faults)
    if args.labels:
        write_labels(args.labels, faults, {"hosts": gen.host_names, "seed": args.seed, "start_ms": start})
    if args.output == "kafka":
        out = KafkaOutput(topics.TELEMETRY, cfg["kafka.bootstrap-servers"], client_id="augur-synthetic")
    elif args.output == "-":
        out = StdoutOutput(topics.TELEMETRY)
    else:
        out = JsonlOutput(topics.TELEMETRY, args.output)
    speed = None if args.speed == "max" else float(args.speed)
    if end is None and speed is None:
        raise ConfigError("--speed max needs a --duration (otherwise it would never stop)")
    print(f"augur synth: {gen.hosts} hosts, seed {args.seed}, from {format_ms(start)} UTC"
          f"{'' if end is None else ' to ' + format_ms(end)} at {'max speed' if speed is None else f'{speed:g}x'}"
          f" -> {args.output}; {len(faults)} fault(s)", file=sys.stderr, flush=True)
    _stop_on_signals()
    try:
        with out:
            stats = play(gen, out, start, end, speed)
    except KeyboardInterrupt:
        stats = None
    if stats is not None:
        print(f"augur synth: wrote {stats.samples} samples ({out.dropped} dropped)", file=sys.stderr)
    return 0 if out.dropped == 0 else 1


def _run_collectors(cfg: Config, args, output) -> int:
    """Run the signals of ``args`` into ``output(topic)``, one output per topic they write."""
    from collectors.bpf_loader import release_compiler_memory
    from collectors.runner import Runner, open_collectors, parse_signals
    from collectors.selfmetrics import serve_prometheus
    from infra.ebpf import EbpfUnavailable
    names = parse_signals(args.signals)
    try:
        collectors = open_collectors(cfg, names)
    except EbpfUnavailable as e:
        print(f"augur: eBPF collectors cannot run here: {e}", file=sys.stderr)
        return 1
    release_compiler_memory()   # every program is compiled and loaded: the compiler's memory is not needed again
    telemetry_out, events_out = output(topics.TELEMETRY), output(topics.EVENTS)
    profiles_out = output(topics.PROFILES) if "profile" in names else None
    runner = Runner(collectors, telemetry_out, events_out, cfg, profiles=profiles_out)
    server = None
    if cfg["collect.prometheus-port"] and not getattr(args, "no_prometheus", False):
        try:
            server = serve_prometheus(runner.metrics, cfg["collect.prometheus-port"])
        except OSError as e:
            print(f"augur: self-metrics endpoint not started ({e})", file=sys.stderr)
    print(f"augur collect: {', '.join(names)} every {cfg['collect.interval-ms'] / 1000:g} s on {runner.host}"
          + (f"; self-metrics on http://127.0.0.1:{cfg['collect.prometheus-port']}/metrics" if server else ""),
          file=sys.stderr, flush=True)
    _stop_on_signals()
    try:
        runner.run(duration_s=args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()
        for out in runner.outputs():
            out.close()
        if server:
            server.shutdown()
    dropped = sum(out.dropped for out in runner.outputs())
    print(f"augur collect: stopped; {telemetry_out.sent} samples, {events_out.sent} events"
          + (f", {profiles_out.sent} profiles" if profiles_out else "") + f" written, {dropped} dropped",
          file=sys.stderr)
    return 0


def _collect_config(args) -> Config:
    """Configuration for collect/record: ``--interval`` is a shorthand for ``collect.interval-ms``."""
    from collectors.faults import parse_duration_ms
    overrides = parse_set_args(args.set)
    if args.interval:
        overrides["collect.interval-ms"] = parse_duration_ms(args.interval)
    return Config.load(args.config, overrides)


def cmd_collect(args) -> int:
    from collectors.output import BufferedKafkaOutput, StdoutOutput
    cfg = _collect_config(args)
    if args.stdout:
        return _run_collectors(cfg, args, StdoutOutput)
    return _run_collectors(cfg, args, lambda topic: BufferedKafkaOutput(topic, cfg["kafka.bootstrap-servers"],
                                                                        cfg["collect.buffer-records"],
                                                                        max_bytes=cfg["collect.buffer-bytes"]))


def cmd_record(args) -> int:
    from collectors.recording import RecordingWriter
    cfg = _collect_config(args)
    writer = RecordingWriter(args.output)
    try:
        return _run_collectors(cfg, args, writer.output)
    finally:
        writer.close()


def cmd_replay(args) -> int:
    from augur.timeparse import now_ms
    from collectors.output import KafkaOutput
    from collectors.recording import read_recording, retime
    cfg = _config(args)
    records = retime(list(read_recording(args.input)), now_ms())
    outs = {t: KafkaOutput(t, cfg["kafka.bootstrap-servers"], client_id="augur-replay")
            for t in {t for t, _ in records}}
    for topic, rec in sorted(records, key=lambda tr: tr[1]["ts"]):
        outs[topic].write(rec)
    for out in outs.values():
        out.close()
    print(f"augur replay: {len(records)} records from {args.input}, re-timed to end now", file=sys.stderr)
    return 0 if all(o.dropped == 0 for o in outs.values()) else 1


def cmd_flink_job(args) -> int:
    """``augur stream`` / ``augur archive``: the job's own main, on the embedded mini-cluster."""
    import importlib
    job = importlib.import_module(args.job_module)
    argv = ["--bounded"] if args.bounded else []
    if args.config:
        argv += ["--config", args.config]
    for s in args.set or []:
        argv += ["--set", s]
    return job.main(argv)


def cmd_backfill(args) -> int:
    from jobs import backfill
    return backfill.main(list(args.backfill_args))


def cmd_tail(args) -> int:
    from augur.tail import tail
    cfg = _config(args)
    _stop_on_signals()
    try:
        tail(cfg["kafka.bootstrap-servers"], topics.resolve(args.topic), args.from_beginning, args.json,
             args.max_seconds)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_act(args) -> int:
    from augur import actions
    cfg = _config(args)
    mode = "DRY RUN (set actions.dry-run=false to act)" if cfg["actions.dry-run"] else "LIVE"
    targets = [x for x in (cfg["actions.webhook-url"] and f"webhook {cfg['actions.webhook-url']}",
                           cfg["actions.command"] and f"command {cfg['actions.command']}") if x]
    print(f"augur act: {mode}; on {cfg['actions.on']} from {cfg['kafka.bootstrap-servers']}; "
          f"{', '.join(targets) or 'no webhook or command configured (audit only)'}", file=sys.stderr, flush=True)

    def show(audit: dict) -> None:
        trig = audit["trigger"]
        print(f"{audit['outcome']:<12} {audit['action']:<8} {trig.get('host', '-')} {trig.get('state', '-')}: "
              f"{audit['detail']}", flush=True)
    _stop_on_signals()
    try:
        actions.run(cfg, stop_after_s=args.max_seconds, on_audit=show)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_bench(args) -> int:
    from augur.bench import BENCHMARKS
    if args.name not in BENCHMARKS:
        print("augur bench: choose one of:\n" + "\n".join(f"  {k:<10} {d}" for k, (_, d) in BENCHMARKS.items()),
              file=sys.stderr)
        return 2
    return BENCHMARKS[args.name][0](args.bench_args)


def cmd_detect(args) -> int:
    from augur.detect import run
    return run(args, _config(args))


def cmd_demo(args) -> int:
    from augur.demo import run_demo
    return run_demo(_config(args), duration_s=args.duration, until_detected=args.until_detected)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augur", description="Augur: kernel telemetry in, anomalies and "
                                     "failure forecasts out, on Kafka and Flink.")
    parser.add_argument("--version", action="version", version=f"augur {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML configuration file (default: $AUGUR_CONFIG)")
    common.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one configuration option")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("infra", parents=[common],
                       help="fetch jars; start/stop/inspect the local Kafka broker; prepare eBPF (ebpf)")
    p.add_argument("action", choices=["up", "down", "status", "fetch", "ebpf"])
    p.set_defaults(func=cmd_infra)

    p = sub.add_parser("synth", parents=[common], help="generate seeded synthetic host telemetry with faults")
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", default="10s", help="sample interval (default 10s)")
    p.add_argument("--start", default="now-3h", help="event time of the first sample (now, now-6h, ISO, epoch ms)")
    p.add_argument("--duration", help="event-time span to generate (default: run until stopped)")
    p.add_argument("--speed", default="60", help="event seconds per wall second, or 'max' (default 60)")
    p.add_argument("--fault", action="append", metavar="KIND@HOST:+OFFSET:DURATION[:xMAG]",
                   help="inject a fault, e.g. cpu_hog@host-2:+30m:10m (offset from --start)")
    p.add_argument("--demo-faults", action="store_true", help="inject the demo's fault schedule")
    p.add_argument("--labels", help="write the ground-truth fault windows to this JSON file")
    p.add_argument("--output", "-o", default="kafka", help="kafka (default), a .jsonl[.gz] path, or - for stdout")
    p.set_defaults(func=cmd_synth)

    collect_opts = argparse.ArgumentParser(add_help=False)
    collect_opts.add_argument("--signals", help="comma-separated: cpu, blockio, tcp, http, process, host, profile "
                              "(default all)")
    collect_opts.add_argument("--interval", help="flush interval, e.g. 10s (default collect.interval-ms)")
    collect_opts.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    p = sub.add_parser("collect", parents=[common, collect_opts],
                       help="run the eBPF collectors (root) and stream telemetry, events and profiles into Kafka")
    p.add_argument("--stdout", action="store_true", help="print records instead of producing them")
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("record", parents=[common, collect_opts],
                       help="run the collectors and save their output to a file for `augur replay`")
    p.add_argument("--output", "-o", required=True, help="recording file (.jsonl or .jsonl.gz)")
    p.set_defaults(func=cmd_record, no_prometheus=True)
    p = sub.add_parser("replay", parents=[common], help="play a recording into Kafka, re-timed to end now")
    p.add_argument("input", help="a file written by `augur record`")
    p.set_defaults(func=cmd_replay)

    bounded_opt = argparse.ArgumentParser(add_help=False)
    bounded_opt.add_argument("--bounded", action="store_true", help="stop at the offsets that are the latest when "
                             "the job starts (replays, tests)")
    p = sub.add_parser("stream", parents=[common, bounded_opt],
                       help="run the streaming job on the embedded Flink mini-cluster")
    p.set_defaults(func=cmd_flink_job, job_module="jobs.stream_job")
    p = sub.add_parser("archive", parents=[common, bounded_opt],
                       help="run the archive job (telemetry and outputs -> Parquet by date and host, for the "
                            "backfill) on the embedded Flink mini-cluster")
    p.set_defaults(func=cmd_flink_job, job_module="jobs.archive_job")

    p = sub.add_parser("cluster", parents=[common],
                       help="start/stop/inspect a standalone Flink session cluster here (1 JobManager, "
                            "infra.flink.taskmanagers TaskManagers)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_cluster)

    rest_opt = argparse.ArgumentParser(add_help=False)
    rest_opt.add_argument("--rest", help="the cluster's REST address host:port (default: the local cluster's)")
    rest_opt.add_argument("--job", choices=["stream", "archive"], default="stream",
                          help="submit / resume: the streaming job (default) or the archive job")
    p = sub.add_parser("submit", parents=[common, rest_opt],
                       help="submit the streaming job (or --job archive) to a Flink cluster (--set options go to "
                            "the job)")
    p.add_argument("--parallelism", "-p", type=int, help="the job's parallelism (stream.parallelism)")
    p.add_argument("--from-savepoint", help="start from this savepoint or retained checkpoint")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", parents=[common, rest_opt],
                       help="list, cancel, savepoint (--stop: stop with a savepoint) or resume jobs on a cluster")
    p.add_argument("action", choices=["list", "cancel", "savepoint", "resume"])
    p.add_argument("target", nargs="?", help="job id (cancel, savepoint) or savepoint path (resume)")
    p.add_argument("--stop", action="store_true", help="savepoint: stop the job with it")
    p.add_argument("--dir", help="savepoint: target folder (default: the cluster's savepoint folder)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("backfill", add_help=False,
                       help="re-run features, scores and forecasts over history on Apache Beam (backfill --help)")
    p.add_argument("backfill_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("train", add_help=False,
                       help="fit each series' seasonal and LSTM models on history into the model registry "
                            "(train --help)")
    p.add_argument("train_args", nargs=argparse.REMAINDER)

    p = sub.add_parser("tail", parents=[common], help="follow a topic (anomalies, features, profiles, deadletter...)")
    p.add_argument("topic", help=f"one of {', '.join(topics.BY_SHORT_NAME)} or a full topic name")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--json", action="store_true", help="print records as JSON lines")
    p.add_argument("--max-seconds", type=float, help="stop after this long")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("act", parents=[common],
                       help="the closed loop: webhook / command actions on forecasts and anomalies (dry-run default)")
    p.add_argument("--max-seconds", type=float, help="stop after this long")
    p.set_defaults(func=cmd_act)

    p = sub.add_parser("detect", parents=[common],
                       help="score one series (CSV timestamp,value) with the ensemble, causally, training its models "
                            "from the series' own past")
    p.add_argument("--input", required=True, help="CSV with columns timestamp,value")
    p.add_argument("--output", default="-", help="CSV of scores (default: standard output)")
    from udfs.ensemble_params import DETECTORS
    p.add_argument("--only", choices=DETECTORS,
                   help="score with this detector alone (ablation)")
    p.add_argument("--train-after", type=int, default=288, help="rows before the first model training")
    p.add_argument("--retrain-every", type=int, default=4096, help="longest gap between trainings, in rows")
    p.add_argument("--no-seasonal", action="store_true", help="do not fit the Prophet-style seasonal model")
    p.add_argument("--no-lstm", action="store_true", help="do not train the LSTM (no torch needed)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("bench", help="run a benchmark (augur bench NAME --help)")
    p.add_argument("name", nargs="?", default="", help="overhead, forecast, backfill, kernels")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", parents=[common], help="the whole pipeline on this machine, showing anomalies live")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--until-detected", type=int, metavar="N",
                   help="stop (exit 0) once N injected faults have been detected; exit 1 if --duration ends first")
    p.set_defaults(func=cmd_demo)
    return parser


# subcommands whose arguments (--help too) belong to the job
PASSTHROUGH = {"backfill": "jobs.backfill", "train": "models.train_registry"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        import importlib
        return importlib.import_module(PASSTHROUGH[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"augur: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a clear one-line error for the failures we anticipate
        from infra.flink_cluster import ClusterError
        from infra.kafka_broker import BrokerError
        from infra.maven import FetchError
        if isinstance(e, (BrokerError, ClusterError, FetchError, ValueError)) and not os.environ.get("AUGUR_DEBUG"):
            print(f"augur: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
