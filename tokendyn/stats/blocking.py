"""The standard error of the mean of a correlated time series, by Flyvbjerg-Petersen blocking.

Successive frames of a training run are correlated, so the naive ``std / sqrt(n)`` understates the
error of a time average. Blocking averages neighbouring pairs again and again; once blocks are
longer than the correlation time, the variance of the block means over their number stops growing
(the plateau) and is the variance of the mean (H. Flyvbjerg and H. G. Petersen, J. Chem. Phys. 91,
461 (1989)). The plateau is chosen by M. Jonsson's automated criterion (Phys. Rev. E 98, 043304
(2018)): the first level whose remaining lag-1 autocorrelations are consistent with zero at 1 %.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

from .estimate import Estimate

MIN_SAMPLES = 4


class BlockAverage(NamedTuple):
    """A blocking analysis of one series.

    Attributes
    ----------
    mean : float
        The mean of the finite samples.
    error : float
        The standard error of the mean at the chosen level (NaN with fewer than 4 samples).
    error_error : float
        The uncertainty of :attr:`error` itself, ``error / sqrt(2 (blocks - 1))``.
    block_size : int
        Samples per block at the chosen level (1: the samples are uncorrelated).
    blocks : int
        Blocks at the chosen level.
    converged : bool
        Whether a plateau was found; without one (a series too short for its correlation time)
        :attr:`error` is the last level's and likely too small.
    levels : numpy.ndarray
        The standard error at every level (block sizes 1, 2, 4, ...), for a plot.
    n : int
        The finite samples used.
    """

    mean: float
    error: float
    error_error: float
    block_size: int
    blocks: int
    converged: bool
    levels: np.ndarray
    n: int

    def estimate(self, confidence: float = 0.95) -> Estimate:
        """As an :class:`~tokendyn.stats.Estimate` (a normal interval on the blocked error)."""
        z = stats.norm.ppf(0.5 + confidence / 2)
        method = f"blocking, {self.blocks} blocks of {self.block_size} frames" + ("" if self.converged else
                                                                                  " (no plateau: a lower bound)")
        return Estimate(self.mean, self.error, self.mean - z * self.error, self.mean + z * self.error,
                        confidence, self.n, method)


def block_average(series: npt.ArrayLike, *, level: float = 0.01) -> BlockAverage:
    """The mean of ``series`` with its blocked standard error.

    Parameters
    ----------
    series : array_like
        One value per frame, in frame order. Non-finite values (the first frame of a per-step
        quantity, a diverged frame) are left out.
    level : float
        The significance level of the plateau criterion (Jonsson's M test).

    Returns
    -------
    BlockAverage
    """
    x = np.asarray(series, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n < MIN_SAMPLES:
        mean = float(x.mean()) if n else math.nan
        return BlockAverage(mean, math.nan, math.nan, 1, n, False, np.full(0, np.nan), n)
    mean = float(x.mean())
    sizes, variances, gammas, errors = [], [], [], []
    blocked = x
    while blocked.size >= 2:
        m = blocked.size
        centred = blocked - blocked.mean()
        variance = float(np.mean(centred ** 2))
        sizes.append(m)
        variances.append(variance)
        gammas.append(float(np.sum(centred[:-1] * centred[1:]) / m))
        errors.append(math.sqrt(variance / (m - 1)))
        even = blocked[: m - m % 2]  # an odd sample out is dropped, as Flyvbjerg and Petersen do
        blocked = 0.5 * (even[0::2] + even[1::2])
    counts = np.asarray(sizes, float)
    var = np.asarray(variances)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(var > 0, counts * (np.asarray(gammas) / var) ** 2, 0.0)
    tail_sums = np.cumsum(terms[::-1])[::-1]  # M_k: the evidence of correlation left from level k on
    chosen, converged = len(sizes) - 1, False
    for k in range(len(sizes)):
        if tail_sums[k] < stats.chi2.ppf(1 - level, len(sizes) - k):
            chosen, converged = k, True
            break
    error = errors[chosen]
    blocks = sizes[chosen]
    if blocks < MIN_SAMPLES:  # a plateau of fewer than 4 blocks is no plateau
        converged = False
    return BlockAverage(mean, error, error / math.sqrt(2 * max(blocks - 1, 1)), 2 ** chosen, blocks, converged,
                        np.asarray(errors), n)
