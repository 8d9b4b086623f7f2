"""The model registry: trained models per series in a directory, picked up by running jobs without a restart.

Layout: ``ROOT/<series key>/<kind>.npz`` (kinds ``seasonal_prophet`` and ``lstm``, see :mod:`models.artifacts`),
where the series key is a filesystem-safe digest of the series id; a host's Isolation Forest (kind ``iforest``,
:mod:`models.iforest_export`) is ``ROOT/<digest of "host:" + host>/iforest.npz``. Writers replace files
atomically, so a reader sees either the old or the new model. :meth:`ModelRegistry.models_for` (and
:meth:`ModelRegistry.forest_for`) cache what they loaded and look at the files again at most every ``recheck_s``
seconds; a new version (another file modification time) is loaded then. A model file that cannot be read is
reported once per version and ignored: the series (or host) keeps its previous models (or none), it is never
silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.artifacts import Artifact, ArtifactError
from models.ensemble_scorer import Models

KINDS = {"seasonal_prophet": "params", "lstm": "weights"}
FOREST_KIND = "iforest"


class HostForest(NamedTuple):
    """A host's exported forest (:mod:`udfs.iforest` arrays), its alarm line, its version and its signals'
    training envelope."""
    arrays: dict
    threshold: float      # a window whose score_samples is below this is anomalous (the training minimum)
    version: str
    envelope: np.ndarray | None = None   # per signal, the largest |z| in training (None: a forest saved without it)


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


def host_forest(art: Artifact, n_signals: int) -> HostForest:
    """The forest of an ``iforest`` artifact, checked so that :func:`udfs.iforest.score_samples` stays inside it."""
    from models import iforest_export
    try:
        a = {k: np.asarray(art.arrays[k]) for k in iforest_export.ARRAYS}
        threshold = float(art.meta["threshold"])
        names = list(art.meta["features"])
        envelope = art.meta.get("envelope")
        envelope = None if envelope is None else np.asarray([float(v) for v in envelope], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"not a host forest: {exc!r}") from exc
    nodes = a["feature"].shape[0]
    ints = ("roots", "feature", "left", "right")
    if (any(a[k].ndim != 1 for k in a) or any(a[k].shape[0] != nodes for k in ("threshold", "left", "right",
                                                                                    "leaf_value"))
            or any(a[k].dtype.kind not in "iu" for k in ints) or a["denominator"].shape[0] != 1
            or not math.isfinite(threshold) or len(names) != n_signals):
        raise ArtifactError(f"forest arrays do not fit together, or it was trained on {len(names)} signals, "
                            f"not {n_signals}")
    leaf = a["feature"] < 0
    inner = ~leaf
    if (nodes == 0 or a["roots"].shape[0] == 0 or a["roots"].min() < 0 or a["roots"].max() >= nodes
            or a["feature"].max() >= n_signals
            or np.any((a["left"][inner] <= np.flatnonzero(inner)) | (a["left"][inner] >= nodes))
            or np.any((a["right"][inner] <= np.flatnonzero(inner)) | (a["right"][inner] >= nodes))):
        raise ArtifactError("forest nodes point outside the forest (or backwards, which could loop)")
    if envelope is not None and (envelope.shape != (n_signals,) or not np.all(np.isfinite(envelope))
                                 or np.any(envelope < 0)):
        raise ArtifactError(f"the forest's envelope must be {n_signals} finite numbers >= 0")
    arrays = {k: (a[k].astype(np.int64) if k in ints else a[k].astype(np.float64)) for k in a}
    return HostForest(arrays, threshold, art.version, envelope)


class ModelRegistry:
    def __init__(self, root: str | Path | None, recheck_s: float = 60.0, clock=time.monotonic):
        self.root = Path(root) if root else None
        self.recheck_s = recheck_s
        self.clock = clock
        self._cache: dict[str, tuple[float, tuple, Models]] = {}
        self._forests: dict[str, tuple[float, float | None, HostForest | None]] = {}
        self._reported: set[tuple] = set()

    def path(self, series_id: str, kind: str) -> Path:
        assert self.root is not None
        return self.root / series_key(series_id) / f"{kind}.npz"

    def save(self, series_id: str, artifact: Artifact) -> Path:
        if artifact.kind not in KINDS:
            raise ArtifactError(f"the registry holds {', '.join(KINDS)} models, not {artifact.kind!r}")
        return artifact.save(self.path(series_id, artifact.kind))

    def forest_path(self, host: str) -> Path:
        return self.path("host:" + host, FOREST_KIND)

    def save_forest(self, host: str, artifact: Artifact) -> Path:
        if artifact.kind != FOREST_KIND:
            raise ArtifactError(f"a host's model is an {FOREST_KIND!r}, not {artifact.kind!r}")
        return artifact.save(self.forest_path(host))

    def forest_for(self, host: str, n_signals: int) -> HostForest | None:
        """The host's current forest, or None (no registry, no forest, or an unusable file, reported once)."""
        if self.root is None:
            return None
        now = self.clock()
        cached = self._forests.get(host)
        if cached is not None and now - cached[0] < self.recheck_s:
            return cached[2]
        path = self.forest_path(host)
        stamp = self._mtime(path)
        if cached is not None and cached[1] == stamp:
            self._forests[host] = (now, stamp, cached[2])
            return cached[2]
        forest = cached[2] if cached is not None else None
        if stamp is None:
            forest = None
        else:
            try:
                forest = host_forest(Artifact.load(path, FOREST_KIND), n_signals)
            except ArtifactError as exc:
                if (host, stamp) not in self._reported:
                    self._reported.add((host, stamp))
                    print(f"augur models: ignoring the iforest model of host {host}: {exc}", file=sys.stderr)
        self._forests[host] = (now, stamp, forest)
        return forest

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
