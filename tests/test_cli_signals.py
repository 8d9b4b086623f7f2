"""Long-running commands stop cleanly on SIGINT and on SIGTERM (what a service manager sends), also when started
with SIGINT ignored, as a non-interactive shell starts a background job (``augur collect &`` in a script)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from infra.kafka_broker import free_port
from tests.ebpf_support import require_ebpf


def _start(args: list[str]) -> subprocess.Popen:
    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = {**os.environ, "AUGUR_COLLECT_PROMETHEUS_PORT": str(free_port())}
    return subprocess.Popen([sys.executable, "-m", "augur.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore_sigint)


def _stop(proc: subprocess.Popen, sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 60 s after signal {sig.name}; stderr: {err[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_synth_stops_on_a_signal_with_what_it_wrote_whole(sig):
    proc = _start(["synth", "--output", "-", "--hosts", "1", "--speed", "1"])
    assert "augur synth:" in proc.stderr.readline()
    first = proc.stdout.readline()      # the generator is producing
    out, err = _stop(proc, sig)
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in (first + out).splitlines()]
    assert rows and all(r["host"] == "host-1" for r in rows)


@pytest.mark.ebpf
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_collect_stops_on_a_signal_and_flushes_its_last_interval(sig):
    require_ebpf()
    proc = _start(["collect", "--stdout", "--signals", "cpu,host", "--interval", "1h"])
    assert "augur collect:" in proc.stderr.readline()   # printed once every program is attached
    out, err = _stop(proc, sig)
    assert proc.returncode == 0, err
    assert "augur collect: stopped;" in err
    metrics = {json.loads(line)["metric"] for line in out.splitlines()}
    # nothing is flushed before the hour: these come from the partial last interval, written on the way out
    assert {"ebpf.runqueue.latency", "system.memory.usage"} <= metrics
