"""tokendyn.stats: blocking and bootstrap error bars, and the two-sample verdicts.

The statistical tests simulate many replicates from a fixed seed and compare the rates they see
with the nominal ones, within three binomial standard errors of the replicate count: a biased
estimator (a naive error, a test of the wrong size) falls outside.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import signal, stats

import tokendyn.stats.twosample as twosample
from tokendyn.errors import ConfigError
from tokendyn.stats import (
    Comparison,
    Estimate,
    band,
    block_average,
    bootstrap_mean,
    compare_runs,
    compare_tokens,
    plus_minus,
    verdict_text,
)

ALPHA = 0.05


def _tolerance(p: float, replicates: int) -> float:
    """Three binomial standard errors of a rate ``p`` seen over ``replicates``."""
    return 3 * math.sqrt(p * (1 - p) / replicates)


def _ar1(rng: np.random.Generator, phi: float, replicates: int, n: int) -> np.ndarray:
    """Stationary AR(1) series with unit innovations, one a row."""
    noise = rng.standard_normal((replicates, n))
    start = rng.standard_normal((replicates, 1)) / math.sqrt(1 - phi ** 2)
    return signal.lfilter([1.0], [1.0, -phi], noise, axis=1, zi=phi * start)[0]


def _rates(comparisons: list[Comparison]) -> dict[str, float]:
    return {v: float(np.mean([c.verdict == v for c in comparisons])) for v in
            ("different", "same", "inconclusive", "too few")}


@pytest.fixture
def fast_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer resamples for the difference of means: the verdicts never use it."""
    monkeypatch.setattr(twosample, "RESAMPLES", 100)


# --- blocking -----------------------------------------------------------------------------------


def _error_check(errors: np.ndarray, means: np.ndarray, true: float) -> tuple[float, float]:
    """The mean error over the true one, and the coverage of mean ± 1.96 error (true mean 0)."""
    return float(np.mean(errors) / true), float(np.mean(np.abs(means) < 1.959964 * errors))


@pytest.mark.parametrize("phi, n", [(0.0, 2 ** 13), (0.5, 2 ** 13), (0.9, 2 ** 14)])
def test_blocking_ar1_error_and_coverage(phi: float, n: int) -> None:
    replicates = 300
    x = _ar1(np.random.default_rng(int(phi * 10) + 1), phi, replicates, n)
    true = math.sqrt(1 / (1 - phi ** 2) / n * (1 + phi) / (1 - phi))
    results = [block_average(row) for row in x]
    ratio, coverage = _error_check(np.array([r.error for r in results]), np.array([r.mean for r in results]), true)
    assert abs(ratio - 1) < 0.15, ratio
    assert abs(coverage - 0.95) < _tolerance(0.95, replicates), coverage
    assert np.mean([r.converged for r in results]) > 0.95
    if phi == 0.0:  # uncorrelated: the first level already is the plateau, mostly
        assert np.median([r.block_size for r in results]) == 1


def test_blocking_naive_error_fails_the_same_check() -> None:
    phi, n, replicates = 0.9, 2 ** 14, 300
    x = _ar1(np.random.default_rng(11), phi, replicates, n)
    true = math.sqrt(1 / (1 - phi ** 2) / n * (1 + phi) / (1 - phi))
    naive = x.std(axis=1, ddof=1) / math.sqrt(n)
    ratio, coverage = _error_check(naive, x.mean(axis=1), true)
    assert ratio < 0.5 and coverage < 0.6, (ratio, coverage)  # about 0.23 and 0.35
    first = np.array([block_average(row).levels[0] for row in x[:20]])  # blocking's level 0 is the naive one
    np.testing.assert_allclose(first, naive[:20], rtol=1e-12)


@pytest.mark.parametrize("values", [[], [1.0], [1.0, 2.0], [1.0, 2.0, 4.0], [np.nan] * 5, [1.0, np.nan, 3.0, np.nan]])
def test_blocking_short_series_has_no_error(values: list[float]) -> None:
    result = block_average(values)
    finite = [v for v in values if np.isfinite(v)]
    assert math.isnan(result.error) and not result.converged and result.n == len(finite)
    if finite:
        assert result.mean == pytest.approx(np.mean(finite))
    else:
        assert math.isnan(result.mean)
    assert math.isnan(result.estimate().low)


