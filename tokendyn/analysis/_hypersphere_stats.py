"""The hypersphere walk's statistical tests, from the sums its kernel streams: the exact KS test of
the radial fraction against its Beta law bracketed from equal-probability bins, the sign, t and
step-correlation tests, and their Cauchy combination (the verdict)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from scipy import stats

_MIN_BINS, _MAX_BINS = 1 << 12, 1 << 18  # equal-probability bins of rho for the KS test


def ks_bins(steps: int) -> int:
    """The number of equal-probability bins of rho for ``steps`` steps: a power of two >= 1000
    sqrt(steps), within [2^12, 2^18].

    The KS distance from the histogram is bracketed to 1/bins (:func:`ks_from_histogram`); the
    p-value then moves by at most ~0.9 sqrt(steps)/bins, 1e-3 up to 7e4 steps."""
    want = 1000.0 * np.sqrt(max(steps, 1))
    return int(min(max(1 << int(np.ceil(np.log2(want))), _MIN_BINS), _MAX_BINS))


@lru_cache(maxsize=8)
def beta_edges(dim: int, bins: int) -> np.ndarray:
    """The inner edges of ``bins`` bins of rho that each hold 1/bins of Beta(1/2, (dim-1)/2): its
    quantiles at k/bins, k = 1 .. bins-1 (float64, read-only)."""
    edges = stats.beta(0.5, (dim - 1) / 2).ppf(np.arange(1, bins) / bins)
    edges.setflags(write=False)
    return edges


def ks_from_histogram(counts: np.ndarray) -> tuple[float, float, float, float]:
    """The two-sided KS test of rho against the Beta law, from its equal-probability histogram.

    In u = F(rho) (uniform under isotropy) bin k is [k/B, (k+1)/B). With C_k the fraction of the
    n values in bins 0..k, the exact distance D = sup |F_n - F| satisfies
    ``max_k max(C_k - (k+1)/B, k/B - C_{k-1}) <= D <= max_k max(C_k - k/B, (k+1)/B - C_{k-1})``
    (within a bin F_n is between C_{k-1} and C_k and F between k/B and (k+1)/B, and both
    lower bounds are attained as u approaches an edge): D is known to within 1/B.

    Returns
    -------
    statistic, statistic_error, pvalue, pvalue_error
        The middle of the bracket and its half-width; ``kstwo.sf`` (the exact law of D for n
        values) at the middle, and the largest distance from it to ``kstwo.sf`` anywhere in the
        bracket: a bound on the difference from the exact KS test's p-value.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan
    b = counts.size
    upto = np.cumsum(counts) / n  # C_k
    before = np.concatenate([[0.0], upto[:-1]])  # C_{k-1}
    k = np.arange(b)
    low = max(float(np.max(upto - (k + 1) / b)), float(np.max(k / b - before)))
    high = max(float(np.max(upto - k / b)), float(np.max((k + 1) / b - before)))
    mid = 0.5 * (low + high)
    law = stats.kstwo(n)
    p = float(law.sf(mid))
    p_error = max(float(law.sf(max(low, 0.0))) - p, p - float(law.sf(high)))
    return mid, 0.5 * (high - low), p, p_error


def sign_test(outward: int, inward: int) -> tuple[float, float]:
    """The exact two-sided binomial test of outward vs inward steps: ``(pvalue, mid_pvalue)``.

    The mid-p (the p-value less half the probability of counts as extreme as the observed) is the
    one the combination takes: the exact p-value is 1 whenever outward == inward, and a p-value
    of 1 would outvote every other test in a Cauchy combination."""
    n = outward + inward
    if n == 0:
        return np.nan, np.nan
    p = float(stats.binomtest(outward, n, 0.5).pvalue)
    far = abs(outward - n / 2)
    tie = {int(np.floor(n / 2 - far)), int(np.ceil(n / 2 + far))}
    return p, float(p - 0.5 * sum(stats.binom.pmf(x, n, 0.5) for x in tie))


