"""Pure numerical kernels (numba/NumPy) shared by the stream, the backfill and the CLI.

Nothing here imports Kafka, Flink, Beam or torch: kernels take arrays and explicit state, and return arrays.

numba's on-disk cache notices a change to a function's own file only, not to the kernels and constants it uses
from other files (e.g. the ensemble's parameter indexes). So the cache lives in a folder named by a digest of every
kernel source here: any change to any kernel starts a fresh cache (unless ``NUMBA_CACHE_DIR`` is set explicitly).
"""

import hashlib
import os
import sys
from pathlib import Path


def _use_versioned_numba_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "augur" / "numba"
    path = str(base / digest.hexdigest()[:16])
    if "numba" in sys.modules:           # already configured from the environment: change it in place
        sys.modules["numba"].config.CACHE_DIR = path
    else:                                # read when numba is imported (and by child processes, same sources)
        os.environ["NUMBA_CACHE_DIR"] = path


_use_versioned_numba_cache()


def _import_numba_with_the_builtin_print() -> None:
    """PyFlink's Python workers on a cluster replace ``builtins.print`` (to send output to the log) before user
    code runs, and numba, registering its typing of ``print`` on import, fails with "module ... has no attribute
    'print'". Import numba once with the real print in place, then give the worker its print back."""
    import builtins
    replaced = builtins.print
    original = getattr(getattr(replaced, "__self__", None), "_print", None)
    if "numba" in sys.modules or original is None or getattr(original, "__module__", None) != "builtins":
        return
    builtins.print = original
    try:
        __import__("numba")
    finally:
        builtins.print = replaced


_import_numba_with_the_builtin_print()
