"""Model artifacts: plain float64/int64 arrays in an ``.npz`` plus JSON metadata, never pickle.

An artifact is ``{"kind": ..., "version": ..., "meta": {...}, "arrays": {name: ndarray}}``. On disk it is one
``.npz`` whose ``__meta__`` entry holds the JSON text (as uint8 bytes); loading uses ``allow_pickle=False`` and
checks the kind, so a file from elsewhere cannot run code or be mistaken for another model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "augur.model.v1"


def digest_tag(data: bytes) -> float:
    """A positive number naming ``data``, to keep in a float64 state array: 48 bits of its sha256, plus one (so
    never 0), exact in a float."""
    return float(int.from_bytes(hashlib.sha256(data).digest()[:6], "big") + 1)


class ArtifactError(ValueError):
    """A model file is missing, unreadable or not the expected kind."""


@dataclass
class Artifact:
    kind: str
    version: str
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = json.dumps({"format": FORMAT, "kind": self.kind, "version": self.version, "meta": self.meta})
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        for name, a in arrays.items():
            if a.dtype == object:
                raise ArtifactError(f"array {name!r} has dtype object; only numeric arrays are stored")
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, __meta__=np.frombuffer(head.encode(), dtype=np.uint8), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, kind: str) -> "Artifact":
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"model file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as npz:
                head = json.loads(bytes(npz["__meta__"]).decode())
                arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"model file {path} is not an Augur model: {exc}") from exc
        if head.get("format") != FORMAT:
            raise ArtifactError(f"model file {path}: unknown format {head.get('format')!r} (expected {FORMAT})")
        if head.get("kind") != kind:
            raise ArtifactError(f"model file {path} holds a {head.get('kind')!r} model, not {kind!r}")
        return cls(head["kind"], head["version"], arrays, head.get("meta", {}))
