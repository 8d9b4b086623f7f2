"""Isolation Forest scoring over trees exported to flat arrays (``models/iforest_export.py``).

All trees' nodes are concatenated; ``roots[i]`` is tree i's first node. For node j: ``feature[j]`` (-1 at a leaf),
``threshold[j]``, ``left[j]``/``right[j]`` (absolute node indexes) and ``leaf_value[j]``, the leaf's depth plus the
average path length of its training samples minus one (what scikit-learn adds per tree). The score is
scikit-learn's ``score_samples``: ``-2 ** (-sum(leaf values) / denominator)``, in (-1, 0), lower = more abnormal.
Inputs are rounded to float32 first, as scikit-learn's trees do, so the comparisons split exactly the same way.
"""

from __future__ import annotations

import numpy as np
from numba import njit


LANES = 8   # rows that walk a tree side by side


@njit(cache=True)
def score_samples(roots: np.ndarray, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                  right: np.ndarray, leaf_value: np.ndarray, denominator: float, xs: np.ndarray) -> np.ndarray:
    """scikit-learn's ``IsolationForest.score_samples`` for each row of ``xs`` (n x d).

    Tree by tree over all rows (one tree's nodes stay in cache), on the rows rounded to float32 once. Rows walk a
    tree :data:`LANES` at a time, level by level, and a row at its leaf stays there (a select, not a branch): the
    walks are independent chains of loads the CPU overlaps, where one row's walk would wait on each load and
    mispredict each left/right turn. The remaining rows (fewer than ``LANES``) walk one by one."""
    n = xs.shape[0]
    x32 = xs.astype(np.float32).astype(np.float64)
    depth = np.zeros(n)
    at = np.empty(LANES, dtype=np.int64)
    whole = n - n % LANES
    for t in range(roots.shape[0]):
        root = roots[t]
        for i0 in range(0, whole, LANES):
            for k in range(LANES):
                at[k] = root
            walking = True
            while walking:
                walking = False
                for k in range(LANES):
                    j = at[k]
                    f = feature[j]
                    inner = f >= 0
                    turn = left[j] if x32[i0 + k, max(f, 0)] <= threshold[j] else right[j]
                    at[k] = turn if inner else j
                    walking |= inner
            for k in range(LANES):
                depth[i0 + k] += leaf_value[at[k]]
        for i in range(whole, n):
            j = root
            while feature[j] >= 0:
                j = left[j] if x32[i, feature[j]] <= threshold[j] else right[j]
            depth[i] += leaf_value[j]
    out = np.empty(n)
    for i in range(n):
        out[i] = -(2.0 ** (-depth[i] / denominator)) if denominator > 0 else -1.0
    return out


def anomaly_strength(score: np.ndarray | float, offset: float = -0.5):
    """Raw score for the ensemble, higher = more abnormal: how far below the paper's 0.5 line a sample lies."""
    return offset - np.asarray(score)
