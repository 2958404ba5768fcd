"""Two samples compared with a test, an effect size with its interval, and a verdict.

Two kinds of sample:

- **tokens** (:func:`compare_tokens`): one number per token of a class or a run (a displacement, an
  outward excess, a freeze step, a radius), tens to thousands of them and of any shape of
  distribution, ties and infinities included (a token that never froze has a freeze step of
  ``+inf``). Rank based: the Mann-Whitney U test and Cliff's delta.
- **runs** (:func:`compare_runs`): one number per run, 2 to 10 runs a group. Welch's t test and
  Hedges' g; equivalence by two one-sided Welch tests (TOST).

A :class:`Comparison` ends in a verdict:

``"different"``
    the test rejects equal samples at ``alpha`` (two-sided);
``"same"``
    not different, and equivalent within ``margin``: for tokens the ``1 - 2 alpha`` interval of
    Cliff's delta lies inside ``(-margin, margin)``, which is the two one-sided tests at ``alpha``
    on the effect (Schuirmann's TOST); for runs both one-sided Welch tests against
    ``±margin`` pooled standard deviations reject at ``alpha``;
``"inconclusive"``
    neither: the samples are too small or too spread to tell;
``"too few"``
    fewer than 3 values (tokens) or 2 runs on a side.

"different" is decided first: with thousands of tokens a real but small difference (an interval
inside the margin that excludes zero) is "different", and :func:`verdict_text` says that it is
small.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from tokendyn.errors import ConfigError

from ._intervals import _cliff_interval, _noncentral_interval
from .bootstrap import RESAMPLES, SEED, _rng_keyword
from .estimate import Estimate

__all__ = ["Comparison", "compare_tokens", "compare_runs", "verdict_text"]

MIN_TOKENS = 3
MIN_RUNS = 2
CLIFF = "Cliff's delta"
HEDGES = "Hedges' g"
MANN_WHITNEY = "Mann-Whitney U"
WELCH = "Welch t"


class Comparison(NamedTuple):
    """Two samples of one quantity compared.

    Attributes
    ----------
    quantity : str
        What was compared (``"displacement"``).
    a, b : str
        The names of the two samples (``"dead"``, ``"phantom"``).
    n_a, n_b : int
        The values used from each: NaN left out (for tokens, infinite values are kept and ranked).
    mean_a, mean_b : float
        Their means (infinite where a token sample holds an infinite value).
    difference : Estimate
        ``mean_b - mean_a`` with its bootstrap standard error and percentile interval at
        ``1 - alpha`` (NaN error and interval where a mean is infinite or a side has one value).
    effect : str
        The effect size's name: ``"Cliff's delta"`` (tokens) or ``"Hedges' g"`` (runs). Positive
        when ``b`` tends to be larger.
    effect_size, effect_low, effect_high : float
        The effect and its ``1 - 2 alpha`` interval, the interval of the equivalence test.
    test : str
        ``"Mann-Whitney U"`` or ``"Welch t"``.
    pvalue : float
        The two-sided p-value of :attr:`test`.
    verdict : str
        ``"different"``, ``"same"``, ``"inconclusive"`` or ``"too few"``.
    alpha, margin : float
        The level and the equivalence margin (in units of the effect size).
    unit : str
        ``"tokens"`` or ``"runs"``.
    """

    quantity: str
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: Estimate
    effect: str
    effect_size: float
    effect_low: float
    effect_high: float
    test: str
    pvalue: float
    verdict: str
    alpha: float
    margin: float
    unit: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: NaN and infinity as ``None``, :attr:`difference` as a dict."""
        out: dict[str, Any] = {}
        for key, value in self._asdict().items():
            if isinstance(value, Estimate):
                value = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in value._asdict().items()}
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


