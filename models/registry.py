"""The model registry: trained models per series in a directory, picked up by running jobs without a restart.

Layout: ``ROOT/<series key>/<kind>.npz`` (kinds ``seasonal_prophet`` and ``lstm``, see :mod:`models.artifacts`),
where the series key is a filesystem-safe digest of the series id. Writers replace files atomically, so a reader
sees either the old or the new model. :meth:`ModelRegistry.models_for` caches what it loaded and looks at the
files again at most every ``recheck_s`` seconds; a new version (another file modification time) is loaded then.
A model file that cannot be read is reported once per version and ignored: the series keeps its previous models
(or none), it is never silently dropped.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from models.artifacts import Artifact, ArtifactError
from models.ensemble_scorer import Models

KINDS = {"seasonal_prophet": "params", "lstm": "weights"}


def _checked(kind: str, a: np.ndarray) -> np.ndarray:
    """The array if it is a whole model of its kind (the kernels trust their layout), else ArtifactError."""
    from udfs import lstm, seasonal
    if a.ndim != 1 or not np.isfinite(a).all():
        raise ArtifactError(f"{kind} arrays must be one-dimensional and finite")
    if kind == "lstm" and (a.shape[0] == 0 or lstm.hidden_size(a) == 0):
        raise ArtifactError(f"lstm weights of length {a.shape[0]} are not a whole model")
    if kind == "seasonal_prophet" and a.shape[0] and not seasonal.params_valid(a):
        raise ArtifactError("seasonal_prophet parameters do not match their own layout")
    return a


def series_key(series_id: str) -> str:
    return hashlib.sha256(series_id.encode()).hexdigest()[:32]


class ModelRegistry:
    def __init__(self, root: str | Path | None, recheck_s: float = 60.0, clock=time.monotonic):
        self.root = Path(root) if root else None
        self.recheck_s = recheck_s
        self.clock = clock
        self._cache: dict[str, tuple[float, tuple, Models]] = {}
        self._reported: set[tuple] = set()

    def path(self, series_id: str, kind: str) -> Path:
        assert self.root is not None
        return self.root / series_key(series_id) / f"{kind}.npz"

    def save(self, series_id: str, artifact: Artifact) -> Path:
        if artifact.kind not in KINDS:
            raise ArtifactError(f"the registry holds {', '.join(KINDS)} models, not {artifact.kind!r}")
        return artifact.save(self.path(series_id, artifact.kind))

    def models_for(self, series_id: str) -> Models:
        """The series' current models (empty :class:`Models` when there are none)."""
        if self.root is None:
            return Models()
        now = self.clock()
        cached = self._cache.get(series_id)
        if cached is not None and now - cached[0] < self.recheck_s:
            return cached[2]
        stamps = tuple(self._mtime(self.path(series_id, kind)) for kind in KINDS)
        if cached is not None and cached[1] == stamps:
            self._cache[series_id] = (now, stamps, cached[2])
            return cached[2]
        previous = cached[2] if cached is not None else Models()
        arrays, versions = {}, []
        for (kind, name), stamp in zip(KINDS.items(), stamps):
            arrays[kind] = getattr(previous, "season" if kind == "seasonal_prophet" else "lstm")
            if stamp is None:
                arrays[kind] = np.empty(0)
                continue
            try:
                art = Artifact.load(self.path(series_id, kind), kind)
                arrays[kind] = _checked(kind, np.asarray(art.arrays[name], dtype=np.float64))
                versions.append(art.version)
            except (ArtifactError, KeyError) as exc:
                if (series_id, kind, stamp) not in self._reported:
                    self._reported.add((series_id, kind, stamp))
                    print(f"augur models: ignoring {kind} model of {series_id}: {exc}", file=sys.stderr)
        models = Models(arrays["seasonal_prophet"], arrays["lstm"], "+".join(versions) or "none")
        self._cache[series_id] = (now, stamps, models)
        return models

    @staticmethod
    def _mtime(path: Path) -> float | None:
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
