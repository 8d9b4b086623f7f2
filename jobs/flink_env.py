"""A PyFlink execution environment configured for Augur: connector jars, this venv's Python, checkpoints, a
bounded restart strategy and bundle sizes that suit a Python stage working at feature granularity."""

from __future__ import annotations

import argparse
import os
import sys

from pathlib import Path

from augur import paths
from augur.config import Config, parse_set_args
from augur.paths import REPO_ROOT
from infra import maven


def python_path_with_repo() -> str:
    parts = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def checkpoint_uri(cfg: Config) -> str:
    where = cfg["stream.checkpoint-dir"]
    if "://" in where:
        return where
    path = Path(where) if where else paths.run_dir() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve().as_uri()


def job_arguments(prog: str, description: str, argv: list[str] | None) -> tuple[Config, bool]:
    """The command line every Augur Flink job takes (``--config``, ``--set``, ``--bounded``): returns its
    configuration and whether its sources are bounded, after making sure the topics exist."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one option")
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the offsets that are the latest when the job starts (for tests and replays)")
    args = parser.parse_args(argv)
    cfg = Config.load(args.config, parse_set_args(args.set))
    from infra.kafka_topics import ensure_topics
    ensure_topics(cfg["kafka.bootstrap-servers"])
    return cfg, args.bounded


def create_stream_env(cfg: Config, checkpoint_interval_ms: int | None = None):
    """``checkpoint_interval_ms`` overrides ``stream.checkpoint-interval-ms`` (the archive job has its own)."""
    # Python workers are started by the JVM and inherit this environment: make the project importable there.
    os.environ["PYTHONPATH"] = python_path_with_repo()
    # the embedded cluster's Flink log goes to this run's directory, not to the one file in PyFlink's package that
    # every local job would overwrite
    log_dir = Path(os.environ.setdefault("FLINK_LOG_DIR", str(paths.run_dir() / "flink-logs")))
    log_dir.mkdir(parents=True, exist_ok=True)
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    if not os.environ.get("AUGUR_JARS_ON_CLASSPATH"):  # set in images that put the jars in Flink's lib/
        conf.set_string("pipeline.jars", ";".join(p.resolve().as_uri() for p in maven.flink_job_jars()))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    # the JVM stages (Flink SQL) never hold on to a record they emitted: chained operators may pass it on uncopied
    conf.set_string("pipeline.object-reuse", "true")
    conf.set_string("python.fn-execution.bundle.size", "1000")
    conf.set_string("python.fn-execution.bundle.time", "200")
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", "3")
    conf.set_string("restart-strategy.fixed-delay.delay", "2 s")
    conf.set_string("rest.bind-address", "127.0.0.1")
    conf.set_string("rest.address", "127.0.0.1")
    interval = cfg["stream.checkpoint-interval-ms"] if checkpoint_interval_ms is None else checkpoint_interval_ms
    if interval:
        conf.set_string("execution.checkpointing.interval", f"{interval} ms")
        conf.set_string("execution.checkpointing.dir", checkpoint_uri(cfg))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg["stream.parallelism"])
    return env
