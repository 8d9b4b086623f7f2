"""A host's state at one window as deviations: each signal's robust z against its own trailing window.

The Isolation Forest judges a host by the combination of its signals (CPU, run-queue and I/O latency, ...). Raw
levels differ between hosts and drift through the day, so each signal enters the forest as its distance from its
own recent median, in MAD units (:mod:`udfs.robust_zscore`, one sub-state per signal): a daily cycle is normal, a
sudden departure is not, and values that far out are kept out of the signal's history so an incident does not
become its own baseline.

State: ``[rows_seen, sub-state of signal 0, sub-state of signal 1, ...]``, one flat float64 array. A NaN input (the
host did not report that signal in the window) gives z = 0 and is not learned.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from udfs import robust_zscore


@njit(cache=True)
def state_size(n_signals: int, window: int) -> int:
    return 1 + n_signals * (robust_zscore.HEADER + 2 * window)


@njit(cache=True)
def init_state(n_signals: int, window: int) -> np.ndarray:
    state = np.empty(state_size(n_signals, window))
    state[0] = 0.0
    sub = robust_zscore.HEADER + 2 * window
    for k in range(n_signals):
        state[1 + k * sub:1 + (k + 1) * sub] = robust_zscore.init_state(window)
    return state


@njit(cache=True)
def step(state: np.ndarray, row: np.ndarray, min_history: int, outlier_z: float, rel_floors: np.ndarray,
         abs_floors: np.ndarray, z: np.ndarray) -> bool:
    """Fill ``z`` with each signal's deviation from its past (0 where the row has no value or the signal is still
    warming up), then learn the row. Returns whether every reported signal was past its warm-up."""
    n = row.shape[0]
    sub = (state.shape[0] - 1) // n
    window = (sub - robust_zscore.HEADER) // 2
    ready = True
    for k in range(n):
        x = row[k]
        if np.isnan(x):
            z[k] = 0.0
            continue
        v = robust_zscore.step_at(state, 1 + k * sub, window, x, min_history, outlier_z, rel_floors[k],
                                  abs_floors[k])
        if np.isnan(v):
            ready = False
            z[k] = 0.0
        else:
            z[k] = v
    state[0] += 1.0
    return ready