def test_blocking_ignores_nan_and_gives_an_estimate() -> None:
    x = _ar1(np.random.default_rng(3), 0.5, 1, 3000)[0]
    holed = x.copy()
    holed[::7] = np.nan
    holed[5] = np.inf
    clean = holed[np.isfinite(holed)]
    got, want = block_average(holed), block_average(clean)
    assert got.n == clean.size and got.mean == pytest.approx(clean.mean())
    assert got.error == pytest.approx(want.error) and np.isfinite(got.error)
    e = got.estimate(0.9)
    assert isinstance(e, Estimate) and e.confidence == 0.9 and e.n == clean.size
    assert e.high - e.value == pytest.approx(stats.norm.ppf(0.95) * got.error)
    assert block_average(np.full(64, 2.5)).error == 0.0


# --- bootstrap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, n", [("normal", 40), ("exponential", 100)])
def test_bootstrap_mean_coverage_and_error(kind: str, n: int) -> None:
    replicates = 300
    rng = np.random.default_rng(21 if kind == "normal" else 22)
    samples = rng.standard_normal((replicates, n)) if kind == "normal" else rng.exponential(size=(replicates, n))
    truth = 0.0 if kind == "normal" else 1.0
    estimates = [bootstrap_mean(s, resamples=1000) for s in samples]
    coverage = np.mean([e.low < truth < e.high for e in estimates])
    # the percentile interval is a little short for small and skewed samples: allow a one-sided 0.01
    assert 0.95 - 0.01 - _tolerance(0.95, replicates) < coverage < 0.95 + _tolerance(0.95, replicates), coverage
    ratio = np.array([e.error for e in estimates]) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    assert abs(ratio.mean() - 1) < 0.05, ratio.mean()
    assert all(e.n == n and e.confidence == 0.95 and str(n) in e.method for e in estimates[:3])


def test_bootstrap_mean_degenerate_samples() -> None:
    one = bootstrap_mean([3.0, np.nan])
    assert one.value == 3.0 and math.isnan(one.error) and one.n == 1
    none = bootstrap_mean([np.nan, np.inf])
    assert math.isnan(none.value) and none.n == 0
    same = bootstrap_mean([2.0] * 5)
    assert same.error == 0.0 and same.low == same.high == 2.0
    a = bootstrap_mean([1.0, 2.0, np.nan, 4.0, 8.0])
    assert a.value == pytest.approx(3.75) and a.n == 4 and a.low <= a.value <= a.high


def test_band_shape_mean_and_missing_points() -> None:
    rng = np.random.default_rng(5)
    curves = rng.normal(size=(4, 30)) + np.linspace(0, 3, 30)
    curves[3, 20:] = np.nan  # a shorter run: 3 runs from point 20 on
    curves[1:, 27:] = np.nan  # only one run at the last three points
    mean, low, high = band(curves)
    assert mean.shape == low.shape == high.shape == (30,)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(mean, np.nanmean(curves, axis=0))
    assert np.isnan(low[27:]).all() and np.isnan(high[27:]).all()
    assert np.isfinite(low[:27]).all() and np.isfinite(high[:27]).all()  # where 2 or 3 of 4 runs have a value too
    assert (low[:27] <= mean[:27]).all() and (mean[:27] <= high[:27]).all() and (low[:27] < high[:27]).all()
    single = band(curves[0])
    assert np.isnan(single[1]).all() and np.isnan(single[2]).all()
    np.testing.assert_allclose(single[0], curves[0])


# --- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, error, text", [
    (0.905, 0.012, "0.905 ± 0.012"),
    (3.14159, 0.001, "3.1416 ± 0.0010"),
    (12.34, 1.5, "12.3 ± 1.5"),
    (0.905, 0.0996, "0.91 ± 0.10"),  # the error rounds up to the next decade: still two figures
    (12.34, 9.96, "12 ± 10"),
    (-0.5, 0.25, "-0.50 ± 0.25"),
    (5.0, 0.0, "5"),
    (5.0, None, "5"),
    (5.0, math.nan, "5 ± n/a"),
    (math.nan, 0.1, "n/a"),
    (None, 0.1, "n/a"),
])
def test_plus_minus(value: float, error: float, text: str) -> None:
    assert plus_minus(value, error) == text


def test_estimate_format_and_dict() -> None:
    e = Estimate(0.905, 0.012, 0.88, 0.93, 0.95, 10, "test")
    assert f"{e}" == "0.905 ± 0.012"
    assert Estimate(1.0, math.nan, math.nan, math.nan, 0.95, 1, "x").as_dict()["error"] is None


# --- two samples of tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("n_a, n_b", [(200, 200), (64, 184)])
def test_tokens_size(fast_bootstrap: None, n_a: int, n_b: int) -> None:
    replicates = 400
    rng = np.random.default_rng(n_a)
    got = _rates([compare_tokens(rng.normal(size=n_a), rng.normal(size=n_b)) for _ in range(replicates)])
    assert got["different"] <= ALPHA + _tolerance(ALPHA, replicates), got
    assert got["different"] >= ALPHA - _tolerance(ALPHA, replicates), got  # not a test that never rejects
    if n_a == n_b == 200:
        assert got["same"] >= 0.8, got


