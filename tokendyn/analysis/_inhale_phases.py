"""The inhale's phase finding: contraction phases of a radius curve, with their depth and z-score.

:func:`find_inhale` smooths R(t), finds its runs of falling frames before sustained expansion,
splits a run where the fall rate steps up (a burst begins), and scores each phase against the
curve's frame-to-frame noise (:func:`radius_noise`). Pure numpy on one curve; it knows nothing of
movies (:mod:`tokendyn.analysis.inhale` reads those).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def _smooth(r: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` frames (at most the curve's length), the ends held; a window
    that holds a NaN is NaN."""
    width = min(int(width), r.size)
    if width <= 1:
        return r.copy()
    pad = width // 2
    padded = np.pad(r, pad, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")[: r.size]


#: A fall-rate step counts as a burst's onset only above this many robust standard deviations of
#: the curve's second differences (a guard against noise; ``split`` is the main test).
SPLIT_NOISE = 1.5

#: ... and only where the fall rate rises by at least this fraction of itself (a burst, not a
#: wobble of a steady fall: noise of 0.2% per token made 30% wobbles in the planted inhale).
SPLIT_RISE = 0.5


#: The median absolute deviation times this is the standard deviation of a normal distribution
#: (1 / the normal quantile of 3/4).
MAD_TO_SD = 1.482602218505602


def _robust_sd(x: np.ndarray) -> float:
    """:data:`MAD_TO_SD` times the median absolute deviation of the finite values (0 when there
    are none)."""
    x = x[np.isfinite(x)]
    return float(MAD_TO_SD * np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def radius_noise(r: np.ndarray) -> float:
    """The frame-to-frame noise of a radius curve: the robust standard deviation of one step of R
    about its local trend, ``MAD_TO_SD * MAD(diff(R, 2)) / sqrt(2)`` (1.4826: a normal's sd).

    Second differences take out a trend that changes slowly (a warmup, the expansion), so the
    noise is what a step of R scatters by about the steps either side of it. Frames where R is not
    finite are left out; 0 for a curve with no scatter at all (a noise-free planted movie).
    """
    r = np.asarray(r, float)
    return _robust_sd(np.diff(r, 2)) / np.sqrt(2.0) if r.size >= 3 else 0.0


def _onsets(rs: np.ndarray, first: int, last: int, split: float) -> list[int]:
    """Frames of a falling run ``first..last`` where the fall rate steps up (a burst begins)."""
    if split <= 0 or last - first < 1:
        return []
    with np.errstate(invalid="ignore"):
        fall = np.concatenate([[np.nan], rs[:-1] - rs[1:]])  # fall[t]: R(t-1) - R(t)
        step = np.concatenate([[np.nan], np.diff(fall)])  # step[t]: fall[t] - fall[t-1]
    guard = SPLIT_NOISE * _robust_sd(step)
    out = []
    for t in range(first + 1, last + 1):
        around = [abs(step[u]) for u in (t - 1, t + 1) if 0 <= u < step.size and np.isfinite(step[u])]
        if around and step[t] > guard and step[t] > split * max(around) and step[t] >= SPLIT_RISE * fall[t - 1]:
            out.append(t)
    return out


def find_inhale(r: np.ndarray, *, smooth: int = 1, min_depth: float = 0.0, tol: float = 0.0, split: float = 3.0,
                min_z: float = 3.0) -> dict[str, Any]:
    """Events of a radius curve (frame indices): contraction phases before sustained expansion.

    Parameters
    ----------
    r : numpy.ndarray
        The radius curve R(t), one value per frame.
    smooth : int
        Moving-average width applied before the phases are looked for (1: none).
    min_depth : float
        Smallest relative depth a phase must reach (a fraction of R at the frame before it).
    tol : float
        A frame falls when the smoothed R drops by more than ``tol * |R(0)|`` from the frame before.
    split : float
        Within a run of falling frames, a new phase (a burst) begins at a frame where the fall
        rate steps up by more than ``split`` times its change at the frames either side, by more
        than :data:`SPLIT_NOISE` robust standard deviations of those changes over the curve, and by
        at least :data:`SPLIT_RISE` of itself; 0: runs are not split.
    min_z : float
        Smallest z-score a phase must reach (see Returns).

    Returns
    -------
    dict
        ``phases``: a list of dicts with ``start`` (the first frame whose R is below the frame
        before: the first contracting update), ``bottom`` (its last), ``depth`` (the smoothed fall
        over the phase relative to R at the frame before ``start``), ``drop`` (the fall of the
        unsmoothed R from the frame before ``start`` to ``bottom``), ``z`` (``drop / (noise *
        sqrt(n))``, ``n`` the phase's updates: the fall in standard deviations of a sum of ``n``
        independent noisy steps) and ``p`` (its one-sided normal p-value); ``noise``
        (:func:`radius_noise` of ``r``), ``minimum``, ``expansion`` (the first frame after which R
        stays above R(0) for good, over the frames where R is finite) and ``smoothed``. Frames
        where R is NaN or infinite (a diverged run) are in no phase and are not the minimum; with
        R(0) not finite there are no events. The p-value is nominal: the phases are where R was
        seen to fall, and no correction for that search is made.
    """
    r = np.asarray(r, float)
    rs = _smooth(r, smooth)
    n = rs.size
    noise = radius_noise(r)
    finite = np.isfinite(rs)
    if n == 0 or not finite[0]:
        return {"phases": [], "minimum": None, "expansion": None, "smoothed": rs, "noise": noise}
    r0 = rs[0]
    above = rs > r0
    expansion = None
    last = np.flatnonzero(finite)[-1]
    if above[last]:
        below = np.flatnonzero(finite & ~above)
        expansion = int(below[-1] + 1) if below.size else 0
    end = expansion if expansion is not None else n
    with np.errstate(invalid="ignore", over="ignore"):
        falling = np.diff(rs[:end]) < -tol * abs(r0)  # falling[t - 1]: frame t falls; False where not finite
    runs = []
    t = 0
    while t < falling.size:
        if falling[t]:
            s = t
            while t < falling.size and falling[t]:
                t += 1
            runs.append((s + 1, t))  # frames s + 1 .. t fall
        else:
            t += 1
    phases = []
    for first, final in runs:
        cuts = [first, *_onsets(rs, first, final, split), final + 1]
        for start, stop in zip(cuts[:-1], cuts[1:]):
            phase = _phase(r, rs, start, stop - 1, noise)
            if phase["depth"] >= min_depth and phase["z"] >= min_z:
                phases.append(phase)
    minimum = int(np.nanargmin(np.where(finite[:end], rs[:end], np.nan))) if finite[:end].any() else None
    return {"phases": phases, "minimum": minimum, "expansion": expansion, "smoothed": rs, "noise": noise}


def _phase(r: np.ndarray, rs: np.ndarray, start: int, bottom: int, noise: float) -> dict[str, Any]:
    """One contraction phase, frames ``start..bottom`` (each below the one before)."""
    before = start - 1
    depth = (rs[before] - rs[bottom]) / rs[before] if rs[before] else 0.0
    drop = float(r[before] - r[bottom])
    updates = bottom - before
    if noise > 0:
        z = drop / (noise * np.sqrt(updates))
    else:  # no scatter at all: any fall is certain
        z = np.inf if drop > 0 else (0.0 if drop == 0 or not np.isfinite(drop) else -np.inf)
    p = 0.5 * math.erfc(z / math.sqrt(2)) if np.isfinite(z) else float(z < 0)
    return {"start": start, "bottom": bottom, "depth": float(depth), "drop": drop, "z": float(z), "p": float(p)}
