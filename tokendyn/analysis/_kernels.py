"""Numba kernels run on one block of frames (frame 0 of a block is the frame before it)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def comoving_step(x: np.ndarray, c: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """|(x[t]-c[t]) - (x[t-1]-c[t-1])| for t = 1..T-1 of the block: shape (T-1, N)."""
    t_n, n, d = x.shape
    out = np.empty((t_n - 1, n))
    for t in range(1, t_n):
        for i in range(n):
            acc = 0.0
            for k in range(d):
                v = (np.float64(x[t, i, k]) - c[t, k]) - (np.float64(x[t - 1, i, k]) - c[t - 1, k])
                acc += v * v
            out[t - 1, i] = np.sqrt(acc)
    return out


@numba.njit(nogil=True, cache=True)
def comoving_from_ref(x: np.ndarray, c: np.ndarray, y0: np.ndarray) -> np.ndarray:  # pragma: no cover
    """|(x[t]-c[t]) - y0| per frame and token: shape (T, N)."""
    t_n, n, d = x.shape
    out = np.empty((t_n, n))
    for t in range(t_n):
        for i in range(n):
            acc = 0.0
            for k in range(d):
                v = np.float64(x[t, i, k]) - c[t, k] - y0[i, k]
                acc += v * v
            out[t, i] = np.sqrt(acc)
    return out


@numba.njit(nogil=True, cache=True)
def centroid(x: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Mean over tokens in float64: (T, N, D) -> (T, D)."""
    t_n, n, d = x.shape
    out = np.zeros((t_n, d))
    for t in range(t_n):
        for i in range(n):
            for k in range(d):
                out[t, k] += x[t, i, k]
        for k in range(d):
            out[t, k] /= n
    return out


@numba.njit(nogil=True, cache=True)
def msd_accumulate(ring: np.ndarray, filled: int, head: int, y: np.ndarray, lags: np.ndarray,
                   sums: np.ndarray, counts: np.ndarray, groups: np.ndarray) -> None:  # pragma: no cover
    """Add |y - y(t - lag)|^2 per group for every lag whose past frame is in the ring buffer."""
    size = ring.shape[0]
    n, d = y.shape
    for li in range(lags.shape[0]):
        lag = lags[li]
        if lag > filled or lag > size:
            continue
        past = ring[(head - lag) % size]
        for i in range(n):
            acc = 0.0
            for k in range(d):
                v = y[i, k] - past[i, k]
                acc += v * v
            sums[li, groups[i]] += acc
            counts[li, groups[i]] += 1


@numba.njit(nogil=True, cache=True)
def radial_steps(x: np.ndarray, c: np.ndarray) -> tuple:  # pragma: no cover - numba
    """For each token and pair (t-1, t): radial component a = D.r_hat, radial fraction a^2/|D|^2,
    step length |D| and radius change |x(t)-c(t)| - |x(t-1)-c(t-1)|; r_hat from frame t-1."""
    t_n, n, d = x.shape
    a = np.empty((t_n - 1, n))
    rho = np.empty((t_n - 1, n))
    length = np.empty((t_n - 1, n))
    dr = np.empty((t_n - 1, n))
    for t in range(1, t_n):
        for i in range(n):
            r0 = 0.0
            r1 = 0.0
            dot = 0.0
            dd = 0.0
            for k in range(d):
                p = np.float64(x[t - 1, i, k]) - c[t - 1, k]
                q = np.float64(x[t, i, k]) - c[t, k]
                step = q - p
                r0 += p * p
                r1 += q * q
                dot += step * p
                dd += step * step
            r0 = np.sqrt(r0)
            a[t - 1, i] = dot / r0 if r0 > 0 else np.nan
            rho[t - 1, i] = (dot * dot) / (r0 * r0 * dd) if dd > 0 and r0 > 0 else np.nan
            length[t - 1, i] = np.sqrt(dd)
            dr[t - 1, i] = np.sqrt(r1) - r0
    return a, rho, length, dr