def test_tokens_size_with_ties_and_infinity(fast_bootstrap: None) -> None:
    """Freeze steps: small integers, and +inf for tokens that never froze."""
    replicates = 400
    rng = np.random.default_rng(9)

    def steps(n: int) -> np.ndarray:
        s = rng.poisson(1.0, n).astype(float)
        s[s >= 3] = np.inf
        return s

    got = _rates([compare_tokens(steps(150), steps(250)) for _ in range(replicates)])
    assert got["different"] <= ALPHA + _tolerance(ALPHA, replicates), got
    assert got["same"] >= 0.8, got


def test_tokens_power(fast_bootstrap: None) -> None:
    replicates = 400
    rng = np.random.default_rng(17)
    got = _rates([compare_tokens(rng.normal(size=100), rng.normal(0.5, size=100)) for _ in range(replicates)])
    assert got["different"] >= 0.9, got
    assert got["same"] <= ALPHA, got


@pytest.mark.parametrize("delta", [0.4, 0.2])
def test_tokens_equivalence_size(fast_bootstrap: None, delta: float) -> None:
    """A true Cliff's delta at (0.2) or beyond (0.4) the margin is "same" at most alpha of the time."""
    replicates = 400
    shift = math.sqrt(2) * stats.norm.ppf((1 + delta) / 2)  # normal shift with P(B>A) - P(B<A) = delta
    rng = np.random.default_rng(int(delta * 100))
    cs = [compare_tokens(rng.normal(size=200), rng.normal(shift, size=200), margin=0.2) for _ in range(replicates)]
    got = _rates(cs)
    assert got["same"] <= ALPHA + _tolerance(ALPHA, replicates), got
    # the 1 - 2 alpha interval misses the truth 2 alpha of the time, about half of that at either end
    above, below = np.mean([c.effect_high < delta for c in cs]), np.mean([c.effect_low > delta for c in cs])
    assert abs(above + below - 2 * ALPHA) <= _tolerance(2 * ALPHA, replicates), (above, below)
    assert max(above, below) <= ALPHA + _tolerance(ALPHA, replicates), (above, below)


def test_cliff_interval_coverage_with_ties(fast_bootstrap: None) -> None:
    """Coverage of the 90% interval of a heavily tied (and infinite) sample, true delta known exactly."""
    replicates = 400
    cap = 3
    lam_a, lam_b = 1.0, 1.4

    def pmf(lam: float) -> np.ndarray:
        p = stats.poisson.pmf(np.arange(cap), lam)
        return np.append(p, 1 - p.sum())  # the last class is +inf

    pa, pb = pmf(lam_a), pmf(lam_b)
    signs = np.sign(np.subtract.outer(np.arange(cap + 1), np.arange(cap + 1)))  # [b class, a class]
    truth = float(pb @ signs @ pa)
    rng = np.random.default_rng(4)

    def draw(lam: float, n: int) -> np.ndarray:
        s = rng.poisson(lam, n).astype(float)
        s[s >= cap] = np.inf
        return s

    cs = [compare_tokens(draw(lam_a, 120), draw(lam_b, 90)) for _ in range(replicates)]
    coverage = np.mean([c.effect_low < truth < c.effect_high for c in cs])
    assert abs(coverage - 0.9) <= _tolerance(0.9, replicates), (coverage, truth)


def test_cliff_delta_counts_every_pair() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 6, 40).astype(float)
    b = rng.integers(1, 7, 31).astype(float)
    a[:5], b[:9] = np.inf, np.inf
    a[5] = np.nan
    c = compare_tokens(a, b, quantity="freeze step", names=("dead", "phantom"))
    kept = a[~np.isnan(a)]
    with np.errstate(invalid="ignore"):
        signs = np.sign(np.subtract.outer(b, kept))
    signs[np.isnan(signs)] = 0  # inf - inf: a tie
    assert c.effect_size == pytest.approx(signs.mean())
    assert c.n_a == 39 and c.n_b == 31 and c.effect == "Cliff's delta" and c.test == "Mann-Whitney U"
    assert c.effect_low < c.effect_size < c.effect_high
    assert c.mean_a == math.inf and math.isnan(c.difference.error) and "infinite" in c.difference.method
    mirrored = compare_tokens(b, a)
    assert mirrored.effect_size == pytest.approx(-c.effect_size)
    assert (mirrored.effect_low, mirrored.effect_high) == pytest.approx((-c.effect_high, -c.effect_low))
    assert mirrored.pvalue == pytest.approx(c.pvalue)


