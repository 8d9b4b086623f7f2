"""A standalone Flink session cluster on loopback, from the PyFlink distribution: 1 JobManager, N TaskManagers.

    augur cluster up|down|status        start, stop, describe it
    augur submit                        submit the streaming job to it (or to any cluster, by REST address)
    augur jobs list|cancel|savepoint|resume

The cluster's configuration, logs, pid files, checkpoints and savepoints live under ``<run dir>/flink``. Its
TaskManagers start this venv's Python for the job's Python operators, so a job submitted here needs no packaging
of the environment; a remote cluster needs the same Python packages (see ``infra/k8s/`` for the Kubernetes
Operator).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from augur import paths
from infra.kafka_broker import pid_alive

PYFLINK_HOME = Path(__import__("pyflink").__file__).resolve().parent


class ClusterError(RuntimeError):
    pass


def rest_call(rest: str, path: str, method: str = "GET", body: dict | None = None, timeout_s: float = 10.0):
    """One call of Flink's REST API; returns the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{rest}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        raise ClusterError(f"{method} {path} on {rest}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}")
    except OSError as e:
        raise ClusterError(f"no Flink REST endpoint answers at {rest} ({e})") from None
    return json.loads(text) if text.strip() else {}


@dataclass
class ClusterStatus:
    rest: str
    running_pids: list[int]
    overview: dict | None

    @property
    def answering(self) -> bool:
        return self.overview is not None

    def describe(self) -> str:
        if not self.running_pids and not self.answering:
            return f"flink: not running (REST {self.rest})"
        if not self.answering:
            return f"flink: {len(self.running_pids)} process(es) up, REST {self.rest} not answering yet"
        o = self.overview
        return (f"flink: running at http://{self.rest} (Flink {o.get('flink-version')}), "
                f"{o.get('taskmanagers')} TaskManager(s), {o.get('slots-available')}/{o.get('slots-total')} slots "
                f"free, {o.get('jobs-running')} job(s) running")


