"""The largest eigenvalues of small symmetric matrices, in numba (for the principal variances).

LAPACK's ``syevd`` through ``numpy.linalg.eigvalsh`` takes 0.6-0.8 ms for a 128 x 128 matrix on
the 2-core VM and computes the whole spectrum; cloud_geometry needs the top ``k`` of three such
matrices per frame. Here: Householder reduction to tridiagonal form (the same backward-stable
reduction LAPACK's ``sytrd`` makes, 0.2-0.3 ms at 128), then bisection with Sturm counts for
the top ``k`` eigenvalues only, all ``k`` bisections interleaved so the serial recurrences overlap.
Accuracy is LAPACK's: each eigenvalue to within a few units of 2^-52 times the matrix's norm.
"""
from __future__ import annotations

import numba
import numpy as np

from ._kernel_base import _FAST, _wide_vectors


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _reflector(col: np.ndarray, v: np.ndarray) -> tuple:  # pragma: no cover - numba
    """The Householder reflection I - beta v v' that maps ``col`` onto alpha e_1: writes ``v``
    (``col.size`` values) and returns ``(beta, alpha)``; ``beta = 0`` and ``v = 0`` when ``col``
    is zero already."""
    m = col.shape[0]
    s = 0.0
    for r in range(m):
        s += col[r] * col[r]
    if s == 0.0:
        v[:m] = 0.0
        return 0.0, 0.0
    x0 = col[0]
    alpha = -np.sqrt(s) if x0 >= 0 else np.sqrt(s)
    for r in range(m):
        v[r] = col[r]
    v[0] = x0 - alpha
    return 2.0 / (s - x0 * x0 + v[0] * v[0]), alpha


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def tridiagonalize(a: np.ndarray, diag: np.ndarray, off: np.ndarray) -> None:  # pragma: no cover - numba
    """Reduce the symmetric matrix ``a`` (overwritten; both triangles are read) to the tridiagonal
    matrix with diagonal ``diag`` (n) and off-diagonal ``off`` (n - 1) that has its eigenvalues,
    by Householder reflections.

    Step j reflects the trailing block: A -= v w' + w v' with w = p - (beta p.v / 2) v and
    p = beta A v. The pass that updates the block's rows also makes the next step's p from them
    (one sweep over the block per step instead of two: 0.33 -> 0.2 ms at n = 128); loops run
    over slices from index 0, whose bounds LLVM can prove non-negative, so they vectorize."""
    _wide_vectors()
    n = a.shape[0]
    if n >= 3:
        v, w = np.empty(n), np.empty(n)
        v_next, p_next = np.empty(n), np.empty(n)
        beta, alpha = _reflector(a[1:, 0], v)
        m = n - 1
        for r in range(m):  # the first step's p: a plain pass over the block
            row = a[1 + r, 1:]
            acc = 0.0
            for c in range(m):
                acc += row[c] * v[c]
            w[r] = beta * acc
        for j in range(n - 2):
            m = n - j - 1
            diag[j] = a[j, j]
            off[j] = alpha
            pv = 0.0
            for r in range(m):
                pv += w[r] * v[r]
            half = 0.5 * beta * pv
            for r in range(m):
                w[r] -= half * v[r]
            w0, v0 = w[0], v[0]
            for r in range(m):  # the block's first column: the next reflection is made from it
                a[j + 1 + r, j + 1] -= v[r] * w0 + w[r] * v0
            beta_next, alpha_next = _reflector(a[j + 2:, j + 1], v_next)
            v1, w1 = v[1:m], w[1:m]
            for r in range(1, m):
                row = a[j + 1 + r, j + 2:]  # a C-contiguous row: a block's row would not be
                vr, wr = v[r], w[r]
                acc = 0.0
                for c in range(m - 1):
                    x = row[c] - (vr * w1[c] + wr * v1[c])
                    row[c] = x
                    acc += x * v_next[c]
                p_next[r - 1] = beta_next * acc
            v, v_next = v_next, v
            w, p_next = p_next, w
            beta, alpha = beta_next, alpha_next
    if n >= 2:
        diag[n - 2] = a[n - 2, n - 2]
        off[n - 2] = a[n - 1, n - 2]
    if n >= 1:
        diag[n - 1] = a[n - 1, n - 1]


@numba.njit(nogil=True, cache=True)
def tridiagonal_top(diag: np.ndarray, off: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """The ``out.size`` largest eigenvalues of a symmetric tridiagonal matrix, largest first, by
    bisection: the number of positive pivots of T - xI counts the eigenvalues above x."""
    n = diag.shape[0]
    k = out.shape[0]
    lo, hi, big = np.inf, -np.inf, 0.0
    for i in range(n):
        radius = (abs(off[i - 1]) if i > 0 else 0.0) + (abs(off[i]) if i < n - 1 else 0.0)
        lo = min(lo, diag[i] - radius)
        hi = max(hi, diag[i] + radius)
    off2 = np.empty(max(n - 1, 0))
    for i in range(n - 1):
        off2[i] = off[i] * off[i]
        big = max(big, off2[i])
    norm = max(abs(lo), abs(hi))
    tol = 4 * 2.0 ** -52 * norm
    pivmin = 2.2250738585072014e-308 * max(1.0, big)
    lo -= tol
    hi += tol
    a = np.full(k, lo)
    b = np.full(k, hi)
    x = np.empty(k)
    q = np.empty(k)
    above = np.empty(k, np.int64)
    for _ in range(128):  # the bracket halves each time: ~55 halvings reach tol
        done = True
        for i in range(k):
            done = done and b[i] - a[i] <= max(tol, 2 * 2.0 ** -52 * max(abs(a[i]), abs(b[i])))
        if done:
            break
        for i in range(k):
            x[i] = 0.5 * (a[i] + b[i])
            q[i] = diag[0] - x[i]
            above[i] = 1 if q[i] > 0 else 0
        for j in range(1, n):
            for i in range(k):
                qi = q[i]
                if abs(qi) < pivmin:
                    qi = -pivmin
                qi = diag[j] - x[i] - off2[j - 1] / qi
                q[i] = qi
                above[i] += 1 if qi > 0 else 0
        for i in range(k):
            if above[i] > i:
                a[i] = x[i]
            else:
                b[i] = x[i]
    for i in range(k):
        out[i] = 0.5 * (a[i] + b[i])


@numba.njit(nogil=True, cache=True)
def top_eigenvalues(matrices: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """The ``out.shape[-1]`` largest eigenvalues, largest first, of each symmetric matrix of a
    stack ``matrices`` (..., n, n), into ``out`` (..., k); NaN for a matrix with a NaN or an
    infinity (a frame of a diverged run). ``matrices`` is left as it was."""
    n = matrices.shape[-1]
    flat = matrices.reshape((-1, n, n))
    top = out.reshape((-1, out.shape[-1]))
    work = np.empty((n, n))
    diag = np.empty(n)
    off = np.empty(max(n - 1, 0))
    for s in range(flat.shape[0]):
        work[:] = flat[s]
        if not np.all(np.isfinite(work)):
            top[s] = np.nan
            continue
        tridiagonalize(work, diag, off)
        tridiagonal_top(diag, off, top[s])