def compare_tokens(a: npt.ArrayLike, b: npt.ArrayLike, *, quantity: str = "", names: Sequence[str] = ("a", "b"),
                   alpha: float = 0.05, margin: float = 0.2) -> Comparison:
    """Compare two samples of per-token values by rank.

    Parameters
    ----------
    a, b : array_like
        One value per token. NaN is left out; ``±inf`` is kept and ranked (above, or below, every
        finite value, tied with its like), so a never-frozen token coded as ``+inf`` counts as
        freezing later than every token that froze.
    quantity : str
        What the values are, for the record.
    names : (str, str)
        The samples' names.
    alpha : float
        The level of the test and of the equivalence test (``0 < alpha < 0.5``).
    margin : float
        The equivalence margin on Cliff's delta: "same" needs the ``1 - 2 alpha`` interval inside
        ``(-margin, margin)``. 0.2 is a little above Romano et al.'s "negligible" (|delta| < 0.147).

    Returns
    -------
    Comparison

    Notes
    -----
    The test is :func:`scipy.stats.mannwhitneyu`, two-sided (exact for small samples without ties,
    normal with the tie correction otherwise). Cliff's delta, ``P(B > A) - P(B < A)``, is
    ``2 U_b / (n_a n_b) - 1``. Its interval is analytic rather than bootstrapped (a bootstrap of a
    rank statistic costs a sort per resample, too slow for thousands of tokens):

    - the variance is DeLong's from the placements of each value among the other sample
      (``var = 4 [s^2(P_b) / n_b + s^2(P_a) / n_a]``, a tie counted a half), which is
      distribution free and exact about ties; it is floored at Cliff's minimum
      ``(1 - d^2) / (n_a n_b - 1)`` so that heavily tied samples (all ``+inf``) do not get a
      zero-width interval;
    - the interval is Cliff's (1993) asymmetric one,
      ``(d - d^3 ± z s sqrt((1 - d^2)^2 + z^2 s^2)) / (1 - d^2 + z^2 s^2)``, which stays inside
      ``[-1, 1]`` and covers well down to small samples (Feng and Cliff 2004);
    - at complete separation (``|d| = 1``) the data give no variance and that formula degenerates
      to ``[-1, 1]``; there the bound is Newcombe's (2006, method 5) score bound, which uses the
      Hanley-McNeil variance at the candidate value.
    """
    alpha, margin = _check_levels(alpha, margin)
    name_a, name_b = _names(names)
    x, y = _values(a, name_a, quantity, finite=False), _values(b, name_b, quantity, finite=False)
    n_a, n_b = int(x.size), int(y.size)
    mean_a, mean_b = _mean(x), _mean(y)
    if n_a < MIN_TOKENS or n_b < MIN_TOKENS:
        return _too_few(quantity, name_a, name_b, x, y, CLIFF, MANN_WHITNEY, alpha, margin, "tokens")
    difference = _difference(x, y, 1 - alpha, "tokens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all values tied: 0/0 inside scipy
        result = stats.mannwhitneyu(y, x, alternative="two-sided")
    pvalue = float(result.pvalue)
    delta = float(2 * result.statistic / (n_a * n_b) - 1)
    low, high = _cliff_interval(x, y, delta, alpha)
    if math.isfinite(pvalue) and pvalue < alpha:
        verdict = "different"
    elif -margin < low and high < margin:
        verdict = "same"
    else:
        verdict = "inconclusive"
    return Comparison(quantity, name_a, name_b, n_a, n_b, mean_a, mean_b, difference, CLIFF, delta, low, high,
                      MANN_WHITNEY, pvalue, verdict, alpha, margin, "tokens")


def compare_runs(a: npt.ArrayLike, b: npt.ArrayLike, *, quantity: str = "", names: Sequence[str] = ("a", "b"),
                 alpha: float = 0.05, margin: float = 0.5) -> Comparison:
    """Compare two groups of runs, one number per run.

    Parameters
    ----------
    a, b : array_like
        One value per run (2 to about 10 a group). Non-finite values are left out.
    quantity : str
        What the values are, for the record.
    names : (str, str)
        The groups' names.
    alpha : float
        The level of the test and of the equivalence test (``0 < alpha < 0.5``).
    margin : float
        The equivalence margin in pooled standard deviations: "same" needs both one-sided Welch
        tests of ``mean_b - mean_a`` against ``±margin * sd_pooled`` to reject at ``alpha``. With
        few runs this is hard to reach: with 10 runs a side and ``margin`` 0.5 it cannot be.

    Returns
    -------
    Comparison

    Notes
    -----
    The test is :func:`scipy.stats.ttest_ind` with ``equal_var=False`` (Welch), two-sided. Hedges'
    g is Cohen's d on the pooled standard deviation times the exact small-sample correction
    ``J = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))``, ``m = n_a + n_b - 2``; its ``1 - 2 alpha``
    interval, for the population's standardized difference, inverts the noncentral t distribution
    of ``d sqrt(n_a n_b / (n_a + n_b))`` (exact for normal runs of equal spread; not scaled by
    ``J``, which would shrink it below its coverage). "same" is the TOST above, not this interval:
    the TOST takes the pooled standard deviation as known, the interval does not. Two groups with no spread
    at all are "same" when their means agree and "different" when they do not.
    """
    alpha, margin = _check_levels(alpha, margin)
    name_a, name_b = _names(names)
    x, y = _values(a, name_a, quantity, finite=True), _values(b, name_b, quantity, finite=True)
    n_a, n_b = int(x.size), int(y.size)
    if n_a < MIN_RUNS or n_b < MIN_RUNS:
        return _too_few(quantity, name_a, name_b, x, y, HEDGES, WELCH, alpha, margin, "runs")
    mean_a, mean_b = _mean(x), _mean(y)
    diff = mean_b - mean_a
    difference = _difference(x, y, 1 - alpha, "runs")
    dof = n_a + n_b - 2
    sd = math.sqrt(((n_a - 1) * x.var(ddof=1) + (n_b - 1) * y.var(ddof=1)) / dof)
    if sd == 0:  # no spread in either group: Welch's t is 0/0 (or ±inf)
        if diff == 0:
            return Comparison(quantity, name_a, name_b, n_a, n_b, mean_a, mean_b, difference, HEDGES, 0.0, 0.0,
                              0.0, WELCH, 1.0, "same", alpha, margin, "runs")
        return Comparison(quantity, name_a, name_b, n_a, n_b, mean_a, mean_b, difference, HEDGES,
                          math.copysign(math.inf, diff), math.nan, math.nan, WELCH, 0.0, "different", alpha, margin,
                          "runs")
    with warnings.catch_warnings():
        # runs whose values agree to many digits (a frozen fraction of 0 in every seed but one):
        # scipy warns of cancellation in their moments; the t statistic from them is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        pvalue = float(stats.ttest_ind(y, x, equal_var=False).pvalue)
        bound = margin * sd
        above = stats.ttest_ind(y + bound, x, equal_var=False, alternative="greater").pvalue  # diff > -bound
        below = stats.ttest_ind(y - bound, x, equal_var=False, alternative="less").pvalue  # diff < +bound
    correction = math.exp(special.gammaln(dof / 2) - special.gammaln((dof - 1) / 2)) / math.sqrt(dof / 2)
    cohen = diff / sd
    scale = math.sqrt(1 / n_a + 1 / n_b)
    ncp_low, ncp_high = _noncentral_interval(cohen / scale, dof, alpha)
    g, low, high = correction * cohen, ncp_low * scale, ncp_high * scale
    if math.isfinite(pvalue) and pvalue < alpha:
        verdict = "different"
    elif max(float(above), float(below)) < alpha:
        verdict = "same"
    else:
        verdict = "inconclusive"
    return Comparison(quantity, name_a, name_b, n_a, n_b, mean_a, mean_b, difference, HEDGES, float(g),
                      float(low), float(high), WELCH, pvalue, verdict, alpha, margin, "runs")


def verdict_text(c: Comparison) -> str:
    """One line for a person: the verdict and the numbers it rests on.

    ``"dead vs phantom: same (Cliff's delta 0.03, 90% CI -0.06..0.12 within ±0.2; Mann-Whitney p 0.41)"``
    """
    head = f"{c.a} vs {c.b}" + (f" ({c.quantity})" if c.quantity else "")
    if c.verdict == "too few":
        least = MIN_TOKENS if c.unit == "tokens" else MIN_RUNS
        return f"{head}: too few ({c.n_a} and {c.n_b} {c.unit}; {least} a side needed)"
    level = f"{100 * (1 - 2 * c.alpha):.4g}% CI"
    interval = f"{_number(c.effect_low)}..{_number(c.effect_high)}"
    test = c.test.removesuffix(" U")
    pvalue = "p < 1e-16" if c.pvalue < 1e-16 else f"p {c.pvalue:.2g}"
    verdict = c.verdict
    if c.unit == "tokens":
        inside = -c.margin < c.effect_low and c.effect_high < c.margin
        where = f"{'within' if inside else 'not within'} ±{c.margin:g}"
        if verdict == "different" and inside:
            verdict = "different, but small"
        return f"{head}: {verdict} ({c.effect} {_number(c.effect_size)}, {level} {interval} {where}; {test} {pvalue})"
    return (f"{head}: {verdict} ({c.effect} {_number(c.effect_size)}, {level} {interval}; {test} {pvalue}; "
            f"equivalence margin ±{c.margin:g} sd)")


# ----------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "0.00" if round(value, 2) == 0 else f"{value:.2f}"


def _check_levels(alpha: float, margin: float) -> tuple[float, float]:
    alpha, margin = float(alpha), float(margin)
    if not 0 < alpha < 0.5:
        raise ConfigError(f"alpha must lie between 0 and 0.5, not {alpha:g}")
    if not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"the equivalence margin must be a positive number, not {margin:g}")
    return alpha, margin


