"""The one pattern every analysis follows.

1. :func:`select` cuts the movie to a token selection (a class name, ids, or a boolean mask) and a
   frame range, still lazily.
2. Numba kernels run on blocks of stored frames (:mod:`tokendyn.analysis._frames`): ``stream``
   runs one pass now (per-block results, reduced where each block is read), ``lazy`` builds a
   dask array computed when asked; a block carries the frames before it that a kernel needs.
3. The result is an :class:`xarray.Dataset` with named dims and ``units``/``long_name`` on every
   variable; per-frame, per-token and overall summaries are computed in one streaming pass with
   memory independent of the number of frames; per-(frame, token) results come from the same pass
   when they fit :data:`~tokendyn.analysis._frames.IN_MEMORY_BYTES`, else stay lazy (read again
   when computed).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError

TokenSelection = Any  # "all" | class name | sequence of ids | boolean mask


def token_mask(ds: xr.Dataset, tokens: TokenSelection = "all") -> np.ndarray:
    """Boolean mask over the Dataset's tokens for a selection."""
    n = ds.sizes[fmt.DIM_TOKEN]
    if tokens is None or (isinstance(tokens, str) and tokens == "all"):
        return np.ones(n, bool)
    if isinstance(tokens, str):
        if tokens not in fmt.TOKEN_CLASSES:
            raise AnalysisError(f"unknown token class {tokens!r}; use all, live, dead, phantom, ids or a mask")
        return ds[fmt.TOKEN_CLASS].values == fmt.class_code(tokens)
    arr = np.asarray(tokens)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise AnalysisError(f"a token mask needs {n} entries, got {arr.shape}")
        return arr
    ids = ds[fmt.DIM_TOKEN].values
    mask = np.isin(ids, arr.astype(np.int64))
    missing = np.setdiff1d(arr, ids)
    if missing.size:
        raise AnalysisError(f"token ids not in the movie: {missing[:5].tolist()}")
    return mask


def select(ds: xr.Dataset, tokens: TokenSelection = "all", frames: slice | tuple | None = None,
           min_tokens: int = 1, min_frames: int = 1) -> xr.Dataset:
    """The movie cut to a token selection and a frame range (``slice`` or ``(start, stop)``)."""
    return _select(ds, token_mask(ds, tokens), tokens, frames, min_tokens, min_frames)


def _select(ds: xr.Dataset, mask: np.ndarray, tokens: TokenSelection, frames: slice | tuple | None,
            min_tokens: int, min_frames: int) -> xr.Dataset:
    if "W" not in ds:
        raise AnalysisError("the Dataset has no W; open it with tokendyn.open_movie")
    if mask.sum() < min_tokens:
        raise AnalysisError(f"the selection {tokens!r} holds {int(mask.sum())} tokens; this analysis needs {min_tokens}")
    sub = ds.isel({fmt.DIM_TOKEN: np.flatnonzero(mask)})
    if frames is not None:
        if isinstance(frames, tuple):
            frames = slice(*frames)
        sub = sub.isel({fmt.DIM_FRAME: frames})
    if sub.sizes[fmt.DIM_FRAME] < min_frames:
        raise AnalysisError(f"the frame range holds {sub.sizes[fmt.DIM_FRAME]} frames; this analysis needs {min_frames}")
    return sub


def selection(ds: xr.Dataset, tokens: TokenSelection = "all", frames: slice | tuple | None = None,
              min_tokens: int = 1, min_frames: int = 1) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """:func:`select`, plus the positions of the selected tokens and frames in ``ds`` (what the
    kernels index the stored frames with)."""
    from ._frames import frame_positions

    mask = token_mask(ds, tokens)
    sub = _select(ds, mask, tokens, frames, min_tokens, min_frames)
    return sub, np.flatnonzero(mask).astype(np.int64), frame_positions(ds, frames)


def class_groups(classes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per token the index of its class among the classes present, and those classes' names."""
    present = [code for code in range(len(fmt.TOKEN_CLASSES)) if (classes == code).any()]
    lookup = np.full(len(fmt.TOKEN_CLASSES), -1, np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[classes.astype(np.int64)], [fmt.TOKEN_CLASSES[c] for c in present]


def annotate(var: xr.DataArray, long_name: str, units: str) -> xr.DataArray:
    var.attrs.update(long_name=long_name, units=units)
    return var


def frame_coords(sub: xr.Dataset) -> dict[str, Any]:
    return {fmt.DIM_FRAME: sub[fmt.DIM_FRAME].values, fmt.STEP: (fmt.DIM_FRAME, sub[fmt.STEP].values)}