def test_tokens_never_frozen_is_later_than_frozen() -> None:
    rng = np.random.default_rng(8)
    frozen = rng.integers(10, 100, 80).astype(float)
    late = np.where(rng.random(60) < 0.7, np.inf, rng.integers(10, 100, 60))
    c = compare_tokens(frozen, late)
    assert c.verdict == "different" and c.effect_size > 0.5
    json.dumps(c.as_dict(), allow_nan=False)  # infinite means written as null
    assert c.as_dict()["mean_b"] is None and isinstance(c.as_dict()["difference"], dict)


def test_tokens_complete_separation_and_all_tied() -> None:
    apart = compare_tokens(np.arange(40.0), np.arange(40.0) + 100)
    assert apart.effect_size == 1.0 and apart.effect_high == 1.0 and 0.8 < apart.effect_low < 1.0
    assert apart.verdict == "different"
    small = compare_tokens([1.0, 2, 3], [4.0, 5, 6])  # exact p = 0.1: not different, and far from same
    assert small.verdict == "inconclusive" and 0 < small.effect_low < 1
    low = compare_tokens([4.0, 5, 6], [1.0, 2, 3])
    assert low.effect_size == -1.0 and low.effect_high == pytest.approx(-small.effect_low)
    tied = compare_tokens([np.inf] * 300, [np.inf] * 400)  # no token of either class froze
    assert tied.effect_size == 0.0 and tied.verdict == "same"
    few_tied = compare_tokens([np.inf] * 3, [np.inf] * 4)
    assert few_tied.verdict == "inconclusive" and few_tied.effect_low < -0.2


@pytest.mark.parametrize("a, b", [([], [1.0, 2, 3]), ([np.nan] * 10, [1.0, 2, 3]), ([1.0, 2], [1.0, 2, 3, 4]),
                                  ([], []), (np.full((2, 2), np.nan), [np.nan])])
def test_tokens_too_few(a: list[float], b: list[float]) -> None:
    c = compare_tokens(a, b, names=("x", "y"))
    assert c.verdict == "too few" and math.isnan(c.pvalue) and math.isnan(c.effect_size)
    assert "too few" in verdict_text(c) and "x vs y" in verdict_text(c)
    json.dumps(c.as_dict(), allow_nan=False)


# --- two groups of runs -------------------------------------------------------------------------


def test_runs_planted_difference(fast_bootstrap: None) -> None:
    rng = np.random.default_rng(12)
    cs = [compare_runs(rng.normal(size=3), rng.normal(6.0, size=3)) for _ in range(100)]
    assert _rates(cs)["different"] >= 0.95
    c = compare_runs([1.0, 2.0, 3.0], [7.0, 8.0, 9.5], quantity="final loss", names=("fp32", "bf16"))
    assert c.verdict == "different" and c.effect == "Hedges' g" and c.test == "Welch t" and c.unit == "runs"
    assert c.difference.value == pytest.approx(8.1666667 - 2.0) and c.difference.low < c.difference.value
    sd = math.sqrt((np.var([1, 2, 3], ddof=1) + np.var([7, 8, 9.5], ddof=1)) / 2)
    j = math.gamma(2) / (math.sqrt(2) * math.gamma(1.5))
    assert c.effect_size == pytest.approx(j * c.difference.value / sd)
    assert c.pvalue == pytest.approx(stats.ttest_ind([7, 8, 9.5], [1, 2, 3], equal_var=False).pvalue)


@pytest.mark.parametrize("n", [3, 5])
def test_runs_size(fast_bootstrap: None, n: int) -> None:
    replicates = 400
    rng = np.random.default_rng(30 + n)
    got = _rates([compare_runs(rng.normal(size=n), rng.normal(size=n)) for _ in range(replicates)])
    assert got["different"] <= ALPHA + _tolerance(ALPHA, replicates), got
    assert got["same"] == 0.0  # margin 0.5 sd cannot be reached with 5 runs a side


def test_runs_effect_interval_coverage(fast_bootstrap: None) -> None:
    replicates = 400
    rng = np.random.default_rng(40)
    truth = 2.5  # a large effect with 3 runs a side, where an interval shrunk by J (0.80) would miss
    cs = [compare_runs(rng.normal(size=3), rng.normal(truth, size=3)) for _ in range(replicates)]
    coverage = np.mean([c.effect_low < truth < c.effect_high for c in cs])
    assert abs(coverage - 0.9) <= _tolerance(0.9, replicates), coverage