def _names(names: Sequence[str]) -> tuple[str, str]:
    if isinstance(names, str) or len(names) != 2:
        raise ConfigError(f"names must be two names, one a sample, not {names!r}")
    return str(names[0]), str(names[1])


def _values(values: npt.ArrayLike, name: str, quantity: str, *, finite: bool) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{quantity or 'the values'} of {name!r} are not numbers ({error})") from None
    return x[np.isfinite(x)] if finite else x[~np.isnan(x)]


def _mean(x: np.ndarray) -> float:
    if x.size == 0:
        return math.nan
    with np.errstate(invalid="ignore"):  # +inf and -inf together
        return float(x.mean())


def _too_few(quantity: str, a: str, b: str, x: np.ndarray, y: np.ndarray, effect: str, test: str,
             alpha: float, margin: float, unit: str) -> Comparison:
    mean_a, mean_b = _mean(x), _mean(y)
    value = mean_b - mean_a if x.size and y.size else math.nan
    difference = Estimate(value, math.nan, math.nan, math.nan, 1 - alpha, int(x.size + y.size),
                          f"too few {unit}")
    return Comparison(quantity, a, b, int(x.size), int(y.size), mean_a, mean_b, difference, effect, math.nan,
                      math.nan, math.nan, test, math.nan, "too few", alpha, margin, unit)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


