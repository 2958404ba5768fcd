"""The inhale's numba kernel: the cloud's radius R(t), frame by frame.

Values are decoded with :func:`tokendyn.analysis._kernel_base.value`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors, centroid_into, value


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def radius_frames(block: np.ndarray, lead: int, rows: np.ndarray, measure: int) -> np.ndarray:  # pragma: no cover
    """R(t) of the frames after the ``lead`` context frames: mean (0) or RMS (1) distance of the
    rows from their centroid, or mean norm (2)."""
    _wide_vectors()
    m, _, d = block.shape
    out = np.empty(m - lead)
    c = np.zeros(d)
    n = rows.shape[0]
    for t in range(lead, m):
        frame = block[t]
        if measure != 2:
            centroid_into(frame, rows, c)
        s = 0.0
        for i in rows:
            acc = 0.0
            for k in range(d):
                v = value(frame, i, k) - c[k]
                acc += v * v
            s += acc if measure == 1 else np.sqrt(acc)
        out[t - lead] = np.sqrt(s / n) if measure == 1 else s / n
    return out


@numba.njit(inline="always")
def _half_exponent(bits: np.uint16) -> int:  # pragma: no cover - numba
    """The binary exponent of half the bf16 spacing at a stored bf16 value (``-134`` for zero
    and subnormals, as :func:`tokendyn.analysis._schedule.bf16_half_spacing`); 1000 for an
    infinity or a NaN (no spacing)."""
    biased = (np.int64(bits) >> 7) & 0xFF
    if biased == 255:
        return 1000
    return max(biased - 127, -126) - 8


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def crossing_frames(block: np.ndarray, lead: int, rows: np.ndarray, update: np.ndarray,
                    predict: bool) -> np.ndarray:  # pragma: no cover - numba
    """Per analysed frame of a block: how many selected rows and coordinates changed their
    stored value since the frame before, and how many the learning rate predicts to.

    Returns ``(frames, 4)`` float64 fractions of the selected rows / coordinates: rows with at
    least half their coordinates changed, rows whose median half bf16 spacing (at the frame
    before) is below ``update[t]``, coordinates changed, coordinates whose half spacing is below
    ``update[t]``. ``update`` is the summed learning rate of the updates leading to each analysed
    frame. The first frame of the selection (``lead == 0``, no frame before) is NaN; so are the
    predicted columns when ``predict`` is False (a float movie: no lattice). A row holding an
    infinity or a NaN has no median spacing and is not predicted to cross."""
    m, _, d = block.shape
    out = np.full((m - lead, 4), np.nan)
    n = rows.shape[0]
    first = 1 if lead == 0 else lead
    counts = np.zeros(400, np.int64)
    lo, hi = (d - 1) // 2, d // 2
    for t in range(first, m):
        now = block[t]
        was = block[t - 1]
        u = update[t - lead]
        # u > 2**e exactly where e <= top (u = m 2**x, 0.5 <= m < 1: top = x - 1, or x - 2 where u is
        # a power of two); an integer comparison per value instead of a power
        top = -100000
        if u > 0 and u < np.inf:
            mantissa, exponent = math.frexp(u)
            top = exponent - 1 if mantissa > 0.5 else exponent - 2
        elif u == np.inf:
            top = 100000
        rows_moved = 0
        coords_moved = 0
        rows_pred = 0
        coords_pred = 0
        for j in range(n):
            i = rows[j]
            changed = 0
            for k in range(d):
                if now[i, k] != was[i, k]:  # a NaN differs from everything: changed
                    changed += 1
            coords_moved += changed
            if 2 * changed >= d:
                rows_moved += 1
            if predict:
                bad = False
                e_min = 1000
                e_max = -1000
                for k in range(d):
                    e = _half_exponent(np.uint16(was[i, k]))
                    if e == 1000:
                        bad = True
                    else:
                        counts[e + 200] += 1
                        e_min = min(e_min, e)
                        e_max = max(e_max, e)
                        if e <= top:
                            coords_pred += 1
                if not bad:
                    # the median of the row's half spacings, as numpy takes it (the mean of the
                    # two middle ones for an even d); they are ordered as their exponents
                    seen = 0
                    e_lo = e_min
                    e_hi = e_max
                    found_lo = False
                    for e in range(e_min, e_max + 1):
                        seen += counts[e + 200]
                        if not found_lo and seen > lo:
                            e_lo = e
                            found_lo = True
                        if seen > hi:
                            e_hi = e
                            break
                    if u > 0.5 * (2.0 ** e_lo + 2.0 ** e_hi):
                        rows_pred += 1
                for e in range(max(e_min, -200), min(e_max, 199) + 1):
                    counts[e + 200] = 0
        out[t - lead, 0] = rows_moved / n
        out[t - lead, 2] = coords_moved / (n * d)
        if predict:
            out[t - lead, 1] = rows_pred / n
            out[t - lead, 3] = coords_pred / (n * d)
    return out
