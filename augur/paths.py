"""Where Augur keeps its downloads and runtime state (one place, all under an ignored cache folder)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of downloaded jars and runtime state: ``$AUGUR_CACHE`` or ``<repo>/.cache/augur``."""
    return Path(os.environ.get("AUGUR_CACHE", REPO_ROOT / ".cache" / "augur"))


def kafka_libs_dir() -> Path:
    return cache_dir() / "kafka" / "libs"


def flink_jars_dir() -> Path:
    return cache_dir() / "flink-jars"


def run_dir() -> Path:
    """Runtime state of services started by ``augur infra`` (data, logs, pid files): ``$AUGUR_RUN_DIR`` or
    ``<cache>/run``. Tests point it at a temporary folder so they never touch a developer's running broker."""
    return Path(os.environ.get("AUGUR_RUN_DIR", cache_dir() / "run"))
