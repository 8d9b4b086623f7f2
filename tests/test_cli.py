"""The `augur` command line as users call it."""

import subprocess
import sys

from collectors.output import read_jsonl
from schemas import codec, topics


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "augur.cli", *args], capture_output=True, text=True, timeout=120,
                          **kw)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for sub in ("infra", "synth", "stream", "archive", "tail", "demo", "cluster", "submit", "jobs"):
        assert sub in out.stdout


def test_synth_writes_valid_jsonl_and_labels(tmp_path):
    out = run("synth", "--hosts", "2", "--seed", "3", "--start", "2025-01-01T00:00:00Z", "--duration", "30m",
              "--speed", "max", "--fault", "error_burst@host-1:+10m:5m", "--labels", str(tmp_path / "l.json"),
              "-o", str(tmp_path / "t.jsonl"))
    assert out.returncode == 0, out.stderr
    recs = list(read_jsonl(tmp_path / "t.jsonl"))
    assert len(recs) == 2 * 12 * 180
    for r in recs[:500]:
        codec.validate(topics.TELEMETRY.name, r)
    assert '"kind": "error_burst"' in (tmp_path / "l.json").read_text()


def test_bad_arguments_get_one_clear_line():
    out = run("synth", "--fault", "cpu_hog@nowhere", "-o", "-", "--duration", "1m")
    assert out.returncode == 1 and out.stderr.startswith("augur: bad fault") and "Traceback" not in out.stderr
    out = run("synth", "--set", "stream.window-size-ms=-5", "-o", "-", "--duration", "1m")
    assert out.returncode == 2 and "configuration error" in out.stderr
    out = run("synth", "--speed", "max", "-o", "-")
    assert out.returncode == 2 and "--duration" in out.stderr


def test_cluster_commands_say_clearly_when_no_cluster_answers(tmp_path):
    from infra.kafka_broker import free_port
    env = {**__import__("os").environ, "AUGUR_RUN_DIR": str(tmp_path)}
    port = str(free_port())
    out = run("cluster", "status", "--set", f"infra.flink.rest-port={port}", env=env)
    assert out.returncode == 3 and "not running" in out.stdout
    out = run("jobs", "list", "--rest", f"127.0.0.1:{port}", env=env)
    assert out.returncode == 1 and out.stderr.startswith("augur: no Flink REST endpoint answers")
    assert "Traceback" not in out.stderr
    out = run("jobs", "cancel", env=env)
    assert out.returncode == 2 and "name the job id" in out.stderr
