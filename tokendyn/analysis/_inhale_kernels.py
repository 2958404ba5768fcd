"""The inhale's numba kernel: the cloud's radius R(t), frame by frame.

Values are decoded with :func:`tokendyn.analysis._kernel_base.value`.
"""
from __future__ import annotations

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
