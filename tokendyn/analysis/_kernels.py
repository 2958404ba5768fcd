"""Numba kernels run on one block of frames.

Kernels over stored frames get ``(block, lead, ...)``: the block's first ``lead`` frames are context
(the frames before the ones analysed), and values are decoded from bf16 bits with :func:`value`."""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# Reassociating float sums lets LLVM vectorize the reductions over a row (4x faster); results
# move by rounding only (~1e-16 relative), and NaN/Inf semantics are kept (no "nnan"/"ninf").
_FAST = {"reassoc", "contract"}


# --- kernels over stored frames (bf16 bits as uint16, or float32), decoded value by value -------

@intrinsic
def _bf16_value(typingctx, bits):  # pragma: no cover - compiled by numba
    """The float32 a bfloat16 bit pattern stands for: the bits shifted into a float32's upper
    half, reinterpreted (a register bit-cast, so loops over a row stay vectorized)."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        wide = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _prefetch(typingctx, address):  # pragma: no cover - compiled by numba
    """Ask the CPU to bring the cache line at ``address`` in (LLVM's prefetch: never faults)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        pointer = ir.PointerType(ir.IntType(8))
        i32 = ir.IntType(32)
        # llvmlite names the overload for the pointer type of its LLVM (p0i8 / p0)
        function = builder.module.declare_intrinsic(
            "llvm.prefetch", [pointer], ir.FunctionType(ir.VoidType(), [pointer, i32, i32, i32]))
        read, keep_in_all_levels, data = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
        builder.call(function, [builder.inttoptr(args[0], pointer), read, keep_in_all_levels, data])
        return context.get_dummy_value()

    return types.void(address), codegen


@intrinsic
def _wide_vectors(typingctx):  # pragma: no cover - compiled by numba
    """Let LLVM vectorize the calling kernel with 512-bit registers where the CPU has them.

    LLVM keeps to 256 bits on AVX-512 CPUs unless a function asks (``"prefer-vector-width"``); on
    the 2-core VM (Emerald Rapids) asking took 10-20% off the co-moving, hypersphere and lattice
    kernels, side by side. Elsewhere the attribute changes nothing. llvmlite only takes the
    attributes it knows by name, so this string attribute goes into the function's set as text;
    if a future llvmlite refuses it, the kernel compiles as before."""
    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except (AttributeError, TypeError):
            pass
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(inline="always")
def _prefetch_bytes(address: int, size: int) -> None:  # pragma: no cover - numba
    for offset in range(0, size, 64):
        _prefetch(address + offset)


@numba.njit(inline="always")
def prefetch_row(block: np.ndarray, i: int) -> None:  # pragma: no cover - numba
    """Prefetch row ``i`` of every frame of a block whose rows are contiguous (a loop that walks
    a token through many frames reads as many streams as frames, more than the hardware prefetcher
    follows: measured 15-30% off the co-moving pass)."""
    row_bytes = block.shape[2] * block.strides[2]
    first = block.ctypes.data + i * block.strides[1]
    for t in range(block.shape[0]):
        _prefetch_bytes(first + t * block.strides[0], row_bytes)


@numba.njit(inline="always")
def prefetch_rows(block: np.ndarray, t: int, rows: np.ndarray) -> None:  # pragma: no cover - numba
    """Prefetch the given rows of frame ``t`` of a block whose rows are contiguous (a sample)."""
    row_bytes = block.shape[2] * block.strides[2]
    frame = block.ctypes.data + t * block.strides[0]
    for j in range(rows.shape[0]):
        _prefetch_bytes(frame + rows[j] * block.strides[1], row_bytes)


def value(frame: np.ndarray, i: int, k: int) -> float:
    """Coordinate ``k`` of row ``i`` of a stored frame, as float32 (numba only; see the overload)."""
    raise NotImplementedError("value runs inside numba kernels")


@overload(value, inline="always")
def _value(frame, i, k):  # pragma: no cover - compiled by numba
    if frame.dtype == types.uint16:
        return lambda frame, i, k: _bf16_value(frame[i, k])
    return lambda frame, i, k: np.float32(frame[i, k])


@numba.njit(inline="always")
def about(frame: np.ndarray, i: int, k: int, cents: np.ndarray, t: int, origin: bool) -> float:  # pragma: no cover
    """Coordinate ``k`` of row ``i`` of a stored frame about the centre ``cents[t]``, or about the
    origin when ``origin`` (then ``cents`` is not read: LLVM takes the test out of the loops,
    ~10% off the hypersphere walk's inner loop)."""
    v = value(frame, i, k)
    return v if origin else v - cents[t, k]


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def centroid_into(frame: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Mean of the given rows of a stored frame, in float64, into ``out``."""
    _wide_vectors()
    d = frame.shape[1]
    out[:] = 0.0
    for i in rows:
        for k in range(d):
            out[k] += value(frame, i, k)
    for k in range(d):
        out[k] /= rows.shape[0]


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def block_centroids(block: np.ndarray, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Centroid of ``rows`` for every frame of a stored block: (frames, dim) float64; zeros when
    ``rows`` is empty (positions about the origin)."""
    _wide_vectors()
    m, _, d = block.shape
    out = np.zeros((m, d))
    if rows.shape[0] == 0:
        return out
    for t in range(m):
        centroid_into(block[t], rows, out[t])
    return out


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


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _lattice_token(f0: np.ndarray, f1: np.ndarray, i: int) -> tuple:  # pragma: no cover - numba
    """Between two stored bf16 frames, token ``i``: coordinates changed, summed |sites|, max
    |sites|, summed sites^2. Bits map to integers monotonic in value (+0 = -0 = 0); branch-free so
    that it vectorizes."""
    _wide_vectors()
    c = np.int32(0)
    s = np.int32(0)
    big = np.int32(0)
    q = 0.0  # exact: every sites^2 < 2^32 and their sum < 2^53 (float64 vectorizes; int64 products do not)
    for k in range(f0.shape[1]):
        b0 = np.int32(f0[i, k])
        b1 = np.int32(f1[i, k])
        s0 = b0 >> 15  # sign bit: the magnitude is negated as (m ^ -1) + 1
        s1 = b1 >> 15
        diff = abs((((b1 & 0x7FFF) ^ -s1) + s1) - (((b0 & 0x7FFF) ^ -s0) + s0))
        c += np.int32(diff != 0)
        s += diff
        fd = np.float64(diff)
        q += fd * fd
        big = max(big, diff)
    return c, s, big, q


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def lattice_tokens(block: np.ndarray, lead: int, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Per frame after the context and selected token, int32: (coordinates changed, summed
    |sites|, hop: 0 still, 1 every coordinate within one site, 2 larger) since the previous
    frame; zeros for a frame with no predecessor in the block."""
    _wide_vectors()
    m = block.shape[0]
    out = np.zeros((m - lead, rows.shape[0], 3), np.int32)
    for t in range(max(lead, 1), m):
        for j in range(rows.shape[0]):
            c, s, big, _ = _lattice_token(block[t - 1], block[t], rows[j])
            out[t - lead, j, 0] = c
            out[t - lead, j, 1] = s
            out[t - lead, j, 2] = min(big, 2)
    return out


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def lattice_stream(block: np.ndarray, lead: int, start: int, rows: np.ndarray, groups: np.ndarray,
                   n_groups: int, depth: int, keep: bool) -> tuple:  # pragma: no cover - numba
    """The streaming pass of the lattice analysis over one block.

    Returns per frame and group the sums (sites^2 / dim, moved, lattice-scale hops), per token
    the frames (positions in the selection) of its last ``depth`` moves in this block, latest
    first (-1 when fewer), with whether each was an isolated hop (one coordinate, one site), and
    with ``keep`` the per-(frame, token) array of :func:`lattice_tokens` (else an empty one)."""
    _wide_vectors()
    m, _, d = block.shape
    sums = np.zeros((m - lead, n_groups, 3))
    last = np.full((rows.shape[0], depth), -1, np.int64)
    small = np.zeros((rows.shape[0], depth), np.bool_)
    per = np.zeros((m - lead if keep else 0, rows.shape[0], 3), np.int32)
    for t in range(max(lead, 1), m):
        pos = start + t - lead
        for j in range(rows.shape[0]):
            c, s, big, q = _lattice_token(block[t - 1], block[t], rows[j])
            if keep:
                per[t - lead, j, 0] = c
                per[t - lead, j, 1] = s
                per[t - lead, j, 2] = min(big, 2)
            g = groups[j]
            sums[t - lead, g, 0] += q / d
            if c > 0:
                sums[t - lead, g, 1] += 1.0
                if big <= 1:
                    sums[t - lead, g, 2] += 1.0
                for u in range(depth - 1, 0, -1):
                    last[j, u] = last[j, u - 1]
                    small[j, u] = small[j, u - 1]
                last[j, 0] = pos
                small[j, 0] = big <= 1 and c <= 1
    return sums, last, small, per


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
    displacement (NaN for the first frame of the selection), per lag and group the sums of
    ``|y(t) - y(t - lag)|^2`` and their counts, over the pairs whose later frame is in this block,
    and with ``keep`` the per-(frame, token) array of :func:`comoving_tokens` (else an empty one)."""
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
    steps = np.full((m - lead, n), np.nan)  # NaN at the first frame of the selection
    ring = lags.max() + 1  # rows kept per token: this frame's and the last max(lags) frames'
    y = np.empty((ring, d))
    per = np.empty((m - lead if keep else 0, n, 2), np.float32)
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
                sums[li, g] += acc
                counts[li, g] += 1
                if lag == 1:
                    steps[t - lead, j] = np.sqrt(acc)
    if keep:
        per[:, :, 0] = steps
    if lags[0] == 1:
        for t in range(max(lead, 1), m):
            for g in range(n_groups):
                sel = steps[t - lead][groups == g]
                if sel.shape[0]:
                    stats[t - lead, g, 0] = sel.mean()
                    stats[t - lead, g, 1] = np.median(sel)
                    stats[t - lead, g, 2] = sel.max()
    return drift, stats, sums, counts, per


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
                for u in range(tile):
                    dot = np.float32(0.0)
                    for k in range(d):
                        dot += unit[t, u, k] * unit[t - lag, u, k]
                    total += dot
                ang_sum[li] += total
                ang_n[li] += tile


STEP_TILE = 32  # tokens whose rows walk through a block's frames together (their state: 64 KiB)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def sphere_walk_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, cents: np.ndarray, origin: bool,
                      sample_rows: np.ndarray, lags: np.ndarray, bins: int) -> tuple:  # pragma: no cover
    """The hypersphere walk's streaming pass over one block (context: ``max(2, max(lags))`` frames).

    Positions are taken about ``cents``, the centre in every frame of the block (not read when
    ``origin``: then about the origin). Returns per
    frame (rho mean, outward fraction, mean a, mean radius change; NaN for the first frame of the
    selection), the histogram of radial fractions, the sums ``acc`` = [sum a, sum a^2, sum |D|^2,
    steps, outward, inward, sum cos, sum cos^2, cosines, sum r] and, for the tokens at
    ``sample_rows``, the sums of cos(r_hat(t), r_hat(t - lag)) and their counts per lag."""
    _wide_vectors()
    m, _, d = block.shape
    n = rows.shape[0]
    hist = np.zeros(bins, np.int64)
    acc = np.zeros(10)
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
                        acc[9] += np.sqrt(r2)
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
                r1 = np.sqrt(r2)
                acc[9] += r1
                if g < 1:
                    continue
                r0 = np.sqrt(r0sq)
                dr_sum[tl] += r1 - r0
                if r0 > 0:
                    a = dot / r0
                    a_sum[tl] += a
                    a_n[tl] += 1
                    acc[0] += a
                    acc[1] += a * a
                    acc[2] += dd
                    acc[3] += 1
                    if a > 0:
                        acc[4] += 1
                        outward[tl] += 1
                    elif a < 0:
                        acc[5] += 1
                    if dd > 0:
                        rho = (dot * dot) / (r0sq * dd)
                        rho_sum[tl] += rho
                        rho_n[tl] += 1
                        hist[min(int(rho * bins), bins - 1)] += 1
                if g >= 2 and t > first + 1:  # a step before this one, in this block
                    den = np.sqrt(dd) * np.sqrt(pp)
                    if den > 0:
                        cv = num / den
                        acc[6] += cv
                        acc[7] += cv * cv
                        acc[8] += 1
    per = np.full((frames, 4), np.nan)
    for tl in range(frames):
        if start + tl >= 1:
            per[tl, 0] = rho_sum[tl] / rho_n[tl] if rho_n[tl] else np.nan
            per[tl, 1] = outward[tl] / n
            per[tl, 2] = a_sum[tl] / a_n[tl] if a_n[tl] else np.nan
            per[tl, 3] = dr_sum[tl] / n
    return per, hist, acc, ang_sum, ang_n
