"""The co-moving analysis's numba kernels: displacements with the reference centroid taken out.

Values are decoded with :func:`tokendyn.analysis._kernel_base.value`.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors, block_centroids, prefetch_row, value


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def comoving_tokens(block: np.ndarray, lead: int, start: int, rows: np.ndarray, ref_rows: np.ndarray,
                    y0: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Per frame after the context and selected token: (|y(t) - y(t-1)|, |y(t) - y0|), with
    y = x - centroid of ``ref_rows``, computed in float64 and kept as float32; the step is NaN for
    the first frame of the selection."""
    _wide_vectors()
    m, _, d = block.shape
    cents = block_centroids(block, ref_rows)
    out = np.empty((m - lead, rows.shape[0], 2), np.float32)
    for t in range(lead, m):
        f1 = block[t]
        f0 = block[max(t - 1, 0)]
        for j in range(rows.shape[0]):
            i = rows[j]
            acc = 0.0
            for k in range(d):
                v = value(f1, i, k) - cents[t, k] - y0[j, k]
                acc += v * v
            out[t - lead, j, 1] = np.sqrt(acc)
            if t == 0:
                out[t - lead, j, 0] = np.nan
                continue
            acc = 0.0
            for k in range(d):
                v = (value(f1, i, k) - cents[t, k]) - (value(f0, i, k) - cents[t - 1, k])
                acc += v * v
            out[t - lead, j, 0] = np.sqrt(acc)
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def comoving_stream(block: np.ndarray, lead: int, start: int, rows: np.ndarray, cents: np.ndarray,
                    groups: np.ndarray, n_groups: int, lags: np.ndarray, y0: np.ndarray,
                    keep: bool) -> tuple:  # pragma: no cover - numba
    """The streaming pass of the co-moving analysis over one block (context: ``max(lags)`` frames;
    ``lags[0]`` must be 1), given the centroid of the reference rows in every frame of the block.

    Returns the centroid drift per frame, per frame and group the mean, median and max of the step
    displacement (NaN for the first frame of the selection, and where a token's step is not
    finite), per lag and group the sums of ``|y(t) - y(t - lag)|^2`` and their counts, over the
    pairs whose later frame is in this block and whose both frames are finite, with ``keep`` the
    per-(frame, token) array of :func:`comoving_tokens` (else an empty one), per frame the
    number of tokens whose co-moving position is not finite (NaN or infinite: a diverged run), and
    per lag and selected token the same sums and counts as the groups' (each token's own MSD)."""
    _wide_vectors()
    m, _, d = block.shape
    n = rows.shape[0]
    drift = np.full(m - lead, np.nan)
    for t in range(max(lead, 1), m):
        acc = 0.0
        for k in range(d):
            v = cents[t, k] - cents[t - 1, k]
            acc += v * v
        drift[t - lead] = np.sqrt(acc)
    stats = np.full((m - lead, n_groups, 3), np.nan)
    sums = np.zeros((lags.shape[0], n_groups))
    counts = np.zeros((lags.shape[0], n_groups), np.int64)
    token_sums = np.zeros((lags.shape[0], n))
    token_counts = np.zeros((lags.shape[0], n), np.int64)
    steps = np.full((m - lead, n), np.nan)  # NaN at the first frame of the selection
    ring = lags.max() + 1  # rows kept per token: this frame's and the last max(lags) frames'
    y = np.empty((ring, d))
    per = np.empty((m - lead if keep else 0, n, 2), np.float32)
    nonfinite = np.zeros(m - lead, np.int64)
    # token by token: each of a token's co-moving rows is decoded once into a ring of the last
    # max(lags) + 1 frames, and every lag reads its past row from there (measured 5.5-6.1 instead
    # of 8.1 s of one core per 2,000 Duckling II frames, where each lag decoded the past rows
    # again, frame by frame; tiles of 8 tokens were slower, 6.8 s). A ring (17 KiB) rather than
    # every frame of the block (48 KiB, the whole L1 cache): 12-25% off this kernel, bit-identical
    for j in range(n):
        i = rows[j]
        g = groups[j]
        if j + 2 < n:
            prefetch_row(block, rows[j + 2])  # the token after next: its rows arrive while this one runs
        ref = y0[j]
        finite_before = False
        for t in range(m):
            frame = block[t]
            yt = y[t % ring]
            ct = cents[t]
            for k in range(d):
                yt[k] = value(frame, i, k) - ct[k]
            if t < lead:
                continue
            if keep:
                acc = 0.0
                for k in range(d):
                    v = yt[k] - ref[k]
                    acc += v * v
                per[t - lead, j, 1] = np.sqrt(acc)
            for li in range(lags.shape[0]):
                lag = lags[li]
                if lag > t:
                    continue
                past = y[(t - lag) % ring]  # row views: plain 1-D loops that LLVM vectorizes
                acc = 0.0
                for k in range(d):
                    v = yt[k] - past[k]
                    acc += v * v
                if np.isfinite(acc):
                    sums[li, g] += acc
                    counts[li, g] += 1
                    token_sums[li, j] += acc
                    token_counts[li, j] += 1
                if lag == 1:
                    steps[t - lead, j] = np.sqrt(acc)
            # is this position finite? After a finite one, exactly when the step from it is (no
            # bf16 values overflow a float64 sum); else, by its own sum: once per block and token
            # on a run that did not diverge, so the loops above stay as they were
            if t > lead and finite_before:
                finite_before = np.isfinite(steps[t - lead, j])
            else:
                total = 0.0
                for k in range(d):
                    total += yt[k]
                finite_before = np.isfinite(total)
            if not finite_before:
                nonfinite[t - lead] += 1
    if keep:
        per[:, :, 0] = steps
    if lags[0] == 1:
        for t in range(max(lead, 1), m):
            for g in range(n_groups):
                sel = steps[t - lead][groups == g]
                if sel.shape[0] and np.all(np.isfinite(sel)):
                    stats[t - lead, g, 0] = sel.mean()
                    stats[t - lead, g, 1] = np.median(sel)
                    stats[t - lead, g, 2] = sel.max()
    return drift, stats, sums, counts, per, nonfinite, token_sums, token_counts
