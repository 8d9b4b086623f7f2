"""``augur backfill``: re-run the pipeline over history on Apache Beam, with the same steps as the stream.

    shards (archive hosts | files | Kafka partitions) --Beam ParDo--> per shard, in stored order:
        parse/validate -> event-time tumbling windows (watermark = max event time - out-of-orderness)
        -> features -> ensemble score -> forecasts            (jobs.series_runner: the stream's own steps)
        -> each host's features --GroupByKey(host)--> the host's forest, window by window   (jobs.host_state)
    -> staging Parquet per kind/date/host --commit--> ROOT/<kind>/date=/host=   (and/or the Kafka output topics)

Each shard holds whole series (a host's archive partitions, one Kafka partition, or all loose files), so a
series' state never crosses shards and memory is per-series state plus the open windows, not the range. A host's
series may lie in several shards (Kafka partitions are keyed by series), so the host stage regroups the features
that feed it (a few metrics, one record per window) by host.
Records that the stream would dead-letter (malformed, schema, versions, non-finite, oversized, late) are
dead-lettered the same way, with their reasons.

Re-running a range leaves one set of results: the commit step rewrites each touched Parquet partition without
the rows of the time range this run produced, then with its new rows. On Kafka, records are deterministic and
keyed by series_id: consumers de-duplicate on (series_id, ts) for features and anomalies and (series_id, ts, state)
for forecasts; a re-run re-sends the same records.

Runs on Beam's DirectRunner by default; ``--runner``/``--flink_master`` and any other Beam option pass through.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import apache_beam as beam

from augur import __version__
from augur.config import Config, parse_set_args
from augur.paths import run_dir
from augur.timeparse import format_duration_ms, now_ms, parse_time_ms
from jobs import archive
from jobs.history_sources import CorruptInput, Plan, Shard, plan_files, plan_kafka, read_shard
from schemas import codec, topics

PRODUCER = {"name": "augur-backfill", "version": __version__}
KIND_TOPIC = {"features": topics.FEATURES, "anomalies": topics.ANOMALIES, "forecasts": topics.FORECASTS,
              "deadletter": topics.DEADLETTER}
FLUSH_ROWS = 50_000
PROGRESS_EVERY_S = 5.0


@dataclass
class ShardStats:
    shard: str
    points: int = 0
    windows: int = 0
    anomalies: int = 0
    forecasts: int = 0
    deadletter: dict = field(default_factory=dict)
    outside_range: int = 0
    corrupt_skipped: list = field(default_factory=list)
    out_ts: dict = field(default_factory=dict)  # kind -> [min, max] of output ts
    seconds: float = 0.0


class Sink:
    """Collects one shard's output rows and writes them as staging Parquet files and/or to Kafka."""

    def __init__(self, staging: Path | None, bootstrap: str | None, shard_tag: str, stats: ShardStats):
        self.staging, self.tag, self.stats = staging, shard_tag, stats
        self.rows: dict[tuple[str, str, str], list] = {}
        self.n = 0
        self.outputs = {}
        if bootstrap:
            from collectors.output import KafkaOutput
            self.outputs = {k: KafkaOutput(t, bootstrap, client_id="augur-backfill", validate=False)
                            for k, t in KIND_TOPIC.items()}

    def add(self, kind: str, ts: int, host: str, sid: str, record: dict) -> None:
        record["producer"] = PRODUCER
        text = codec.encode(KIND_TOPIC[kind].name, record, check=False).decode()
        span = self.stats.out_ts.setdefault(kind, [ts, ts])
        span[0], span[1] = min(span[0], ts), max(span[1], ts)
        if self.staging is not None:
            self.rows.setdefault((kind, archive.date_of(ts), host), []).append((ts, sid, text))
            self.n += 1
            if self.n >= FLUSH_ROWS:
                self.flush()
        if kind in self.outputs:
            self.outputs[kind].write_raw((record.get("series_id") or record.get("reason", "")).encode(),
                                         text.encode())

    def flush(self) -> None:
        for (kind, date, host), rows in self.rows.items():
            archive.write_rows(archive.partition_dir(self.staging, kind, date, host), rows,
                               f"{self.tag}-{uuid.uuid4().hex[:8]}.parquet")
        self.rows, self.n = {}, 0

    def close(self) -> None:
        if self.staging is not None:
            self.flush()
        for out in self.outputs.values():
            out.close()
            if out.dropped:
                raise RuntimeError(f"{out.dropped} backfill records could not be produced to Kafka")


HOST_FIELDS = ("host", "metric", "type", "attrs", "series_id", "window_start", "window_end", "value")


