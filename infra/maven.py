"""Fetch pinned jars from Maven Central into the cache (Kafka broker runtime, Flink connectors).

The versions live in the small poms beside this file (``infra/maven/*.xml``); Maven resolves and copies them.
A marker file records which pom produced a folder, so a pom change triggers a fresh copy.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from augur import paths

POM_DIR = Path(__file__).resolve().parent / "maven"
KAFKA_POM = POM_DIR / "kafka-pom.xml"
FLINK_CONNECTORS_POM = POM_DIR / "flink-connectors-pom.xml"


class FetchError(RuntimeError):
    pass


def _fetch(pom: Path, dest: Path) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    marker = dest / ".augur-pom"
    if marker.exists() and marker.read_text() == digest and any(dest.glob("*.jar")):
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError("Maven (mvn) is not on PATH: install it (Debian: apt-get install maven) and retry")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={dest}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(f"fetching jars for {pom.name} failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    marker.write_text(digest)
    return dest


def fetch_kafka() -> Path:
    """Kafka broker + tools jars; returns the folder holding them."""
    return _fetch(KAFKA_POM, paths.kafka_libs_dir())


def fetch_flink_connectors() -> Path:
    return _fetch(FLINK_CONNECTORS_POM, paths.flink_jars_dir())


def flink_connector_jars() -> list[Path]:
    """The connector jars a Flink job must ship (fetched on first use)."""
    return sorted(fetch_flink_connectors().glob("*.jar"))


def fetch_all() -> None:
    fetch_kafka()
    fetch_flink_connectors()
