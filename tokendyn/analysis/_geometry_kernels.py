"""The cloud geometry's numba kernels: centroids, radii and centred positions of a block's frames.

Values are decoded with :func:`tokendyn.analysis._kernel_base.value`; the top eigenvalues of the
covariances are in :mod:`tokendyn.analysis._eigen`.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors, centroid_into, value


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def distances(frame: np.ndarray, rows: np.ndarray, center: np.ndarray) -> np.ndarray:  # pragma: no cover
    """|x_i - center| for the given rows of a stored frame, float64."""
    _wide_vectors()
    d = frame.shape[1]
    out = np.empty(rows.shape[0])
    for j in range(rows.shape[0]):
        i = rows[j]
        acc = 0.0
        for k in range(d):
            v = value(frame, i, k) - center[k]
            acc += v * v
        out[j] = np.sqrt(acc)
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def centered(frame: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """The given rows of a stored frame minus their mean, float64, into ``out`` (rows, dim)."""
    _wide_vectors()
    d = frame.shape[1]
    mean = np.empty(d)
    centroid_into(frame, rows, mean)
    # decoding the rows again costs less than reading back and rewriting ``out`` (8 bytes a value)
    for j in range(rows.shape[0]):
        i = rows[j]
        for k in range(d):
            out[j, k] = value(frame, i, k) - mean[k]
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def geometry_frames(block: np.ndarray, ordered: np.ndarray, offsets: np.ndarray, extra: np.ndarray,
                    y: np.ndarray, radii: np.ndarray, cents: np.ndarray) -> None:  # pragma: no cover - numba
    """The raw material of the cloud's geometry, for every frame of a stored block, in two reads
    of each frame.

    ``ordered`` holds the rows of each class one class after another (class ``c`` is
    ``ordered[offsets[c]:offsets[c + 1]]``), ``extra`` the selected rows of no such class. Per
    frame ``t``: ``cents[t]`` = the centroid of all those rows (float64), ``radii[t]`` = each
    row's distance from it (``ordered``'s rows first, then ``extra``'s), and ``y[t]`` = each of
    ``ordered``'s rows minus its class's centroid, computed in float64 and rounded to float32
    (for the principal variances: see :mod:`tokendyn.analysis.geometry`; not written when ``y``
    holds no rows)."""
    _wide_vectors()
    m, _, d = block.shape
    nc = offsets.shape[0] - 1
    n_ordered = ordered.shape[0]
    n = n_ordered + extra.shape[0]
    sums = np.zeros((nc, d))
    g = np.zeros(d)
    for t in range(m):
        frame = block[t]
        sums[:] = 0.0
        g[:] = 0.0
        for c in range(nc):
            for j in range(offsets[c], offsets[c + 1]):
                i = ordered[j]
                for k in range(d):
                    sums[c, k] += value(frame, i, k)
            for k in range(d):
                g[k] += sums[c, k]
                sums[c, k] /= offsets[c + 1] - offsets[c]
        for i in extra:
            for k in range(d):
                g[k] += value(frame, i, k)
        for k in range(d):
            g[k] /= n
            cents[t, k] = g[k]
        if y.shape[1] == 0:
            radii[t, :n_ordered] = distances(frame, ordered, g)
        else:
            for c in range(nc):
                cc = sums[c]
                for j in range(offsets[c], offsets[c + 1]):
                    i = ordered[j]
                    acc = 0.0
                    for k in range(d):
                        v = value(frame, i, k)
                        y[t, j, k] = np.float32(v - cc[k])
                        dv = v - g[k]
                        acc += dv * dv
                    radii[t, j] = np.sqrt(acc)
        if extra.shape[0]:
            radii[t, n_ordered:] = distances(frame, extra, g)