def process_shard(shard: Shard, cfg: Config, staging: Path | None, bootstrap_out: str | None, on_corrupt: str,
                  start_ms: int | None, end_ms: int | None, log=sys.stderr, host_out: list | None = None) -> ShardStats:
    """Run one shard through the pipeline steps; the heart of the backfill, engine-independent. The features that
    feed the host stage are appended to ``host_out`` as ``(host, feature)`` (the fields it reads)."""
    from jobs import host_state, steps
    from jobs.forecasting import Forecaster
    from jobs.series_runner import SeriesRunner

    stats = ShardStats(shard.name)
    t0 = last_print = time.monotonic()
    sink = Sink(staging, bootstrap_out, shard.name.replace(":", "_").replace("/", "_"), stats)
    window = cfg["stream.window-size-ms"]
    hold = cfg["stream.out-of-orderness-ms"]
    runner = SeriesRunner(window, steps.EnsembleFeatureScorer.from_config(cfg), Forecaster.from_config(cfg))
    open_windows: dict[int, dict[str, list[dict]]] = {}
    closed_before = -(2 ** 62)  # windows starting before this are closed
    max_ts = None
    hosts: dict[str, str] = {}

    def dead(rejected: codec.Rejected, raw) -> None:
        rec = steps.deadletter_record(rejected, raw, now_ms())
        stats.deadletter[rec["reason"]] = stats.deadletter.get(rec["reason"], 0) + 1
        ts = rec.get("event_ts") or start_ms or 0
        sink.add("deadletter", ts, "_unknown", "", rec)

    def close_until(limit: int) -> None:
        for start in sorted(s for s in open_windows if s < limit):
            for sid, samples in sorted(open_windows.pop(start).items()):
                feature, anomaly, forecast = runner.close_window(sid, start, samples)
                host = hosts[sid]
                stats.windows += 1
                sink.add("features", feature["ts"], host, sid, feature)
                if host_out is not None and host_state.relevant(feature):
                    host_out.append((host, {k: feature[k] for k in HOST_FIELDS}))
                if anomaly is not None:
                    stats.anomalies += 1
                    sink.add("anomalies", anomaly["ts"], host, sid, anomaly)
                if forecast is not None:
                    stats.forecasts += 1
                    sink.add("forecasts", forecast["ts"], host, sid, forecast)

    try:
        for raw, progress in read_shard(shard, on_corrupt, stats.corrupt_skipped):
            try:
                sid, rec = steps.parse_telemetry(raw, now_ms(), cfg)
            except codec.Rejected as rejected:
                dead(rejected, raw)
                continue
            ts = rec["ts"]
            if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
                stats.outside_range += 1
                continue
            stats.points += 1
            start = ts - ts % window
            if start < closed_before:
                dead(steps.late(ts), raw)
                continue
            hosts[sid] = rec["host"]
            open_windows.setdefault(start, {}).setdefault(sid, []).append(rec)
            if max_ts is None or ts > max_ts:
                max_ts = ts
                watermark = max_ts - hold
                # as in the stream, [s, s + W) closes once the watermark reaches its last millisecond s + W - 1
                limit = watermark - window + 2
                if limit > closed_before:
                    closed_before = limit
                    close_until(limit)
            now = time.monotonic()
            if now - last_print >= PROGRESS_EVERY_S:
                last_print = now
                rate = stats.points / (now - t0)
                frac = progress / shard.size if shard.size else 0.0
                eta = (now - t0) * (1 - frac) / frac * 1000 if frac > 0 else None
                print(f"backfill {shard.name}: {stats.points:,} points ({rate:,.0f}/s), {frac:.0%} read"
                      + (f", ETA {format_duration_ms(eta)}" if eta is not None else ""), file=log, flush=True)
        close_until(2 ** 62)  # the input is bounded: every window closes at its end
    finally:
        sink.close()
    stats.seconds = time.monotonic() - t0
    return stats


class ProcessShard(beam.DoFn):
    """The Beam DoFn around :func:`process_shard`: one shard in, its statistics (JSON) out."""

    def __init__(self, cfg_values: dict, staging: str | None, bootstrap_out: str | None, on_corrupt: str,
                 start_ms: int | None, end_ms: int | None):
        self.args = (cfg_values, staging, bootstrap_out, on_corrupt, start_ms, end_ms)

    def process(self, shard):
        cfg_values, staging, bootstrap_out, on_corrupt, start_ms, end_ms = self.args
        host_features: list = []
        stats = process_shard(shard, Config(cfg_values), Path(staging) if staging else None, bootstrap_out,
                              on_corrupt, start_ms, end_ms, host_out=host_features)
        yield json.dumps(asdict(stats))
        for item in host_features:
            yield beam.pvalue.TaggedOutput(HOSTS_TAG, item)