def step_correlation_test(cos_sum: float, cos_sq_sum: float) -> tuple[float, float]:
    """Test that successive steps are uncorrelated: ``z = sum c / sqrt(sum c^2)`` of the cosines
    c = cos(D_t, D_t+1), two-sided normal p-value: ``(z, pvalue)``.

    Consecutive cosines share a step, but under independent isotropic steps they are uncorrelated
    (reversing D_t alone flips c_t-1 and c_t; reversing D_t+1 flips c_t alone), so the
    self-normalised sum is asymptotically standard normal; it needs no assumption on the steps'
    length law (under Gaussian steps E c^2 = 1/d)."""
    if not cos_sq_sum > 0:
        return np.nan, np.nan
    z = float(cos_sum / np.sqrt(cos_sq_sum))
    return z, float(2 * stats.norm.sf(abs(z)))


def cauchy_combination(pvalues: Sequence[float]) -> float:
    """The Cauchy combination (ACAT, Liu & Xie 2020, JASA 115:393) of p-values: one p-value.

    ``T = mean(tan((1/2 - p_i) pi))``; each term is standard Cauchy under its null, and so is T
    when the tests are independent or perfectly dependent, and in the tail under any dependence,
    which is what a verdict needs of tests as correlated as the sign and t tests of the same a.
    Returns ``1/2 - arctan(T)/pi`` (``1/(pi T)`` for large T, where that is more accurate). NaN
    p-values are left out; NaN when none is left."""
    p = np.asarray([v for v in pvalues if np.isfinite(v)], dtype=float)
    if p.size == 0:
        return np.nan
    p = np.clip(p, 1e-300, 1 - 1e-15)
    terms = np.where(p < 1e-15, 1 / (p * np.pi), np.tan((0.5 - p) * np.pi))
    t = float(terms.mean())
    return float(1 / (t * np.pi)) if t > 1e15 else float(0.5 - np.arctan(t) / np.pi)


def walk_statistics(sums: Mapping[str, float], counts: np.ndarray, dim: int) -> dict[str, float]:
    """The tests of one centre from the streamed sums (``_SUMS``) and the equal-probability
    histogram of rho (``counts``, from :func:`beta_edges`); what ``hypersphere_walk`` reports.

    Returns the p-values of the KS, sign (and its mid-p), t and step-correlation tests, their
    Cauchy combination ``combined_pvalue``, the outward excess and its standard error, and the
    means they come from."""
    n_steps, n_out, n_in = int(sums["steps"]), int(sums["outward_steps"]), int(sums["inward_steps"])
    ks, ks_error, ks_p, ks_p_error = ks_from_histogram(counts)
    mean_a = sums["radial_sum"] / max(n_steps, 1)
    var_a = (sums["radial_sq_sum"] - n_steps * mean_a ** 2) / max(n_steps - 1, 1)
    t_stat = mean_a / np.sqrt(var_a / n_steps) if n_steps > 1 and var_a > 0 else np.nan
    t_p = float(2 * stats.t.sf(abs(t_stat), n_steps - 1)) if np.isfinite(t_stat) else np.nan
    sign_p, sign_mid = sign_test(n_out, n_in)
    z, step_p = step_correlation_test(sums["cos_sum"], sums["cos_sq_sum"])
    n_cos = int(sums["cosines"])
    cos_mean = sums["cos_sum"] / max(n_cos, 1)
    rms_len = float(np.sqrt(sums["step_sq_sum"] / max(n_steps, 1)))
    excess = mean_a / rms_len if rms_len > 0 else np.nan
    excess_error = float(np.sqrt(var_a / n_steps)) / rms_len if rms_len > 0 and n_steps > 1 else np.nan
    return {
        "ks_statistic": ks, "ks_statistic_error": ks_error, "ks_pvalue": ks_p, "ks_pvalue_error": ks_p_error,
        "sign_pvalue": sign_p, "sign_mid_pvalue": sign_mid, "t_statistic": float(t_stat), "t_pvalue": t_p,
        "step_correlation_z": z, "step_correlation_pvalue": step_p,
        "combined_pvalue": cauchy_combination([ks_p, sign_mid, t_p, step_p]),
        "radial_mean_all": float(mean_a), "outward_excess": float(excess), "outward_excess_error": excess_error,
        "outward_fraction_all": n_out / max(n_out + n_in, 1),
        "rho_mean_all": float(sums["rho_sum"] / sums["rhos"]) if sums["rhos"] else np.nan,
        "step_correlation_mean": float(cos_mean),
        "step_correlation_sd": float(np.sqrt(max(sums["cos_sq_sum"] / max(n_cos, 1) - cos_mean ** 2, 0))),
        "step_rms": rms_len, "steps": n_steps,
    }
