"""The README's first command, `./augur.sh demo`, on its own broker: it must show injected faults being detected
and leave nothing running when it stops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from infra.kafka_broker import free_port, port_in_use

pytestmark = [pytest.mark.kafka, pytest.mark.flink, pytest.mark.slow]


def processes_with_env(marker: str) -> list[str]:
    """Live (non-zombie) processes whose environment mentions ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes() and \
                    (proc / "stat").read_text().split()[2] != "Z":
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:
            continue
    return found


def test_demo_detects_injected_faults_and_stops_cleanly(tmp_path, repo_root):
    port, controller = free_port(), free_port()
    stale = tmp_path / "demo" / "labels.json"  # a previous run's ground truth must not be used
    stale.parent.mkdir()
    stale.write_text('{"faults": [{"kind": "cpu_hog", "host": "host-2", "start_ms": 1, "end_ms": 2}]}')
    env = {**os.environ, "AUGUR_RUN_DIR": str(tmp_path), "AUGUR_INFRA_KAFKA_PORT": str(port),
           "AUGUR_INFRA_KAFKA_CONTROLLER_PORT": str(controller)}
    out = subprocess.run([str(repo_root / "augur.sh"), "demo", "--until-detected", "2", "--duration", "360"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "telemetry source: synthetic" in out.stdout or "telemetry source: real+synthetic" in out.stdout
    assert "fitted 4 hosts' Isolation Forests" in out.stdout
    assert "detected injected fault cpu_hog on host-2" in out.stdout
    assert "detected injected fault latency_regression on host-3" in out.stdout
    assert "ANOMALY" in out.stdout and "stopped Kafka" in out.stdout
    assert not port_in_use(port) and not port_in_use(controller)
    assert processes_with_env(str(tmp_path)) == []
