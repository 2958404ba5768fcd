"""Bootstrap intervals: the mean of per-token values, and a group's mean curve over its runs.

Both resample with :func:`scipy.stats.bootstrap` (percentile intervals, a fixed seed so that a
report is the same every time it is made).
"""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from .estimate import Estimate

RESAMPLES = 2000
SEED = 20261203
#: Up to this many values a mean is resampled; above it, its error is the ideal bootstrap's,
#: ``sqrt(sum (x - mean)^2) / n`` (what the resampled error converges to, within ~2 % of 2,000
#: resamples), with a normal interval: resampling holds every resample at once (8 s and 800 MB
#: for 50,000 tokens).
RESAMPLED_UP_TO = 1000


def _rng_keyword(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng``, older versions ``random_state``."""
    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def bootstrap_mean(values: npt.ArrayLike, *, confidence: float = 0.95, resamples: int = RESAMPLES,
                   seed: int = SEED, what: str = "tokens") -> Estimate:
    """The mean of ``values`` (e.g. one number per token of a class) with its bootstrap standard
    error and percentile interval.

    Non-finite values are left out. With one value the error is NaN; with none the mean is NaN.
    Above :data:`RESAMPLED_UP_TO` values the error is the ideal bootstrap's, without resampling.
    ``what`` names the samples in :attr:`Estimate.method` (``"bootstrap over 184 tokens"``).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, confidence, 0, f"no finite {what}")
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        error = math.nan if n == 1 else 0.0
        return Estimate(mean, error, mean if n > 1 else math.nan, mean if n > 1 else math.nan, confidence, n,
                        f"bootstrap over {n} {what}")
    if n > RESAMPLED_UP_TO:
        error = float(np.sqrt(np.sum((x - mean) ** 2)) / n)
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        return Estimate(mean, error, mean - z * error, mean + z * error, confidence, n,
                        f"ideal bootstrap over {n} {what} (normal interval)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate resamples of tiny samples
        res = stats.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=confidence,
                              method="percentile", vectorized=True, **_rng_keyword(seed))
    return Estimate(mean, float(res.standard_error), float(res.confidence_interval.low),
                    float(res.confidence_interval.high), confidence, n, f"bootstrap over {n} {what}")


def band(curves: npt.ArrayLike, *, confidence: float = 0.95, resamples: int = RESAMPLES,
         seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A group's mean curve and its bootstrap band over the group's runs.

    Parameters
    ----------
    curves : array_like
        ``(runs, points)``: one curve per run on common points (NaN where a run has no value).

    Returns
    -------
    mean, low, high : numpy.ndarray
        Per point: the mean over the runs with a value there, and the percentile band of that mean
        from resampling the runs. The band is NaN where fewer than two runs have a value (one run
        has no spread to resample).
    """
    y = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    finite = np.isfinite(y)
    counts = finite.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.where(finite, y, 0).sum(0) / np.maximum(counts, 1), np.nan)
    low = np.full(y.shape[1], np.nan)
    high = np.full(y.shape[1], np.nan)
    full = counts == y.shape[0]
    partial = (counts >= 2) & ~full  # runs of different lengths: some runs have no value here
    if y.shape[0] >= 2 and (full | partial).any():
        rng = np.random.default_rng(seed)
        # resample whole runs (a run's curve stays together), the same draws at every point
        picks = rng.integers(0, y.shape[0], size=(resamples, y.shape[0]))
        tail = (1 - confidence) / 2
        if full.any():
            means = y[:, full][picks].mean(axis=1)
            low[full], high[full] = np.quantile(means, [tail, 1 - tail], axis=0)
        if partial.any():
            # the mean over the drawn runs that have a value; a draw with none there is left out
            drawn = y[:, partial][picks]
            have = np.isfinite(drawn)
            got = have.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(got > 0, np.where(have, drawn, 0).sum(axis=1) / got, np.nan)
            low[partial], high[partial] = np.nanquantile(means, [tail, 1 - tail], axis=0)
    return mean, low, high