class FlinkCluster:
    def __init__(self, rest_port: int = 8081, rpc_port: int = 6123, taskmanagers: int = 2, slots: int = 2,
                 state_dir: Path | None = None):
        self.rest_port, self.rpc_port = rest_port, rpc_port
        self.taskmanagers, self.slots = taskmanagers, slots
        self.state_dir = Path(state_dir) if state_dir else paths.run_dir() / "flink"

    @property
    def rest(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def lib_dir(self) -> Path:
        return self.state_dir / "lib"

    def env(self) -> dict:
        return {**os.environ, "FLINK_HOME": str(PYFLINK_HOME), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LIB_DIR": str(self.lib_dir), "FLINK_LOG_DIR": str(self.log_dir),
                "FLINK_PID_DIR": str(self.state_dir / "pids"), "PYFLINK_CLIENT_EXECUTABLE": sys.executable}

    def _link_lib(self) -> None:
        """The distribution's lib/ plus opt/flink-python: a cluster runs Python operators only with it on its
        classpath (the wheel leaves it in opt/, and its own folders are not ours to change)."""
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        self.lib_dir.mkdir(parents=True)
        for jar in [*(PYFLINK_HOME / "lib").glob("*.jar"), *(PYFLINK_HOME / "opt").glob("flink-python-*.jar")]:
            (self.lib_dir / jar.name).symlink_to(jar)

    def configuration(self) -> dict:
        shipped = yaml.safe_load((PYFLINK_HOME / "conf" / "config.yaml").read_text()) or {}
        java_opts = shipped.get("env", {}).get("java", {}).get("opts", {}).get("all", "")
        uri = lambda p: (self.state_dir / p).resolve().as_uri()  # noqa: E731
        return {
            "env.java.opts.all": java_opts,
            "jobmanager.rpc.address": "127.0.0.1", "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.bind-host": "127.0.0.1", "jobmanager.memory.process.size": "1200m",
            "taskmanager.host": "127.0.0.1", "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": self.slots, "taskmanager.memory.process.size": "2048m",
            "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": self.rest_port,
            "parallelism.default": 2,
            # a job at parallelism 2 gets one slot on each TaskManager, so losing one leaves room to recover
            "taskmanager.load-balance.mode": "SLOTS",
            # a killed TaskManager is noticed in seconds, not after the default 50 s
            "heartbeat.interval": 2000, "heartbeat.timeout": 10000,
            "python.executable": sys.executable, "python.client.executable": sys.executable,
            "execution.checkpointing.dir": uri("checkpoints"),
            "execution.checkpointing.savepoint-dir": uri("savepoints"),
            "restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": 5,
            "restart-strategy.fixed-delay.delay": "3 s",
        }

    def _write_conf(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for f in (PYFLINK_HOME / "conf").iterdir():
            if f.name not in ("config.yaml", "workers", "masters"):
                shutil.copy(f, self.conf_dir / f.name)
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(self.configuration(), sort_keys=True))
        (self.conf_dir / "masters").write_text(f"127.0.0.1:{self.rest_port}\n")
        (self.conf_dir / "workers").write_text("localhost\n" * self.taskmanagers)

    def _daemon(self, script: str, *args: str) -> None:
        proc = subprocess.run(["bash", str(PYFLINK_HOME / "bin" / script), *args], env=self.env(),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ClusterError(f"{script} {' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def pids(self, daemon: str = "") -> list[int]:
        """Live pids of the cluster's processes (``daemon``: ``standalonesession`` or ``taskexecutor``)."""
        out = []
        for f in sorted((self.state_dir / "pids").glob(f"flink-*-{daemon}*.pid")):
            for line in f.read_text().split():
                if line.isdigit() and pid_alive(int(line)):
                    out.append(int(line))
        return out

    def taskmanager_pids(self) -> list[int]:
        return self.pids("taskexecutor")

    def overview(self) -> dict | None:
        try:
            return rest_call(self.rest, "/overview", timeout_s=3)
        except ClusterError:
            return None

    def status(self) -> ClusterStatus:
        return ClusterStatus(self.rest, self.pids(), self.overview())

    def up(self, timeout_s: float = 120.0) -> ClusterStatus:
        st = self.status()
        if st.answering and (st.overview or {}).get("taskmanagers", 0) >= self.taskmanagers:
            return st
        if not st.running_pids:
            self._write_conf()
            self._link_lib()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._daemon("jobmanager.sh", "start")
            for _ in range(self.taskmanagers):
                self.start_taskmanager()
        return self.wait_for_taskmanagers(self.taskmanagers, timeout_s)

    def start_taskmanager(self) -> None:
        self._daemon("taskmanager.sh", "start")

    def wait_for_taskmanagers(self, n: int, timeout_s: float = 120.0) -> ClusterStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status()
            if st.answering and st.overview.get("taskmanagers", 0) >= n:
                return st
            time.sleep(1)
        raise ClusterError(f"the cluster did not report {n} TaskManager(s) within {timeout_s:.0f} s; "
                           f"see the logs in {self.log_dir}")

    def leftover_pids(self) -> list[int]:
        """Live processes started for this cluster that are not its daemons: Python workers of a TaskManager that
        was killed (SIGKILL leaves its children running, adopted by init). They are recognised by the cluster's
        ``FLINK_CONF_DIR`` in their environment, which every child of a daemon inherits (Linux ``/proc``)."""
        marker = b"\0FLINK_CONF_DIR=" + str(self.conf_dir).encode() + b"\0"
        daemons, out = set(self.pids()), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in daemons or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if marker in b"\0" + environ + b"\0" and pid_alive(int(entry.name)):
                out.append(int(entry.name))
        return out

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the daemons (SIGTERM, then SIGKILL after ``timeout_s``) and any process left over from them."""
        pids = self.pids()
        leftovers = self.leftover_pids()
        if not pids and not leftovers:
            return False
        for p in pids + leftovers:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids + leftovers):
            time.sleep(0.5)
        for p in pids + leftovers + self.leftover_pids():
            _signal(p, signal.SIGKILL)
        for f in (self.state_dir / "pids").glob("*.pid"):
            f.unlink()
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
