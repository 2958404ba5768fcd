"""The hypersphere walk's verdict has size alpha: rejection rates on null walks, and power.

The kernels run directly on walks generated in memory (``walk_tests``): the same code path as
``hypersphere_walk`` after the movie is read, thousands of times faster than writing movies.
"""
import numpy as np
import pytest
from scipy import stats

from tokendyn.analysis import hypersphere as H
from tokendyn.analysis._centroids import SharedCentroids

SEEDS = range(1000)  # the null walks, each from its own seed: the rates below are fixed numbers
TOKENS, DIM, FRAMES = 48, 8, 40


def free_walk(seed, tokens=TOKENS, dim=DIM, frames=FRAMES, outward=0.0, step=0.01):
    """(frames, tokens, dim) float32: tokens on the unit sphere taking isotropic Gaussian steps of
    RMS length ``step`` (the null exactly), plus an outward push of ``outward * step`` per step."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tokens, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out = np.empty((frames, tokens, dim))
    for t in range(frames):
        out[t] = x
        x = x + rng.normal(scale=step / np.sqrt(dim), size=x.shape) + outward * step * x / np.linalg.norm(
            x, axis=1, keepdims=True)
    return out.astype(np.float32)


def walk_tests(x, rows=None):
    """The tests of ``hypersphere_walk`` about each centre, on positions in memory: ``{centre: stats}``."""
    frames, tokens, dim = x.shape
    rows = np.arange(tokens, dtype=np.int64) if rows is None else rows
    edges = H.beta_edges(dim, H.ks_bins(rows.size * (frames - 1)))
    part = H._walk_block(x, 0, 0, rows, SharedCentroids(np.arange(tokens, dtype=np.int64)), "centroid",
                         rows[:0], np.array([1], np.int64), edges)
    return {c: H.walk_statistics({k: part[f"{c}:{k}"] for k in H._SUMS}, part[f"{c}:rho_histogram"], dim)
            for c in H.CENTERS}


def interval(alpha, n):
    """The binomial 99% interval of the rejection rate of a test of size alpha on n walks."""
    lo, hi = stats.binom.ppf([0.005, 0.995], n, alpha)
    return lo / n, hi / n


@pytest.fixture(scope="module")
def null_pvalues():
    """{centre: {name: array of p-values over SEEDS}} of the null walks."""
    got = {c: {} for c in H.CENTERS}
    names = ("combined_pvalue", "ks_pvalue", "sign_pvalue", "t_pvalue", "step_correlation_pvalue")
    runs = [walk_tests(free_walk(seed)) for seed in SEEDS]
    for c in H.CENTERS:
        for name in names:
            got[c][name] = np.array([r[c][name] for r in runs])
    return got


@pytest.mark.parametrize("center", H.CENTERS)
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_the_verdict_rejects_a_null_walk_at_rate_alpha(null_pvalues, center, alpha):
    p = null_pvalues[center]["combined_pvalue"]
    rate = np.mean(p < alpha)
    lo, hi = interval(alpha, p.size)
    assert lo <= rate <= hi, f"rejection rate {rate:.4f} outside [{lo:.4f}, {hi:.4f}] at alpha={alpha}"


@pytest.mark.parametrize("center", H.CENTERS)
@pytest.mark.parametrize("test", ["ks_pvalue", "sign_pvalue", "t_pvalue", "step_correlation_pvalue"])
def test_each_test_rejects_a_null_walk_at_rate_alpha(null_pvalues, center, test):
    p = null_pvalues[center][test]
    for alpha in (0.05, 0.01):
        rate = np.mean(p < alpha)
        lo, hi = interval(alpha, p.size)
        assert lo <= rate <= hi, f"{test}: rate {rate:.4f} outside [{lo:.4f}, {hi:.4f}] at alpha={alpha}"


def test_the_uncorrected_minimum_was_not_calibrated(null_pvalues):
    """The verdict before: rejected when any of the KS, sign and t tests did; about 2.4x alpha."""
    p = null_pvalues["origin"]
    worst = np.minimum.reduce([p["ks_pvalue"], p["sign_pvalue"], p["t_pvalue"]])
    assert np.mean(worst < 0.05) > interval(0.05, worst.size)[1]


def test_a_null_walk_s_pvalues_are_uniform(null_pvalues):
    """Not only at alpha: the combined p-value is uniform on [0, 1] (KS against uniform)."""
    for c in H.CENTERS:
        assert stats.kstest(null_pvalues[c]["combined_pvalue"], "uniform").pvalue > 0.001, c


@pytest.mark.parametrize("outward", [0.05, 0.1])
def test_an_outward_drift_is_rejected(outward):
    """A push of 5% (10%) of the step outward: rejected about both centres on every one of 20 walks."""
    for seed in range(20):
        got = walk_tests(free_walk(10_000 + seed, tokens=64, dim=8, frames=60, outward=outward))
        for c in H.CENTERS:
            assert got[c]["combined_pvalue"] < 0.01, (seed, c, got[c]["combined_pvalue"])
            assert got[c]["t_pvalue"] < 0.01
            assert got[c]["outward_excess"] == pytest.approx(outward, abs=4 * got[c]["outward_excess_error"] + 1e-3)


def test_a_small_drift_is_rejected_more_often_than_alpha():
    """1% of the step on a small walk: the verdict's power is well above its size."""
    p = np.array([walk_tests(free_walk(20_000 + s, outward=0.01))["centroid"]["combined_pvalue"] for s in range(200)])
    assert np.mean(p < 0.05) > 0.15


def test_correlated_steps_are_rejected_by_the_step_correlation():
    """Each step repeats 30% of the last: no outward bias, but the step correlation rejects."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    frames, last = [], np.zeros_like(x)
    for _ in range(60):
        frames.append(x.copy())
        last = 0.3 * last + rng.normal(scale=0.01 / np.sqrt(8), size=x.shape)
        x = x + last
    got = walk_tests(np.array(frames, np.float32))["centroid"]
    assert got["step_correlation_pvalue"] < 1e-6 and got["combined_pvalue"] < 1e-4


def test_cauchy_combination_of_one_pvalue_is_that_pvalue_and_is_monotone():
    for p in (1e-20, 1e-6, 0.01, 0.3, 0.9):
        assert H.cauchy_combination([p]) == pytest.approx(p, rel=1e-9)
        assert H.cauchy_combination([p, p, p]) == pytest.approx(p, rel=1e-9)
    assert H.cauchy_combination([0.01, 0.5]) < H.cauchy_combination([0.02, 0.5])
    assert H.cauchy_combination([np.nan, 0.2]) == pytest.approx(0.2)
    assert np.isnan(H.cauchy_combination([np.nan]))


def test_the_sign_test_s_mid_pvalue():
    p, mid = H.sign_test(50, 50)
    assert p == 1.0 and mid == pytest.approx(1 - 0.5 * stats.binom.pmf(50, 100, 0.5))
    p, mid = H.sign_test(60, 40)
    assert p == pytest.approx(stats.binomtest(60, 100).pvalue)
    assert mid == pytest.approx(p - stats.binom.pmf(60, 100, 0.5))
