"""A single-node KRaft Kafka broker on 127.0.0.1, run from the Maven-fetched jars.

``up`` formats storage once, starts the broker detached with its log in the run folder and waits until it
answers a metadata request; calling it again while the broker runs is harmless. ``down`` stops it and leaves
no process behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from augur import paths
from collectors.procfs import pid_stat
from infra import maven

LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2-kafka.properties"


class BrokerError(RuntimeError):
    pass


def java_binary() -> str:
    """The ``java`` to run Kafka with (17+), or a clear error naming the fix."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError("Java was not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless) "
                          "or set JAVA_HOME")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)', out)
    if not m or int(m.group(1)) < 17:
        raise BrokerError(f"Kafka 4 needs Java 17 or newer; {java} reports: {out.splitlines()[0] if out else '?'}")
    return java


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A loopback port nothing listens on right now (for brokers started beside a developer's own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie counts as dead). Shared by the services infra/ starts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = pid_stat(pid)   # the process state: "Z" for a zombie
    return bool(fields) and fields[0] != "Z"


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    answering: bool
    log_file: Path

    def describe(self) -> str:
        if not self.running:
            return f"kafka: stopped (log: {self.log_file})"
        state = "answering" if self.answering else "NOT answering"
        return f"kafka: running pid={self.pid} at {self.bootstrap}, {state} (log: {self.log_file})"


class KafkaBroker:
    def __init__(self, port: int = 9092, controller_port: int = 9093, heap_mb: int = 512,
                 state_dir: Path | None = None):
        self.port = port
        self.controller_port = controller_port
        self.heap_mb = heap_mb
        self.state_dir = Path(state_dir) if state_dir else paths.run_dir() / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(running=pid is not None, pid=pid, bootstrap=self.bootstrap,
                            answering=pid is not None and self._answers(), log_file=self.log_file)

    def _answers(self) -> bool:
        if not port_in_use(self.port):
            return False
        from kafka import KafkaAdminClient
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000,
                                     client_id="augur-infra")
        except Exception:
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def _write_properties(self) -> Path:
        data = self.state_dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Flink's transactional Kafka sink defaults to a 1 h transaction timeout
            "transaction.max.timeout.ms": "3600000",
            "log.retention.hours": "168",
        }
        path = self.state_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java_cmd(self, java: str, libs: Path, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        return [java, f"-Xmx{heap_mb}m", f"-Dkafka.logs.dir={self.log_dir}",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{libs}/*", main, *args]

    def _format_once(self, java: str, libs: Path, props: Path) -> None:
        if (self.state_dir / "data" / "meta.properties").exists():
            return
        cluster_id_file = self.state_dir / "cluster.id"
        if not cluster_id_file.exists():
            out = subprocess.run(self._java_cmd(java, libs, "kafka.tools.StorageTool", "random-uuid"),
                                 capture_output=True, text=True, check=False)
            cid = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
            if out.returncode != 0 or not cid:
                raise BrokerError(f"kafka storage random-uuid failed: {out.stderr[-2000:]}")
            cluster_id_file.write_text(cid)
        cid = cluster_id_file.read_text().strip()
        out = subprocess.run(self._java_cmd(java, libs, "kafka.tools.StorageTool", "format", "--standalone",
                                            "-t", cid, "-c", str(props)),
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")

    def up(self, timeout_s: float = 120.0) -> BrokerStatus:
        st = self.status()
        if st.running:
            if not st.answering:
                self._wait_answering(st.pid, timeout_s)
            return self.status()
        java = java_binary()
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already in use by another process; stop it or "
                                  f"choose other ports (--set infra.kafka.port=... / infra.kafka.controller-port=...)")
        libs = maven.fetch_kafka()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_properties()
        self._format_once(java, libs, props)
        stdout = open(self.log_dir / "stdout.log", "ab")
        proc = subprocess.Popen(self._java_cmd(java, libs, "kafka.Kafka", str(props), heap_mb=self.heap_mb),
                                stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.state_dir)
        stdout.close()
        self.pid_file.write_text(str(proc.pid))
        self._wait_answering(proc.pid, timeout_s)
        return self.status()

    def _wait_answering(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise BrokerError(f"the Kafka broker exited during start-up; see {self.log_file} and "
                                  f"{self.log_dir / 'stdout.log'}:\n{self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.5)
        raise BrokerError(f"the Kafka broker did not answer within {timeout_s:.0f} s; see {self.log_file}")

    def _log_tail(self, n: int = 30) -> str:
        lines: list[str] = []
        for f in (self.log_dir / "stdout.log", self.log_file):
            if f.exists():
                lines += f.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines)

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker; returns whether one was running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if the broker was started by this process (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