HOSTS_TAG = "hosts"
HOST_STAGE = "hosts/"  # prefix of the host stage's ShardStats names


def score_host_history(host: str, features, cfg: Config, staging: Path | None, bootstrap_out: str | None) -> ShardStats:
    """One host's forest over all its windows in time order (what the stream's host operator does)."""
    from jobs import host_state
    stats = ShardStats(HOST_STAGE + host)
    t0 = time.monotonic()
    sink = Sink(staging, bootstrap_out, "host-" + uuid.uuid4().hex[:8], stats)
    runner = host_state.HostRunner(host_state.HostScorer.from_config(cfg))
    try:
        for f in features:
            runner.add(f)
        for record in runner.close_until(2 ** 62):
            stats.anomalies += 1
            sink.add("anomalies", record["ts"], host, record["series_id"], record)
    finally:
        sink.close()
    stats.seconds = time.monotonic() - t0
    return stats


class ScoreHostHistory(beam.DoFn):
    """The Beam DoFn around :func:`score_host_history`: ``(host, features)`` in, its statistics (JSON) out."""

    def __init__(self, cfg_values: dict, staging: str | None, bootstrap_out: str | None):
        self.args = (cfg_values, staging, bootstrap_out)

    def process(self, element):
        cfg_values, staging, bootstrap_out = self.args
        host, features = element
        yield json.dumps(asdict(score_host_history(host, features, Config(cfg_values),
                                                   Path(staging) if staging else None, bootstrap_out)))


def run_pipeline(plan: Plan, cfg: Config, staging: Path | None, bootstrap_out: str | None, on_corrupt: str,
                 start_ms: int | None, end_ms: int | None, beam_args: list[str]) -> list[ShardStats]:
    from apache_beam.options.pipeline_options import PipelineOptions

    stats_dir = (staging or Path(run_dir()) / f"backfill-{uuid.uuid4().hex[:8]}") / "_stats"
    stats_dir.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p:
        shards = (p | "shards" >> beam.Create(plan.shards)
                    | "spread" >> beam.Reshuffle()
                    | "process" >> beam.ParDo(ProcessShard(cfg.to_dict(), str(staging) if staging else None,
                                                           bootstrap_out, on_corrupt, start_ms, end_ms))
                    .with_outputs(HOSTS_TAG, main="stats"))
        hosts = (shards[HOSTS_TAG]
                 | "by host" >> beam.GroupByKey()
                 | "score hosts" >> beam.ParDo(ScoreHostHistory(cfg.to_dict(), str(staging) if staging else None,
                                                                bootstrap_out)))
        ((shards.stats, hosts) | "all stats" >> beam.Flatten()
         | "stats" >> beam.io.WriteToText(str(stats_dir / "shard"), file_name_suffix=".json"))
    out = []
    for f in sorted(stats_dir.glob("shard*.json")):
        for line in f.read_text().splitlines():
            out.append(ShardStats(**json.loads(line)))
    shutil.rmtree(stats_dir, ignore_errors=True)
    return out


def commit(staging: Path, output: Path, stats: list[ShardStats]) -> dict[str, int]:
    """Move staged rows into the output archive, replacing the time range this run produced.

    The range (from the earliest to the latest output time of any kind) is replaced for every kind, so a kind
    this run no longer produces in the range (a forecast that is not raised any more) leaves no stale rows."""
    spans = [span for s in stats for span in s.out_ts.values()]
    if not spans:
        return {}
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    rows = {}
    for kind in KIND_TOPIC:
        staged: dict[tuple[str, str], list[Path]] = {}
        for date, host, pdir in archive.partitions(staging, kind):
            staged[(date, host)] = sorted(pdir.glob("*.parquet"))
        # every existing partition whose dates the range touches is rewritten, staged rows or not
        for date, host, _ in archive.partitions(output, kind):
            if archive.date_of(lo) <= date <= archive.date_of(hi):
                staged.setdefault((date, host), [])
        if staged:
            rows[kind] = sum(archive.replace_range(output, kind, d, h, files, lo, hi + 1)
                             for (d, h), files in sorted(staged.items()))
    return rows