@numba.njit(nogil=True, cache=True)
def ordered_bits(bits: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Map bf16 bit patterns to integers monotonic in value (+0 and -0 both 0), so differences
    count lattice sites moved, sign-aware and across zero."""
    flat = bits.reshape(-1)
    out = np.empty(flat.shape[0], np.int32)
    for i in range(flat.shape[0]):
        b = np.int32(flat[i])
        mag = b & 0x7FFF
        out[i] = -mag if b & 0x8000 else mag
    return out.reshape(bits.shape)


@numba.njit(nogil=True, cache=True)
def lattice_steps(bits: np.ndarray) -> tuple:  # pragma: no cover - numba
    """Per pair (t-1, t) and token: coordinates that changed, summed |sites|, max |sites| and
    summed sites^2."""
    t_n, n, d = bits.shape
    changed = np.empty((t_n - 1, n), np.int32)
    total = np.empty((t_n - 1, n), np.int64)
    biggest = np.empty((t_n - 1, n), np.int32)
    squares = np.empty((t_n - 1, n), np.float64)
    for t in range(1, t_n):
        for i in range(n):
            c = 0
            s = 0
            m = 0
            q = 0.0
            for k in range(d):
                b0 = np.int32(bits[t - 1, i, k])
                b1 = np.int32(bits[t, i, k])
                o0 = -(b0 & 0x7FFF) if b0 & 0x8000 else b0 & 0x7FFF
                o1 = -(b1 & 0x7FFF) if b1 & 0x8000 else b1 & 0x7FFF
                diff = abs(o1 - o0)
                if diff:
                    c += 1
                    s += diff
                    q += diff * diff
                    if diff > m:
                        m = diff
            changed[t - 1, i] = c
            total[t - 1, i] = s
            biggest[t - 1, i] = m
            squares[t - 1, i] = q
    return changed, total, biggest, squares


@numba.njit(nogil=True, cache=True)
def sphere_walk_frame(x: np.ndarray, c: np.ndarray, prev_x: np.ndarray, prev_step: np.ndarray, has_prev: bool,
                      has_prev_step: bool, ring: np.ndarray, row: np.ndarray, head: int, active: np.ndarray,
                      lags: np.ndarray, hist: np.ndarray, acc: np.ndarray,
                      ang_sum: np.ndarray) -> None:  # pragma: no cover - numba
    """One frame of the hypersphere walk's streaming pass, fused over tokens.

    Updates in place: ``prev_x``/``prev_step`` (centred position and step of each token), the ring
    of unit vectors of the tokens sampled for the angular decay (``row[i]``: token i's row, -1 if not
    sampled), the histogram of radial fractions, the angular sums per lag, and ``acc`` =
    [sum a, sum a^2, sum |D|^2, steps, outward, inward, sum cos, sum cos^2, cosines, sum r]."""
    n, d = x.shape
    size = ring.shape[0]
    bins = hist.shape[0]
    for i in range(n):
        r2 = 0.0
        for k in range(d):
            v = np.float64(x[i, k]) - c[k]
            r2 += v * v
        r = np.sqrt(r2)
        acc[9] += r
        inv = 1.0 / r if r > 0 else 1.0
        j = row[i]
        if j >= 0:
            for li in range(lags.shape[0]):
                if active[li]:
                    slot = (head - lags[li]) % size
                    dot = 0.0
                    for k in range(d):
                        dot += (np.float64(x[i, k]) - c[k]) * ring[slot, j, k]
                    ang_sum[li] += dot * inv
        if has_prev:
            r0sq = 0.0
            dot = 0.0
            dd = 0.0
            num = 0.0
            pp = 0.0
            for k in range(d):
                p = prev_x[i, k]
                s = (np.float64(x[i, k]) - c[k]) - p
                r0sq += p * p
                dot += s * p
                dd += s * s
                if has_prev_step:
                    num += s * prev_step[i, k]
                    pp += prev_step[i, k] * prev_step[i, k]
                prev_step[i, k] = s
            r0 = np.sqrt(r0sq)
            if r0 > 0:
                a = dot / r0
                acc[0] += a
                acc[1] += a * a
                acc[2] += dd
                acc[3] += 1
                if a > 0:
                    acc[4] += 1
                elif a < 0:
                    acc[5] += 1
                if dd > 0:
                    b = int((dot * dot) / (r0sq * dd) * bins)
                    hist[min(b, bins - 1)] += 1
            if has_prev_step:
                den = np.sqrt(dd) * np.sqrt(pp)
                if den > 0:
                    cv = num / den
                    acc[6] += cv
                    acc[7] += cv * cv
                    acc[8] += 1
        for k in range(d):
            v = np.float64(x[i, k]) - c[k]
            prev_x[i, k] = v
            if j >= 0:
                ring[head, j, k] = v * inv