def test_runs_equivalence(fast_bootstrap: None) -> None:
    """TOST with 10 runs a side and a margin of 1 sd: "same" often for equal groups, rarely at the margin."""
    replicates = 300
    rng = np.random.default_rng(50)
    equal = _rates([compare_runs(rng.normal(size=10), rng.normal(size=10), margin=1.0) for _ in range(replicates)])
    edge = _rates([compare_runs(rng.normal(size=10), rng.normal(1.0, size=10), margin=1.0)
                   for _ in range(replicates)])
    assert equal["same"] >= 0.25, equal
    assert edge["same"] <= ALPHA + _tolerance(ALPHA, replicates), edge


def test_runs_too_few_and_no_spread() -> None:
    for a, b in [([1.0], [2.0, 3.0]), ([], []), ([np.nan, np.nan], [1.0, 2.0]), ([1.0, np.inf], [1.0, 2.0])]:
        c = compare_runs(a, b)
        assert c.verdict == "too few" and math.isnan(c.pvalue), (a, b)
        assert "2 a side" in verdict_text(c)
    same = compare_runs([1.0, 1.0], [1.0, 1.0])
    assert same.verdict == "same" and same.effect_size == 0.0
    apart = compare_runs([1.0, 1.0], [2.0, 2.0])
    assert apart.verdict == "different" and apart.effect_size == math.inf
    json.dumps(apart.as_dict(), allow_nan=False)


# --- input checks and text ----------------------------------------------------------------------


def test_bad_levels_and_values() -> None:
    for kwargs in ({"alpha": 0.0}, {"alpha": 0.5}, {"alpha": math.nan}, {"margin": 0.0}, {"margin": -1.0}):
        with pytest.raises(ConfigError):
            compare_tokens([1, 2, 3], [1, 2, 3], **kwargs)
        with pytest.raises(ConfigError):
            compare_runs([1, 2, 3], [1, 2, 3], **kwargs)
    with pytest.raises(ConfigError, match="not numbers"):
        compare_tokens(["a", "b", "c"], [1, 2, 3], quantity="radius")
    with pytest.raises(ConfigError, match="two names"):
        compare_tokens([1, 2, 3], [1, 2, 3], names=("only",))


def test_verdict_text(fast_bootstrap: None) -> None:
    rng = np.random.default_rng(60)
    c = compare_tokens(rng.normal(size=300), rng.normal(size=300), quantity="displacement",
                       names=("dead", "phantom"))
    text = verdict_text(c)
    assert text.startswith("dead vs phantom (displacement): " + c.verdict + " (Cliff's delta ")
    assert "90% CI" in text and "±0.2" in text and "Mann-Whitney p" in text
    big = compare_tokens(rng.normal(size=20000), rng.normal(0.08, size=20000))
    assert big.verdict == "different" and verdict_text(big).startswith("a vs b: different, but small (")
    runs = verdict_text(compare_runs([1.0, 2, 3], [1.5, 2.5, 2.0], alpha=0.1))
    assert "Hedges' g" in runs and "80% CI" in runs and "Welch t p" in runs and "±0.5 sd" in runs


def test_difference_of_large_samples_takes_the_normal_interval_that_the_bootstrap_agrees_with():
    from tokendyn.stats import twosample

    rng = np.random.default_rng(7)
    x, y = rng.exponential(1.0, 400), rng.exponential(1.3, 500)
    normal = twosample._difference(x, y, 0.95, "tokens")
    assert "normal interval" in normal.method
    assert normal.value == pytest.approx(y.mean() - x.mean())
    boot = twosample._difference(x[:150], y[:150], 0.95, "tokens")  # below NORMAL_FROM: bootstrapped
    assert "bootstrap" in boot.method
    full_boot = twosample.stats.bootstrap((x, y), twosample._mean_difference, n_resamples=2000, vectorized=True,
                                          method="percentile", **twosample._rng_keyword(1))
    assert normal.error == pytest.approx(full_boot.standard_error, rel=0.1)


def test_bootstrap_mean_above_its_resampling_limit_takes_the_ideal_bootstrap_error():
    from tokendyn.stats import bootstrap

    values = np.random.default_rng(1).exponential(size=bootstrap.RESAMPLED_UP_TO + 1)
    assert bootstrap_mean(values).error == pytest.approx(values.std() / math.sqrt(values.size), rel=1e-12)
    few = values[:bootstrap.RESAMPLED_UP_TO]  # resampled
    assert bootstrap_mean(few).error == pytest.approx(few.std() / math.sqrt(few.size), rel=0.05)
    assert bootstrap_mean(few).error != few.std() / math.sqrt(few.size)
