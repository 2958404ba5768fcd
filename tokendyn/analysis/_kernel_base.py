"""What every numba kernel over stored frames shares: decoding, prefetching, centroids.

Kernels read a block of stored frames (bfloat16 bit patterns as ``uint16``, or float32) and decode
value by value with :func:`value` (a register bit-cast: a frame is never decoded into a fresh float
array). The kernels of each analysis sit beside it (``_comoving_kernels.py`` beside
``comoving.py``, ...) and import what they share from here.

numba's on-disk cache (``cache=True``) checks only the file a kernel is defined in: after changing
this module, delete the cached kernels of the others (``find tokendyn -name '*.nbi' -delete``).
"""
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
