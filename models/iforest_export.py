"""Export a fitted scikit-learn ``IsolationForest`` to the flat arrays :mod:`udfs.iforest` scores."""

from __future__ import annotations

import numpy as np

from models.artifacts import Artifact

KIND = "iforest"
ARRAYS = ("roots", "feature", "threshold", "left", "right", "leaf_value", "denominator")


def _average_path_length(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def export(forest) -> dict[str, np.ndarray]:
    roots, feature, threshold, left, right, leaf_value = [], [], [], [], [], []
    base = 0
    n_features = forest.n_features_in_
    for est, feats in zip(forest.estimators_, forest.estimators_features_):
        tree = est.tree_
        depth = tree.compute_node_depths().astype(np.float64)
        feats = np.asarray(feats)
        mapped = np.where(tree.feature >= 0, feats[np.maximum(tree.feature, 0)], -1)
        if len(feats) == n_features:
            mapped = np.where(tree.feature >= 0, tree.feature, -1)  # no feature subsampling at scoring time
        roots.append(base)
        feature.append(mapped)
        threshold.append(tree.threshold)
        left.append(np.where(tree.children_left >= 0, tree.children_left + base, -1))
        right.append(np.where(tree.children_right >= 0, tree.children_right + base, -1))
        leaf_value.append(depth + _average_path_length(tree.n_node_samples) - 1.0)
        base += tree.node_count
    denominator = len(forest.estimators_) * float(_average_path_length(np.array([forest._max_samples]))[0])
    return {"roots": np.asarray(roots, dtype=np.int64), "feature": np.concatenate(feature).astype(np.int64),
            "threshold": np.concatenate(threshold).astype(np.float64),
            "left": np.concatenate(left).astype(np.int64), "right": np.concatenate(right).astype(np.int64),
            "leaf_value": np.concatenate(leaf_value), "denominator": np.array([denominator])}


def train(x: np.ndarray, n_estimators: int = 100, seed: int = 0):
    from sklearn.ensemble import IsolationForest
    return IsolationForest(n_estimators=n_estimators, random_state=seed).fit(x)


def to_artifact(forest, feature_names: list[str], version: str, meta: dict | None = None) -> Artifact:
    return Artifact(KIND, version, export(forest), {"features": list(feature_names), **(meta or {})})


def host_artifact(rows: np.ndarray, feature_names: list[str], version: str, seed: int = 0) -> Artifact:
    """A host's forest fitted on its residual rows, with its alarm line (the lowest score of any training row) and
    each signal's envelope (the largest |value| of any training row: what the forest cannot judge beyond, see
    :mod:`jobs.host_state`)."""
    forest = train(rows, seed=seed)
    threshold = float(score(export(forest), rows).min())
    envelope = np.abs(rows).max(axis=0).tolist()   # rows is not empty: the forest could not have been fitted
    return to_artifact(forest, feature_names, version, {"threshold": threshold, "rows": int(rows.shape[0]),
                                                        "envelope": envelope})


def score(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    from udfs import iforest
    return iforest.score_samples(arrays["roots"], arrays["feature"], arrays["threshold"], arrays["left"],
                                 arrays["right"], arrays["leaf_value"], float(arrays["denominator"][0]),
                                 np.ascontiguousarray(x, dtype=np.float64))
