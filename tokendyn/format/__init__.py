"""The W-movie format v1 in code: names, attributes, dtypes and the bfloat16 bit rules.

This package is the single source of the spec (``docs/format.md`` is its prose): the names here,
the header check in :mod:`.header`, the HDF5 layout in :mod:`.layout`. Both the writer
(:mod:`tokendyn.recorder`) and the readers (:mod:`tokendyn.sources`) import it, so it depends on
numpy only and imports nothing of tokendyn's but :mod:`tokendyn.errors`. Decoding bf16 bits to
float32 (a 16-bit shift) is the readers' job: :func:`tokendyn.sources.decode.bf16_bits_to_float32`.
"""
from __future__ import annotations

import numpy as np

FORMAT_NAME = "tokendyn.wmovie"
FORMAT_VERSION = "1.0"
FORMAT_MAJOR = 1

# Dimension names; each is also the name of a dimension-scale dataset (netCDF4 convention).
DIM_FRAME = "frame"
DIM_TOKEN = "token"
DIM_DIM = "dim"

# Matrix variables stored per frame as (frame, token, dim).
MATRIX_VARIABLES = ("W", "E")
STEP = "step"
TIME = "time"
STEP_FILL = -1
TOKEN_CLASS = "token_class"
TOKEN_TEXT = "token_text"
TOKEN_COUNT = "token_count"

# Per-frame counts of non-finite entries, written by the recorder so a reader can warn about
# NaN/Inf without reading the matrices.
NONFINITE = {name: f"nonfinite_{name}" for name in MATRIX_VARIABLES}

# HDF5 dimension-scale bookkeeping and xarray's zarr dimension names: structure, not user attributes.
STRUCTURAL_ATTRS = frozenset({"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_ARRAY_DIMENSIONS",
                              "_Netcdf4Dimid", "_Netcdf4Coordinates"})

# Names a per-frame scalar may not take (they are structural).
RESERVED_NAMES = frozenset(
    {DIM_FRAME, DIM_TOKEN, DIM_DIM, STEP, TIME, TOKEN_CLASS, TOKEN_TEXT, TOKEN_COUNT,
     *MATRIX_VARIABLES, *NONFINITE.values()}
)

# Names readers give what they derive (a bfloat16 matrix's raw bits): no stored variable may take them.
READER_NAMES = frozenset(f"{name}_bits" for name in MATRIX_VARIABLES)

TOKEN_CLASSES = ("live", "dead", "phantom")
CLASS_LIVE, CLASS_DEAD, CLASS_PHANTOM = 0, 1, 2
FLAG_VALUES = np.array([CLASS_LIVE, CLASS_DEAD, CLASS_PHANTOM], dtype=np.uint8)
FLAG_MEANINGS = " ".join(TOKEN_CLASSES)

# Stored dtype of each logical dtype. bfloat16 has no portable HDF5 type: raw bits as uint16.
STORAGE_DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
}

# Defaults chosen from benchmarks/bench_recorder.py (see docs/format.md).
DEFAULT_COMPRESSION = None


def class_code(name: str) -> int:
    """Return the ``token_class`` code of a class name (``"live"``, ``"dead"``, ``"phantom"``)."""
    try:
        return TOKEN_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown token class {name!r}; expected one of {TOKEN_CLASSES}") from None


def float32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round to nearest even) and return their bit patterns.

    NaN stays NaN (quiet). Used by synthetic movies and tests; the recorder never rounds.
    """
    x = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((x >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    out = ((x + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def count_nonfinite(stored: np.ndarray, dtype: str) -> int:
    """Count NaN/Inf entries of a stored frame (bfloat16 given as its uint16 bits)."""
    if dtype == "bfloat16":
        return int(np.count_nonzero((stored & np.uint16(0x7F80)) == np.uint16(0x7F80)))
    return int(stored.size - np.count_nonzero(np.isfinite(stored)))


class BF16Bits:
    """Raw bfloat16 bit patterns (uint16) marked as bfloat16, for writing without torch or ml_dtypes.

    ``Recorder.capture(step, W=BF16Bits(bits))`` stores the bits as they are.
    """

    def __init__(self, bits: np.ndarray):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"BF16Bits needs a uint16 array, got {bits.dtype}")
        self.bits = bits
        self.shape = bits.shape
        self.dtype = "bfloat16"