def summarise(stats: list[ShardStats], plan: Plan, seconds: float) -> str:
    points = sum(s.points for s in stats)
    dl: dict[str, int] = {}
    for s in stats:
        for k, v in s.deadletter.items():
            dl[k] = dl.get(k, 0) + v
    skipped = [c for s in stats for c in s.corrupt_skipped]
    lines = [f"augur backfill: {points:,} points in {seconds:.1f} s ({points / max(seconds, 1e-9):,.0f} points/s) "
             f"over {sum(not s.shard.startswith(HOST_STAGE) for s in stats)} shard(s): "
             f"{sum(s.windows for s in stats):,} feature windows, "
             f"{sum(s.anomalies for s in stats):,} anomalies, {sum(s.forecasts for s in stats):,} forecast records",
             f"  dead letters: {sum(dl.values()):,}" + (f" ({', '.join(f'{k}={v}' for k, v in sorted(dl.items()))})"
                                                       if dl else ""),
             f"  outside the requested range: {sum(s.outside_range for s in stats):,}"]
    lines += [f"  corrupt input skipped: {c}" for c in skipped]
    lines += [f"  gap: {g}" for g in plan.gaps]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="augur backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="archive folder(s) and/or .jsonl[.gz]/.parquet files")
    parser.add_argument("--kafka-topic", help="read a bounded range of this topic instead (needs --from, --to)")
    parser.add_argument("--from", dest="start", help="event-time start (inclusive): ISO time, epoch ms, now-1d; "
                        "with --kafka-topic, the Kafka record time the range of offsets starts at")
    parser.add_argument("--to", dest="end",
                        help="event-time end (exclusive); with --kafka-topic, the record time the offsets end at")
    parser.add_argument("--output", "-o", help="archive folder to write features/anomalies/forecasts/deadletter to")
    parser.add_argument("--to-kafka", action="store_true", help="also produce the results to the output topics")
    parser.add_argument("--on-corrupt", choices=["fail", "skip"], default="fail",
                        help="a corrupt input file fails the backfill (default) or is skipped and counted")
    parser.add_argument("--on-gap", choices=["fail", "report"], default="report",
                        help="missing archive partitions inside the range: report them (default) or fail")
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one option")
    args, beam_args = parser.parse_known_args(argv)
    cfg = Config.load(args.config, parse_set_args(args.set))
    start = parse_time_ms(args.start) if args.start else None
    end = parse_time_ms(args.end) if args.end else None
    if not args.output and not args.to_kafka:
        parser.error("say where results go: --output FOLDER and/or --to-kafka")
    if args.kafka_topic:
        if start is None or end is None:
            parser.error("--kafka-topic needs --from and --to")
        plan = plan_kafka(cfg["kafka.bootstrap-servers"], args.kafka_topic, start, end)
    elif args.inputs:
        plan = plan_files(args.inputs, start, end)
    else:
        parser.error("give input files or an archive folder, or --kafka-topic")
    for gap in plan.gaps:
        print(f"augur backfill: gap: {gap}", file=sys.stderr)
    if plan.gaps and args.on_gap == "fail":
        print(f"augur backfill: {len(plan.gaps)} gap(s) in the archive (--on-gap fail)", file=sys.stderr)
        return 1
    if not plan.shards:
        print("augur backfill: nothing to read in the given range", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output else None
    staging = output / "_staging" / uuid.uuid4().hex[:12] if output else None
    bootstrap_out = cfg["kafka.bootstrap-servers"] if args.to_kafka else None
    if args.kafka_topic:
        start = end = None  # --from/--to chose the offsets (by Kafka record time), not an event-time filter
    t0 = time.monotonic()
    try:
        stats = run_pipeline(plan, cfg, staging, bootstrap_out, args.on_corrupt, start, end, beam_args)
        if output is not None:
            rows = commit(staging, output, stats)
            print(f"augur backfill: wrote {output} ({', '.join(f'{k}: {v:,} rows' for k, v in sorted(rows.items()))})",
                  file=sys.stderr)
    except Exception as e:  # Beam may wrap a worker's exception: recognise ours by name
        if not isinstance(e, CorruptInput) and "CorruptInput" not in repr(e):
            raise
        detail = str(e).split("CorruptInput: ")[-1].splitlines()[0]
        print(f"augur backfill: corrupt input: {detail} (use --on-corrupt skip to skip and count such files)",
              file=sys.stderr)
        return 1
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if output is not None and (output / "_staging").is_dir() and not any((output / "_staging").iterdir()):
                (output / "_staging").rmdir()
    print(summarise(stats, plan, time.monotonic() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    # run the importable module's main, so that Beam workers unpickle jobs.backfill.ProcessShard, not __main__'s
    from jobs import backfill as _module
    sys.exit(_module.main())
