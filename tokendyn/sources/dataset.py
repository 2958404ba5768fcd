"""Reading W-movies: :func:`open_movie` gives a lazy, dask-backed :class:`xarray.Dataset`.

The Dataset is built from a :class:`~tokendyn.sources.base.MovieSource` (an HDF5 file or a zarr
copy) and from nothing else, so every backend gives the same Dataset. Nothing of ``W`` is read at
open. Each dask task opens the movie itself (by path) and reads one block of frames, so a Dataset
can be pickled to dask.distributed workers: no HDF5 handle travels. ``ds.movie`` (the
:class:`MovieAccessor`) lives here too, beside :func:`refresh`, which it calls.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError
from tokendyn.format.layout import complete_frames
from tokendyn.format.structure import check_structure, token_class_problem

from . import open_source
from .base import DirectFrames, MovieSource, attr_text
from .decode import bf16_bits_to_float32

# About 16 MiB of decoded float32 per chunk: small enough that numpy reuses freed buffers
# instead of taking fresh pages from the kernel (which made 64 MiB chunks 3x slower to decode).
DEFAULT_CHUNK_BYTES = 16 * 2**20


def _frame_chunks(chunks: Any, frame_bytes: int, n_frames: int) -> int:
    if chunks is None:
        return max(1, min(n_frames, DEFAULT_CHUNK_BYTES // max(frame_bytes, 1)))
    if isinstance(chunks, Mapping):
        chunks = chunks.get(fmt.DIM_FRAME, None)
        return _frame_chunks(chunks, frame_bytes, n_frames)
    k = int(chunks)
    if k < 1:
        raise ValueError(f"chunks must be a positive number of frames, got {chunks!r}")
    return min(k, n_frames)


def _matrix(src: MovieSource, name: str, logical: str, n: int, frames_per_chunk: int,
            direct: dict[str, DirectFrames]) -> dict[str, xr.Variable]:
    """The Dataset variables of the matrix ``name`` (stored as ``logical``, its dtype checked by
    :func:`~tokendyn.format.structure.check_structure`); where the source can read its frames
    straight from the file, the record of that goes into ``direct``."""
    arr = src[name]
    shape = (n,) + tuple(arr.shape[1:])
    chunks = (frames_per_chunk, -1, -1)
    token = tokenize(src.path, name, shape, np.dtype(arr.dtype).str, chunks, src.swmr)
    raw = da.from_array(src.block(name, shape, arr.dtype), chunks=chunks, lock=False, asarray=True,
                        meta=np.empty((0, 0, 0), dtype=arr.dtype), name=f"tokendyn-{name}-{token}")
    dims = (fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM)
    out: dict[str, xr.Variable] = {}
    attrs = {"long_name": attr_text(arr.attrs.get("long_name", name)), "stored_dtype": logical}
    holder = None  # the variable whose data is ``raw`` itself
    if logical == "bfloat16":
        decoded = raw.map_blocks(bf16_bits_to_float32, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
        out[name] = xr.Variable(dims, decoded, attrs)
        holder = f"{name}_bits"
        out[holder] = xr.Variable(
            dims, raw, {"long_name": f"raw bfloat16 bit patterns of {name}", "dtype": "bfloat16"}
        )
    elif logical == "float16":
        out[name] = xr.Variable(dims, raw.astype(np.float32), attrs)
    else:
        holder = name
        out[name] = xr.Variable(dims, raw, attrs)
    record = src.direct_frames(name, shape, arr.dtype)
    if record is not None and holder is not None:
        direct[name] = dataclasses.replace(record, variable=holder, array=raw.name)
    return out


def direct_frames(ds: xr.Dataset, name: str = "W") -> DirectFrames | None:
    """Where the stored frames of the matrix ``name`` of ``ds`` can be read straight from the
    movie file, or ``None`` when they must be read through the Dataset's own arrays.

    Only a Dataset straight from :func:`open_movie` of an HDF5 movie has such a record, and it
    holds only while the variable it names still holds the very dask array open_movie built (not
    a selection, a loaded or a computed copy) and the file is still there.
    """
    record = ds.encoding.get("tokendyn", {}).get("direct", {}).get(name)
    if not isinstance(record, DirectFrames) or record.variable not in ds.variables:
        return None
    data = ds.variables[record.variable].data
    if not isinstance(data, da.Array) or data.name != record.array or tuple(data.shape) != record.shape:
        return None
    return record if os.path.isfile(record.path) else None


def open_movie(
    path: str | os.PathLike,
    *,
    chunks: int | Mapping[str, int] | None = None,
    live: bool = False,
) -> xr.Dataset:
    """Open a W-movie as a lazy :class:`xarray.Dataset`.

    Parameters
    ----------
    path
        The movie file, or a zarr copy of it (a ``.zarr`` directory written by ``tokendyn
        convert``: the same Dataset, bit for bit). It is opened read-only and never modified. A
        movie whose writer crashed (an SWMR file left with its consistency flags set) opens too.
    chunks
        Frames per dask chunk (an int or ``{"frame": k}``), also the block size of the analyses;
        default: about 16 MiB of decoded float32 per chunk (4 frames at the Duckling II size).
    live
        Read through HDF5 SWMR so a run that is still recording can be followed: call
        :func:`refresh` (or ``ds.movie.refresh()``) to pick up frames written since.

    Returns
    -------
    xarray.Dataset
        ``W`` (and ``E``) as float32 ``(frame, token, dim)`` dask arrays decoded lazily; for a
        bfloat16 movie the raw bit patterns stay reachable as ``W_bits`` (uint16, the same lazy
        selection rules), which is what lattice analyses read. Coordinates ``frame``, ``step``,
        ``token``, ``token_class`` (and ``token_text``, ``token_count``); per-frame scalars
        (``time``, ``loss``, ...) as variables; file attributes in ``attrs`` with ``config``
        parsed from JSON. Only complete frames (``step`` written) are shown.

    Raises
    ------
    tokendyn.MovieError
        Missing, non-HDF5, truncated or locked file.
    tokendyn.MovieFormatError
        An HDF5 file that is not a valid W-movie, or one with zero complete frames.
    tokendyn.MovieVersionError
        A newer major version of the format.
    """
    with open_source(path, live=live) as source:
        ds = build_dataset(source, chunks=chunks, live=live)
    release = source.release()
    if release is not None:
        ds.set_close(release)  # ds.close() (and ``with open_movie(p) as ds``) frees the cached handles
    return ds


def build_dataset(src: MovieSource, *, chunks: int | Mapping[str, int] | None = None,
                  live: bool = False) -> xr.Dataset:
    """The lazy Dataset of an open movie source (see :func:`open_movie`); the source may be closed
    once this returns: the Dataset reads through picklable block readers that open the movie
    themselves."""
    path = src.path
    direct: dict[str, DirectFrames] = {}
    with src.errors():
        shape = check_structure(src, path, src.stored_bytes)
        step_all = src[fmt.STEP][...]
        n = complete_frames(step_all)
        if n == 0:
            raise MovieFormatError("the movie holds zero complete frames", path)
        n_tokens, n_dims = shape.tokens, shape.dims
        per_chunk = _frame_chunks(chunks, n_tokens * n_dims * 4, n)
        data_vars: dict[str, xr.Variable] = {}
        for name, logical in shape.matrices.items():
            if src[name].shape[0] < n:
                raise MovieFormatError(f"{name} has {src[name].shape[0]} frames but 'step' has {n} complete ones", path)
            data_vars.update(_matrix(src, name, logical, n, per_chunk, direct))
        coords: dict[str, Any] = {
            fmt.DIM_FRAME: (fmt.DIM_FRAME, np.arange(n, dtype=np.int64)),
            fmt.STEP: (fmt.DIM_FRAME, step_all[:n].astype(np.int64), {"long_name": "optimizer step"}),
            fmt.DIM_TOKEN: (fmt.DIM_TOKEN, np.arange(n_tokens, dtype=np.int64)),
            fmt.DIM_DIM: (fmt.DIM_DIM, np.arange(n_dims, dtype=np.int64)),
        }
        classes = src[fmt.TOKEN_CLASS][...]
        problem = token_class_problem(classes)
        if problem:
            raise MovieFormatError(problem, path)
        coords[fmt.TOKEN_CLASS] = (
            fmt.DIM_TOKEN,
            classes.astype(np.uint8),
            {"flag_values": list(fmt.FLAG_VALUES), "flag_meanings": fmt.FLAG_MEANINGS},
        )
        if fmt.TOKEN_TEXT in src:
            coords[fmt.TOKEN_TEXT] = (fmt.DIM_TOKEN, src.text(fmt.TOKEN_TEXT))
        if fmt.TOKEN_COUNT in src:
            coords[fmt.TOKEN_COUNT] = (fmt.DIM_TOKEN, src[fmt.TOKEN_COUNT][...].astype(np.int64))
        nonfinite = 0
        for key in src.frame_series():
            obj = src[key]
            if key in fmt.NONFINITE.values():
                nonfinite += int(np.clip(obj[:n], 0, None).sum())
            elif (key == fmt.TIME or key not in fmt.RESERVED_NAMES and key not in data_vars) \
                    and obj.ndim == 1 and obj.shape[0] >= n:
                attrs = {k: attr_text(v) for k, v in obj.attrs.items() if k not in fmt.STRUCTURAL_ATTRS}
                data_vars[key] = xr.Variable((fmt.DIM_FRAME,), obj[:n], attrs)
        attrs = dict(src.attrs)
        if "config" in attrs:
            try:
                attrs["config"] = json.loads(attrs["config"])
            except (TypeError, ValueError):
                raise MovieFormatError("the config attribute is not valid JSON", path) from None
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds.encoding["source"] = path
    ds.encoding["tokendyn"] = {"chunks": chunks, "live": live, "swmr": src.swmr, "direct": direct}
    if nonfinite:
        warnings.warn(f"{path}: the movie holds {nonfinite} NaN/Inf matrix entries", RuntimeWarning, stacklevel=3)
    return ds


def refresh(ds: xr.Dataset) -> xr.Dataset:
    """Re-open a movie opened by :func:`open_movie`, picking up frames written since."""
    source = ds.encoding.get("source")
    if source is None:
        raise MovieFormatError("this Dataset was not opened by tokendyn.open_movie; cannot refresh")
    opts = ds.encoding.get("tokendyn", {})
    return open_movie(source, chunks=opts.get("chunks"), live=opts.get("live", False))


@xr.register_dataset_accessor("movie")
class MovieAccessor:
    """Movie-level helpers on Datasets opened by :func:`open_movie`: ``ds.movie.path`` and
    ``ds.movie.refresh()``."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    @property
    def path(self) -> str | None:
        """The file the Dataset was opened from."""
        return self._ds.encoding.get("source")

    def refresh(self) -> xr.Dataset:
        """Re-open the movie, picking up frames written since it was opened (live reading)."""
        return refresh(self._ds)
