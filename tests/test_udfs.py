"""numba kernels against plain NumPy references, on seeded data."""

import math

import numpy as np
import pytest

from udfs import histogram, robust_zscore as rz
from udfs.transforms import stabilize, unstabilize
from udfs.window_features import counter_increase, window_features


def test_robust_z_matches_numpy_reference():
    rng = np.random.default_rng(42)
    xs = rng.standard_t(3, size=400) * 2.0 + 10.0
    window, min_history = 25, 10
    state = rz.init_state(window)
    learned: list[float] = []
    for x in xs:
        z = rz.step(state, x, min_history, math.inf, 1e-3, 0.0)  # threshold inf: every value is learned
        if len(learned) < min_history:
            assert math.isnan(z)
        else:
            assert z == pytest.approx(rz.reference_z(np.array(learned[-window:]), x, 1e-3, 0.0), rel=1e-12)
        learned.append(x)


@pytest.mark.parametrize("window", [1, 2, 7, 8, 64])
def test_robust_z_with_ties_and_runs_matches_numpy_reference(window):
    """Tied values, constant runs and both parities of the window: the MAD's bisection picks the same order
    statistics as sorting, and the sorted copy stays the sorted ring after every one-shift update."""
    rng = np.random.default_rng(window)
    xs = np.concatenate([rng.integers(0, 4, 300), np.full(80, 2.0), rng.integers(-3, 3, 300) * 0.5,
                         rng.normal(size=200)]).astype(float)
    state = rz.init_state(window)
    learned: list[float] = []
    for x in xs:
        z = rz.step(state, x, 1, math.inf, 0.0, 1e-6)
        if learned:
            assert z == pytest.approx(rz.reference_z(np.array(learned[-window:]), x, 0.0, 1e-6), rel=1e-12)
        learned.append(x)
        n = min(len(learned), window)
        ring, srt = state[rz.HEADER:rz.HEADER + window], state[rz.HEADER + window:rz.HEADER + window + n]
        np.testing.assert_array_equal(srt, np.sort(ring[:n]))


def test_step_batch_equals_step_by_step():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=500)
    xs[::37] = np.nan
    xs[200:210] += 25
    a, b = rz.init_state(30), rz.init_state(30)
    batch = rz.step_batch(a, xs, 12, 6.0, 0.0, 0.1)
    single = np.array([rz.step(b, x, 12, 6.0, 0.0, 0.1) for x in xs])
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(a, b)


def test_outliers_are_kept_out_of_the_history_for_at_most_one_window():
    state = rz.init_state(20)
    for x in np.random.default_rng(2).normal(size=40):
        rz.step(state, x, 10, 6.0, 0.0, 0.1)
    before = state.copy()
    z = rz.step(state, 50.0, 10, 6.0, 0.0, 0.1)
    assert z > 6
    np.testing.assert_array_equal(state[rz.HEADER:], before[rz.HEADER:])  # not learned
    assert state[2] == 1
    for _ in range(35):  # a lasting level shift is accepted after W rejections, then learned
        rz.step(state, 50.0, 10, 6.0, 0.0, 0.1)
    assert rz.history_median(state) > 40


def test_nan_scores_nan_and_is_not_learned():
    state = rz.init_state(10)
    for x in range(12):
        rz.step(state, float(x), 5, 6.0, 0.0, 0.1)
    n = state[0]
    assert math.isnan(rz.step(state, math.nan, 5, 6.0, 0.0, 0.1))
    assert state[0] == n


def test_z_to_score_is_half_at_threshold_and_bounded():
    assert rz.z_to_score(6.0, 6.0) == 0.5
    assert rz.z_to_score(-6.0, 6.0) == 0.5
    assert 0 <= rz.z_to_score(0.0, 6.0) < rz.z_to_score(100.0, 6.0) < 1
    assert math.isnan(rz.z_to_score(math.nan, 6.0))


def _expand(counts) -> np.ndarray:
    """Observations spread uniformly inside each log2 bucket: what the interpolated quantile assumes."""
    vals = []
    for i, c in enumerate(counts):
        lo, hi = histogram.bucket_bounds(i)
        vals.extend(lo + (hi - lo) * (np.arange(c) + 0.5) / c if c else [])
    return np.array(vals)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_histogram_quantile_matches_expanded_samples(q):
    counts = np.array([0, 3, 10, 40, 120, 300, 90, 12, 0, 1], dtype=np.float64) * 200
    exact = np.quantile(_expand(counts), q)
    assert histogram.quantile(counts, q) == pytest.approx(exact, rel=0.02)


def test_histogram_quantile_of_empty_is_nan_and_merge_pads():
    assert math.isnan(histogram.quantile(np.zeros(4), 0.5))
    np.testing.assert_array_equal(histogram.merge([[1, 2], [0, 1, 5]]), [1, 3, 5])


def test_counter_increase_handles_resets():
    assert counter_increase(np.array([10.0, 15, 25, 3, 8])) == pytest.approx(5 + 10 + 3 + 5)
    assert math.isnan(counter_increase(np.array([1.0])))


def test_window_features_by_type():
    ts = np.array([0, 10_000, 20_000, 30_000, 40_000, 50_000])
    vals = np.array([1.0, 2, 3, 4, 5, 6])
    v, f = window_features("gauge", ts, vals, None, None, 60_000)
    assert v == f["mean"] == 3.5 and f["min"] == 1 and f["max"] == 6 and f["last"] == 6 and f["sum"] == 21
    v, f = window_features("delta", ts, vals, None, None, 60_000)
    assert v == f["rate"] == pytest.approx(21 / 60)
    v, f = window_features("counter", ts, np.array([100.0, 110, 120, 5, 15, 25]), None, None, 60_000)
    assert v == pytest.approx((10 + 10 + 5 + 10 + 10) / 50)
    hists = [[0, 5, 10], [0, 5, 10, 2]]
    v, f = window_features("histogram", ts[:2], None, histogram.merge(hists), np.array([40.0, 60.0]), 60_000)
    assert f["obs_count"] == 32 and f["mean"] == pytest.approx(100 / 32) and f["rate"] == pytest.approx(32 / 60)
    assert v == f["p99"] == pytest.approx(histogram.quantile(np.array([0, 10, 20, 2.0]), 0.99))
    assert f["p50"] <= f["p95"] <= f["p99"] <= f["max"]


def test_stabilize():
    assert stabilize("gauge", 0.3, 60_000) == 0.3
    assert stabilize("histogram", 1024.0, 60_000) == 10.0
    assert stabilize("delta", 4 / 60, 60_000) == pytest.approx(2.0)  # sqrt of the window's count
    assert math.isnan(stabilize("delta", math.nan, 60_000))


@pytest.mark.parametrize("mtype, value", [("gauge", 0.37), ("histogram", 3000.0), ("delta", 2.5), ("counter", 0.1)])
def test_unstabilize_inverts_stabilize(mtype, value):
    assert unstabilize(mtype, stabilize(mtype, value, 60_000), 60_000) == pytest.approx(value)
