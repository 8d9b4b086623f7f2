"""The life cycle of Augur's jobs (the streaming job, the archive job) on a Flink cluster: submit, list, cancel,
savepoint (optionally stopping), and resume from a savepoint. Submission uses Flink's own CLI (``flink run``) from
the PyFlink distribution; the rest is Flink's REST API.

What a submission ships: the job's Python packages (a clean copy of the source packages, never the venv or the
caches) as ``--pyFiles``, and the connector and Augur function jars through ``pipeline.jars`` (the client uploads
them with the job graph). The job's options travel as ``--set`` arguments, so the job on the cluster reads the
same configuration keys as ``augur stream``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from augur import paths
from augur.paths import REPO_ROOT
from infra.flink_cluster import PYFLINK_HOME, ClusterError, rest_call

JOB_PACKAGES = ("augur", "collectors", "infra", "jobs", "models", "schemas", "udfs")


def job_source_dir() -> Path:
    """A copy of the job's Python packages (sources and schema files only), named by their content."""
    files = sorted(f for pkg in JOB_PACKAGES for f in (REPO_ROOT / pkg).rglob("*")
                   if f.is_file() and "__pycache__" not in f.parts and f.suffix in (".py", ".json", ".properties"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    dest = paths.run_dir() / "flink-job-src" / digest.hexdigest()[:12]
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for f in files:
            target = tmp / f.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        tmp.rename(dest)
    return dest


JOB_MODULES = {"stream": "jobs.stream_job", "archive": "jobs.archive_job"}


def submit(rest: str, sets: dict[str, str], savepoint: str | None = None, config_file: str | None = None,
           timeout_s: float = 300.0, job: str = "stream") -> str:
    """Submit the streaming job, or another of ``JOB_MODULES`` (detached); returns its job id."""
    from infra import maven
    maven.flink_job_jars()  # fetch and build before the CLI runs, with clear errors
    src = job_source_dir()
    cmd = ["bash", str(PYFLINK_HOME / "bin" / "flink"), "run", "-m", rest, "-d", "-pym", JOB_MODULES[job],
           "--pyFiles", str(src)]
    if savepoint:
        cmd += ["-s", savepoint]
    if config_file:
        cmd += ["--config", str(Path(config_file).resolve())]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    run_env = {**os.environ, "FLINK_HOME": str(PYFLINK_HOME),
               "PYFLINK_CLIENT_EXECUTABLE": sys.executable, "PYTHONPATH": str(src)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    found = re.search(r"JobID ([0-9a-f]{32})", out)
    if proc.returncode != 0 or not found:
        raise ClusterError(f"flink run failed (exit {proc.returncode}):\n{out[-4000:]}")
    return found.group(1)


def list_jobs(rest: str) -> list[dict]:
    return sorted(rest_call(rest, "/jobs/overview").get("jobs", []), key=lambda j: j.get("start-time", 0))


def job_state(rest: str, job_id: str) -> str:
    return rest_call(rest, f"/jobs/{job_id}").get("state", "UNKNOWN")


def cancel(rest: str, job_id: str) -> None:
    rest_call(rest, f"/jobs/{job_id}?mode=cancel", method="PATCH")


def savepoint(rest: str, job_id: str, target_dir: str | None = None, stop: bool = False,
              timeout_s: float = 300.0) -> str:
    """Take a savepoint (and with ``stop``, stop the job with it: sources end, sinks commit, the job finishes);
    returns the savepoint's location."""
    if stop:
        body = {"drain": False, **({"targetDirectory": target_dir} if target_dir else {})}
        trigger = rest_call(rest, f"/jobs/{job_id}/stop", method="POST", body=body)
    else:
        body = {"cancel-job": False, **({"target-directory": target_dir} if target_dir else {})}
        trigger = rest_call(rest, f"/jobs/{job_id}/savepoints", method="POST", body=body)
    request = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = rest_call(rest, f"/jobs/{job_id}/savepoints/{request}")
        if answer.get("status", {}).get("id") == "COMPLETED":
            op = answer.get("operation", {})
            if "location" in op:
                return op["location"]
            raise ClusterError(f"the savepoint of {job_id} failed: {str(op.get('failure-cause'))[:2000]}")
        time.sleep(1)
    raise ClusterError(f"the savepoint of {job_id} did not complete within {timeout_s:.0f} s")


def wait_for_state(rest: str, job_id: str, states: set[str], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_state(rest, job_id)
        if state in states:
            return state
        time.sleep(1)
    raise ClusterError(f"job {job_id} is {state}, not {' or '.join(sorted(states))}, after {timeout_s:.0f} s")
