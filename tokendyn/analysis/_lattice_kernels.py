"""The lattice analysis's numba kernels: lattice sites moved between stored bf16 frames, on the raw bits.

A bf16 value whose exponent bits are all ones (magnitude bits >= :data:`NONFINITE_BITS`) is NaN or
infinite: a move from or to one is not a lattice move (a diverged run), and is counted apart.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors

NONFINITE_BITS = 0x7F80  # bf16 magnitude bits (sign cleared) at or above this: infinite or NaN


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _lattice_token(f0: np.ndarray, f1: np.ndarray, i: int) -> tuple:  # pragma: no cover - numba
    """Between two stored bf16 frames, token ``i``: coordinates changed, summed |sites|, max
    |sites|, summed sites^2, and whether the newer frame holds a NaN or an infinity (the older
    one's is known from the move before). Bits map to integers monotonic in value (+0 = -0 = 0);
    branch-free so that it vectorizes."""
    _wide_vectors()
    c = np.int32(0)
    s = np.int32(0)
    big = np.int32(0)
    top = np.int32(0)
    q = 0.0  # exact: every sites^2 < 2^32 and their sum < 2^53 (float64 vectorizes; int64 products do not)
    for k in range(f0.shape[1]):
        b0 = np.int32(f0[i, k])
        b1 = np.int32(f1[i, k])
        s0 = b0 >> 15  # sign bit: the magnitude is negated as (m ^ -1) + 1
        s1 = b1 >> 15
        m0 = b0 & 0x7FFF
        m1 = b1 & 0x7FFF
        diff = abs(((m1 ^ -s1) + s1) - ((m0 ^ -s0) + s0))
        c += np.int32(diff != 0)
        s += diff
        fd = np.float64(diff)
        q += fd * fd
        big = max(big, diff)
        top = max(top, m1)
    return c, s, big, q, top >= NONFINITE_BITS


@numba.njit(nogil=True, cache=True)
def nonfinite_rows(frame: np.ndarray, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Whether each of the given rows of a stored bf16 frame holds a NaN or an infinity."""
    out = np.zeros(rows.shape[0], np.bool_)
    for j in range(rows.shape[0]):
        top = 0
        for k in range(frame.shape[1]):
            top = max(top, np.int32(frame[rows[j], k]) & 0x7FFF)
        out[j] = top >= NONFINITE_BITS
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def lattice_tokens(block: np.ndarray, lead: int, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Per frame after the context and selected token, int32: (coordinates changed, summed
    |sites|, hop: 0 still, 1 every coordinate within one site, 2 larger) since the previous
    frame; zeros for a frame with no predecessor in the block, -1 each where either frame holds a
    NaN or an infinity in the token's row."""
    _wide_vectors()
    m = block.shape[0]
    out = np.zeros((m - lead, rows.shape[0], 3), np.int32)
    first = max(lead, 1)
    if first >= m:
        return out
    bad_before = nonfinite_rows(block[first - 1], rows)
    for t in range(first, m):
        for j in range(rows.shape[0]):
            c, s, big, _, bad = _lattice_token(block[t - 1], block[t], rows[j])
            undefined = bad or bad_before[j]
            bad_before[j] = bad
            if undefined:
                out[t - lead, j, :] = -1
                continue
            out[t - lead, j, 0] = c
            out[t - lead, j, 1] = s
            out[t - lead, j, 2] = min(big, 2)
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def lattice_stream(block: np.ndarray, lead: int, start: int, rows: np.ndarray, groups: np.ndarray,
                   n_groups: int, depth: int, keep: bool) -> tuple:  # pragma: no cover - numba
    """The streaming pass of the lattice analysis over one block.

    Returns per frame and group the sums (sites^2 / dim, moved, lattice-scale hops, tokens whose
    move is defined), per token the frames (positions in the selection) of its last ``depth``
    moves in this block, latest first (-1 when fewer), with whether each was an isolated hop (one
    coordinate, one site), with ``keep`` the per-(frame, token) array of :func:`lattice_tokens`
    (else an empty one), and per frame the number of tokens holding a NaN or an infinity. A move
    from or to such a row is in no sum, and counts as a move (not a hop): a token that diverged
    has not frozen."""
    _wide_vectors()
    m, _, d = block.shape
    sums = np.zeros((m - lead, n_groups, 4))
    last = np.full((rows.shape[0], depth), -1, np.int64)
    small = np.zeros((rows.shape[0], depth), np.bool_)
    per = np.zeros((m - lead if keep else 0, rows.shape[0], 3), np.int32)
    nonfinite = np.zeros(m - lead, np.int64)
    first = max(lead, 1)
    # the rows of the frame before the first move: once per block, then each move tells the next
    bad_before = nonfinite_rows(block[first - 1], rows) if first <= m else np.zeros(0, np.bool_)
    if lead == 0:  # the selection's first frame has no move to it
        nonfinite[0] = bad_before.sum()
    for t in range(first, m):
        pos = start + t - lead
        for j in range(rows.shape[0]):
            c, s, big, q, bad = _lattice_token(block[t - 1], block[t], rows[j])
            g = groups[j]
            undefined = bad or bad_before[j]
            bad_before[j] = bad
            nonfinite[t - lead] += bad
            if keep:
                per[t - lead, j, 0] = -1 if undefined else c
                per[t - lead, j, 1] = -1 if undefined else s
                per[t - lead, j, 2] = -1 if undefined else min(big, 2)
            if not undefined:
                sums[t - lead, g, 3] += 1.0
                sums[t - lead, g, 0] += q / d
                if c > 0:
                    sums[t - lead, g, 1] += 1.0
                    if big <= 1:
                        sums[t - lead, g, 2] += 1.0
            if undefined or c > 0:
                for u in range(depth - 1, 0, -1):
                    last[j, u] = last[j, u - 1]
                    small[j, u] = small[j, u - 1]
                last[j, 0] = pos
                small[j, 0] = not undefined and big <= 1 and c <= 1
    return sums, last, small, per, nonfinite


@numba.njit(nogil=True, cache=True)
def merge_last_moves(last: np.ndarray, small: np.ndarray, block_last: np.ndarray,
                     block_small: np.ndarray) -> None:  # pragma: no cover - numba
    """Fold a later block's last moves per token (latest first, -1 padded) into ``last`` and
    ``small`` in place: the block's moves come first, the earlier ones fill what is left."""
    n, depth = last.shape
    for i in range(n):
        k = 0
        while k < depth and block_last[i, k] >= 0:
            k += 1
        if k == 0:
            continue
        for u in range(depth - 1, k - 1, -1):
            last[i, u] = last[i, u - k]
            small[i, u] = small[i, u - k]
        for u in range(k):
            last[i, u] = block_last[i, u]
            small[i, u] = block_small[i, u]
