"""The intervals of the two-sample effect sizes: Cliff's delta (DeLong placements, Cliff's
asymmetric interval, Newcombe's bound at complete separation) and Hedges' g (the noncentral t)."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats


def _placements(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per value of ``y``, the fraction of ``x`` below it; per value of ``x``, the fraction of ``y``
    above it (a tie counted a half). Both average to ``P(Y > X) + P(Y = X) / 2``."""
    sx, sy = np.sort(x), np.sort(y)
    below = np.searchsorted(sx, y, "left")
    tied = np.searchsorted(sx, y, "right") - below
    of_y = (below + 0.5 * tied) / x.size
    upto = np.searchsorted(sy, x, "right")
    tied = upto - np.searchsorted(sy, x, "left")
    of_x = (y.size - upto + 0.5 * tied) / y.size
    return of_x, of_y


def _cliff_interval(x: np.ndarray, y: np.ndarray, delta: float, alpha: float) -> tuple[float, float]:
    """The ``1 - 2 alpha`` interval of Cliff's delta of ``y`` over ``x`` (see :func:`compare_tokens`)."""
    n_x, n_y = x.size, y.size
    z = float(stats.norm.ppf(1 - alpha))
    if abs(delta) >= 1:
        bound = _newcombe_bound(n_x, n_y, z)
        return (bound, 1.0) if delta > 0 else (-1.0, -bound)
    of_x, of_y = _placements(x, y)
    variance = 4 * (of_y.var(ddof=1) / n_y + of_x.var(ddof=1) / n_x)
    variance = max(variance, (1 - delta ** 2) / (n_x * n_y - 1))
    s = math.sqrt(variance)
    spread = 1 - delta ** 2
    root = z * s * math.sqrt(spread ** 2 + z ** 2 * variance)
    denominator = spread + z ** 2 * variance
    low = (delta - delta ** 3 - root) / denominator
    high = (delta - delta ** 3 + root) / denominator
    return max(-1.0, float(low)), min(1.0, float(high))


def _newcombe_bound(n_x: int, n_y: int, z: float) -> float:
    """The inner bound of Cliff's delta at complete separation: Newcombe's (2006) method 5 score
    bound on ``theta = P(Y > X)`` at ``theta_hat = 1``, as ``2 theta - 1``."""
    half = (n_x + n_y) / 2

    def excess(theta: float) -> float:  # ((1 - theta)^2 - z^2 V(theta)) / (1 - theta)
        shape = 2 * half - 1 - (3 * half - 3) / ((2 - theta) * (1 + theta))
        return (1 - theta) - z ** 2 * theta * shape / (n_x * n_y)

    theta = optimize.brentq(excess, 0.0, 1.0)
    return float(2 * theta - 1)


def _noncentral_interval(t: float, dof: int, alpha: float) -> tuple[float, float]:
    """The noncentrality parameters whose t distribution puts ``t`` at its upper and its lower
    ``alpha`` tail: the ``1 - 2 alpha`` interval of the noncentrality."""

    def solve(target: float) -> float:
        def f(ncp: float) -> float:
            return float(stats.nct.cdf(t, dof, ncp)) - target  # decreasing in ncp

        return _root_decreasing(f, t)

    return solve(1 - alpha), solve(alpha)


def _root_decreasing(f: Callable[[float], float], guess: float) -> float:
    width = 1.0 + abs(guess)
    low, high = guess - width, guess + width
    for _ in range(60):
        if f(low) > 0:
            break
        low -= width
        width *= 2
    width = 1.0 + abs(guess)
    for _ in range(60):
        if f(high) < 0:
            break
        high += width
        width *= 2
    try:
        return float(optimize.brentq(f, low, high))
    except ValueError:
        return math.nan
