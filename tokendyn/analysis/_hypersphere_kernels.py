"""The hypersphere walk's numba kernels: radial fractions, step correlations and angular decay.

Positions are decoded about a centre with :func:`tokendyn.analysis._kernel_base.about`.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors, about, prefetch_rows

ANGLE_TILE = 32  # sampled tokens whose unit vectors over a block are held at once (L2-sized)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def angular_sums(block: np.ndarray, lead: int, start: int, sample_rows: np.ndarray, cents: np.ndarray,
                 origin: bool, lags: np.ndarray, ang_sum: np.ndarray, ang_n: np.ndarray) -> None:  # pragma: no cover
    """Add cos(r_hat(t), r_hat(t - lag)) of the sampled rows to ``ang_sum`` (and count pairs in
    ``ang_n``) per lag, for the frames after the context whose partner is in the selection.

    A tile of tokens at a time, their unit vectors in every frame of the block are computed once
    (positions about ``cents``, or about the origin, float64, normalized, stored as float32; a zero
    vector stays zero), then every lag's cosines are float32 dot products of those: about 1e-7
    each, so means over tokens and frames hold far tighter."""
    _wide_vectors()
    m, _, d = block.shape
    unit = np.empty((m, ANGLE_TILE, d), np.float32)
    ns = sample_rows.shape[0]
    for u0 in range(0, ns, ANGLE_TILE):
        tile = min(ANGLE_TILE, ns - u0)
        for t in range(m):
            frame = block[t]
            if t + 1 < m:  # the tile's rows in the next frame (measured ~25% off this loop)
                prefetch_rows(block, t + 1, sample_rows[u0:u0 + tile])
            for u in range(tile):
                i = sample_rows[u0 + u]
                r2 = 0.0
                for k in range(d):
                    v = about(frame, i, k, cents, t, origin)
                    r2 += v * v
                scale = 1.0 / np.sqrt(r2) if r2 > 0 else 1.0
                for k in range(d):
                    unit[t, u, k] = np.float32(about(frame, i, k, cents, t, origin) * scale)
        for t in range(lead, m):
            g = start + t - lead
            for li in range(lags.shape[0]):
                lag = lags[li]
                if lag > g:
                    continue
                total = 0.0
                pairs = 0
                for u in range(tile):
                    dot = np.float32(0.0)
                    for k in range(d):
                        dot += unit[t, u, k] * unit[t - lag, u, k]
                    if np.isfinite(dot):
                        total += dot
                        pairs += 1
                ang_sum[li] += total
                ang_n[li] += pairs


TOKEN_SUMS = 5  # per-token sums of sphere_walk_block: sum a, sum |D|^2, steps, sum rho, radial fractions
STEP_TILE = 32  # tokens whose rows walk through a block's frames together (their state: 64 KiB)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def sphere_walk_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, cents: np.ndarray, origin: bool,
                      sample_rows: np.ndarray, lags: np.ndarray, edges: np.ndarray,
                      coarse_bins: int) -> tuple:  # pragma: no cover
    """The hypersphere walk's streaming pass over one block (context: ``max(2, max(lags))`` frames).

    Positions are taken about ``cents``, the centre in every frame of the block (not read when
    ``origin``: then about the origin). Returns per
    frame (rho mean, outward fraction, mean a, mean radius change; NaN for the first frame of the
    selection), the histogram of radial fractions in the ``edges.size + 1`` bins that ``edges``
    (increasing, inner edges only) cut [0, 1] into (``np.searchsorted(edges, rho, "right")``: the
    hypersphere walk passes the Beta law's quantiles, so every bin holds the same probability
    under isotropy), their histogram in ``coarse_bins`` equal bins of rho, the sums ``acc`` = [sum
    a, sum a^2, sum |D|^2, steps, outward, inward, sum cos, sum cos^2, cosines, sum r, radii, sum
    rho, radial fractions], for the tokens at
    ``sample_rows`` the sums of cos(r_hat(t), r_hat(t - lag)) and their counts per lag, per
    frame the number of tokens whose position is not finite (NaN or infinite: a diverged run),
    and per selected token (``(tokens, 5)``, the order of ``rows``) the sums of its own steps:
    [sum a, sum |D|^2, steps, sum rho, radial fractions] (the same steps as ``acc``'s, so the
    per-token sums add up to ``acc[0], acc[2], acc[3], acc[11], acc[12]``).
    Steps from or to such a position take no part in any sum or count."""
    _wide_vectors()
    m, _, d = block.shape
    n = rows.shape[0]
    hist = np.zeros(edges.shape[0] + 1, np.int32)  # a block holds far fewer than 2^31 steps
    coarse = np.zeros(coarse_bins, np.int64)
    acc = np.zeros(13)
    per_token = np.zeros((n, TOKEN_SUMS))
    ang_sum = np.zeros(lags.shape[0])
    ang_n = np.zeros(lags.shape[0], np.int64)
    angular_sums(block, lead, start, sample_rows, cents, origin, lags, ang_sum, ang_n)
    frames = m - lead
    rho_sum = np.zeros(frames)
    rho_n = np.zeros(frames, np.int64)
    outward = np.zeros(frames, np.int64)
    a_sum = np.zeros(frames)
    a_n = np.zeros(frames, np.int64)
    dr_sum = np.zeros(frames)
    step_n = np.zeros(frames, np.int64)  # finite steps arriving at each frame
    nonfinite = np.zeros(frames, np.int64)
    # a tile of tokens walks through the block's frames: each row is decoded once, and each
    # token's position, last step, |x|^2 and |step|^2 are kept for the next frame (frame by frame,
    # the rows of t-1 and t-2 were decoded again: 1.09 instead of 0.90 ms a Duckling II frame)
    pos = np.empty((STEP_TILE, d))
    prev_step = np.zeros((STEP_TILE, d))
    r2_before = np.empty(STEP_TILE)
    dd_before = np.empty(STEP_TILE)
    first = max(0, lead - 2)  # the two frames before the first analysed one give its steps
    for u0 in range(0, n, STEP_TILE):
        tile = min(STEP_TILE, n - u0)
        tile_rows = rows[u0:u0 + tile]
        for t in range(first, m):
            if t + 1 < m:
                prefetch_rows(block, t + 1, tile_rows)
            f1 = block[t]
            g = start + t - lead
            for u in range(tile):
                i = tile_rows[u]
                p = pos[u]
                s = prev_step[u]
                if t == first:
                    r2 = 0.0
                    for k in range(d):
                        v = about(f1, i, k, cents, t, origin)
                        p[k] = v
                        r2 += v * v
                    r2_before[u] = r2
                    if t >= lead:  # the selection's first frame: no step yet, but its radius counts
                        if np.isfinite(r2):
                            acc[9] += np.sqrt(r2)
                            acc[10] += 1
                        else:
                            nonfinite[t - lead] += 1
                    continue
                r2 = 0.0
                dot = 0.0
                dd = 0.0
                num = 0.0  # with the step before: used from the tile's third frame on
                for k in range(d):
                    v = about(f1, i, k, cents, t, origin)
                    step = v - p[k]
                    r2 += v * v
                    dot += step * p[k]
                    dd += step * step
                    num += step * s[k]
                    s[k] = step
                    p[k] = v
                r0sq = r2_before[u]
                pp = dd_before[u]
                r2_before[u] = r2
                dd_before[u] = dd
                if t < lead:
                    continue
                tl = t - lead
                if not np.isfinite(r2):  # this position, and the steps from and to it, are undefined
                    nonfinite[tl] += 1
                    continue
                r1 = np.sqrt(r2)
                acc[9] += r1
                acc[10] += 1
                if g < 1 or not np.isfinite(r0sq):
                    continue
                r0 = np.sqrt(r0sq)
                step_n[tl] += 1
                dr_sum[tl] += r1 - r0
                if r0 > 0:
                    a = dot / r0
                    a_sum[tl] += a
                    a_n[tl] += 1
                    acc[0] += a
                    acc[1] += a * a
                    acc[2] += dd
                    acc[3] += 1
                    own = per_token[u0 + u]
                    own[0] += a
                    own[1] += dd
                    own[2] += 1
                    if a > 0:
                        acc[4] += 1
                        outward[tl] += 1
                    elif a < 0:
                        acc[5] += 1
                    if dd > 0:
                        rho = (dot * dot) / (r0sq * dd)
                        rho_sum[tl] += rho
                        rho_n[tl] += 1
                        hist[np.searchsorted(edges, rho, "right")] += 1
                        coarse[min(int(rho * coarse_bins), coarse_bins - 1)] += 1
                        acc[11] += rho
                        acc[12] += 1
                        own[3] += rho
                        own[4] += 1
                if g >= 2 and t > first + 1:  # a step before this one, in this block
                    den = np.sqrt(dd) * np.sqrt(pp)
                    if den > 0 and np.isfinite(den) and np.isfinite(num):
                        cv = num / den
                        acc[6] += cv
                        acc[7] += cv * cv
                        acc[8] += 1
    per = np.full((frames, 4), np.nan)
    for tl in range(frames):
        if start + tl >= 1:
            per[tl, 0] = rho_sum[tl] / rho_n[tl] if rho_n[tl] else np.nan
            per[tl, 1] = outward[tl] / step_n[tl] if step_n[tl] else np.nan
            per[tl, 2] = a_sum[tl] / a_n[tl] if a_n[tl] else np.nan
            per[tl, 3] = dr_sum[tl] / step_n[tl] if step_n[tl] else np.nan
    return per, hist, coarse, acc, ang_sum, ang_n, nonfinite, per_token
