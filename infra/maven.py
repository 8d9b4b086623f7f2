"""Fetch pinned jars from Maven Central into the cache (Kafka broker runtime, Flink connectors), and build
Augur's own JVM-side stream functions (``jvm/``).

The versions live in the small poms beside this file (``infra/maven/*.xml``); Maven resolves and copies them.
A marker file records which pom (or which sources) produced a folder, so a change triggers a fresh copy or build.
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
FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "jvm"
FUNCTIONS_JAR = "augur-flink-functions.jar"


class FetchError(RuntimeError):
    pass


def _maven_into(dest: Path, pom: Path, *goals: str) -> subprocess.CompletedProcess:
    """Run Maven on ``pom`` with ``goals`` after emptying ``dest`` (where the goals write)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError("Maven (mvn) is not on PATH: install it (Debian: apt-get install maven) and retry")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return subprocess.run([mvn, "-q", "-B", "-f", str(pom), *goals], capture_output=True, text=True)


def _fetch(pom: Path, dest: Path) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    marker = dest / ".augur-pom"
    if marker.exists() and marker.read_text() == digest and any(dest.glob("*.jar")):
        return dest
    proc = _maven_into(dest, pom, "dependency:copy-dependencies", f"-DoutputDirectory={dest}")
    if proc.returncode != 0:
        raise FetchError(f"fetching jars for {pom.name} failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    marker.write_text(digest)
    return dest


def fetch_kafka() -> Path:
    """Kafka broker + tools jars; returns the folder holding them."""
    return _fetch(KAFKA_POM, paths.kafka_libs_dir())


def fetch_flink_connectors() -> Path:
    return _fetch(FLINK_CONNECTORS_POM, paths.flink_jars_dir())


def functions_digest() -> str:
    h = hashlib.sha256()
    for f in sorted([FUNCTIONS_DIR / "pom.xml", *FUNCTIONS_DIR.glob("src/**/*.java")]):
        h.update(f.relative_to(FUNCTIONS_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_functions() -> Path:
    """Augur's stream functions jar (``jvm/``), built with Maven into the cache when its sources changed."""
    dest = paths.cache_dir() / "jvm"
    jar = dest / FUNCTIONS_JAR
    marker = dest / ".augur-sources"
    digest = functions_digest()
    if jar.exists() and marker.exists() and marker.read_text() == digest:
        return jar
    proc = _maven_into(dest, FUNCTIONS_DIR / "pom.xml", "package", f"-Daugur.build.dir={dest}")
    if proc.returncode != 0 or not jar.exists():
        raise FetchError(f"building {FUNCTIONS_DIR} failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    marker.write_text(digest)
    return jar


def flink_connector_jars() -> list[Path]:
    """The connector jars a Flink job must ship (fetched on first use)."""
    return sorted(fetch_flink_connectors().glob("*.jar"))


def flink_job_jars() -> list[Path]:
    """Every jar the streaming job ships: the connectors and Augur's own functions."""
    return flink_connector_jars() + [build_functions()]


def fetch_all() -> None:
    fetch_kafka()
    fetch_flink_connectors()
    build_functions()