NORMAL_FROM = 200  # samples a side from which the difference of means takes the normal interval


def _difference(x: np.ndarray, y: np.ndarray, confidence: float, unit: str) -> Estimate:
    """``mean(y) - mean(x)`` with a two-sample percentile bootstrap (each sample resampled alone)."""
    n = int(x.size + y.size)
    method = f"bootstrap over {x.size} + {y.size} {unit}"
    with np.errstate(invalid="ignore"):
        value = float(y.mean() - x.mean())
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Estimate(value, math.nan, math.nan, math.nan, confidence, n, f"no bootstrap: infinite {unit}")
    if min(x.size, y.size) < 2:
        return Estimate(value, math.nan, math.nan, math.nan, confidence, n, method)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return Estimate(value, 0.0, value, value, confidence, n, method)
    if min(x.size, y.size) >= NORMAL_FROM:
        # thousands of tokens: the central limit theorem holds and a bootstrap would cost seconds a test
        se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        return Estimate(value, se, value - z * se, value + z * se, confidence, n,
                        f"normal interval (Welch's standard error) over {x.size} + {y.size} {unit}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate resamples of tiny samples
        res = stats.bootstrap((x, y), _mean_difference, n_resamples=RESAMPLES, confidence_level=confidence,
                              method="percentile", vectorized=True, paired=False, **_rng_keyword(SEED))
    return Estimate(value, float(res.standard_error), float(res.confidence_interval.low),
                    float(res.confidence_interval.high), confidence, n, method)
