"""Reading W-movies: :func:`open_movie` gives a lazy, dask-backed :class:`xarray.Dataset`.

Nothing of ``W`` is read at open. Each dask task opens the file itself (by path) and reads one block
of frames, so a Dataset can be pickled to dask.distributed workers: no HDF5 handle travels.
"""
from __future__ import annotations

import atexit
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError
from tokendyn.format.layout import complete_frames, frame_axis_names
from tokendyn.sources._decode import decode_bf16_block
from tokendyn.sources.h5 import attr_text, h5_errors, movie_file, open_readonly

from . import accessor as _accessor  # noqa: F401  (registers ds.movie)

# About 16 MiB of decoded float32 per chunk: small enough that numpy reuses freed buffers
# instead of taking fresh pages from the kernel (which made 64 MiB chunks 3x slower to decode).
DEFAULT_CHUNK_BYTES = 16 * 2**20

_HANDLES: OrderedDict[tuple[str, bool, int], tuple[tuple[int, ...], Any]] = OrderedDict()
_HANDLES_LOCK = threading.Lock()
_MAX_HANDLES = 16


def _handle(path: str, swmr: bool) -> Any:
    """A read-only h5py File for ``path``, cached per process and reopened when the file changes.

    The cache key holds the process id, so a forked worker never reuses its parent's handle. A
    plain handle is reopened when the file's inode, size or mtime change; an SWMR handle is kept
    (its datasets are refreshed on each read instead, as reopening in one process shows stale data).
    """
    st = os.stat(path)
    signature = (st.st_ino,) if swmr else (st.st_ino, st.st_size, st.st_mtime_ns)
    key = (path, swmr, os.getpid())
    with _HANDLES_LOCK:
        entry = _HANDLES.get(key)
        if entry is not None and entry[0] == signature and entry[1].id.valid:
            _HANDLES.move_to_end(key)
            return entry[1]
        if entry is not None:
            _close_quietly(entry[1])
        f = open_readonly(path, swmr=True if swmr else None)
        _HANDLES[key] = (signature, f)
        while len(_HANDLES) > _MAX_HANDLES:
            _close_quietly(_HANDLES.popitem(last=False)[1][1])
        return f


_DATASETS: dict[tuple[int, str], Any] = {}


def _dataset(path: str, swmr: bool, name: str) -> Any:
    """A dataset of a cached read handle, kept open: opening it for every read made HDF5 drop and
    re-read its chunk index each time (2.3 s instead of 1.0 s to read 2,000 Duckling II frames)."""
    f = _handle(path, swmr)
    key = (id(f), name)
    with _HANDLES_LOCK:
        dset = _DATASETS.get(key)
        if dset is None or not dset.id.valid:
            dset = _DATASETS[key] = f[name]
        return dset


def fresh_dataset(path: str, swmr: bool, name: str) -> Any:
    """:func:`_dataset`, refreshed first when the movie is read while being written (SWMR).
    Call it under :func:`tokendyn.sources.h5.h5_errors`."""
    dset = _dataset(path, swmr, name)
    if swmr:
        dset.refresh()
    return dset


def _close_quietly(f: Any) -> None:
    for key in [k for k in _DATASETS if k[0] == id(f)]:
        del _DATASETS[key]
    try:
        f.close()
    except Exception:  # noqa: BLE001 - closing a cached read handle must never fail a read
        pass


def forget_handles(path: str) -> None:
    """Close the cached read handles of ``path``: HDF5 shares one open file per process, so a
    handle left open would make a fresh open see stale metadata."""
    with _HANDLES_LOCK:
        for key in [k for k in _HANDLES if k[0] == path]:
            _close_quietly(_HANDLES.pop(key)[1])


@atexit.register
def close_cached_handles() -> None:
    """Close every cached read handle (also useful before deleting or rewriting a movie)."""
    with _HANDLES_LOCK:
        for _, f in _HANDLES.values():
            _close_quietly(f)
        _HANDLES.clear()


class H5Block:
    """A picklable, lazily opened view of one movie variable for :func:`dask.array.from_array`.

    Reads go through a per-process cache of read-only handles, so a dataset built on it travels
    to other processes (dask.distributed workers) as a path and a name, never as an HDF5 handle.
    """

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype: np.dtype, swmr: bool):
        self.path = path
        self.name = name
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.swmr = swmr

    def __getitem__(self, key: Any) -> np.ndarray:
        with h5_errors(self.path):
            return np.asarray(fresh_dataset(self.path, self.swmr, self.name)[key])

    def __repr__(self) -> str:
        return f"H5Block({self.path!r}, {self.name!r}, shape={self.shape})"


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


def _matrix(path: str, src: Any, name: str, n: int, frames_per_chunk: int) -> dict[str, xr.Variable]:
    arr = src[name]
    logical = attr_text(arr.attrs.get("dtype", arr.dtype.name))
    if logical not in fmt.STORAGE_DTYPES:
        raise MovieFormatError(f"{name} has unsupported dtype {logical!r}", path)
    shape = (n,) + tuple(arr.shape[1:])
    source = src.block(name, shape, arr.dtype)
    raw = da.from_array(source, chunks=(frames_per_chunk, -1, -1), lock=False, asarray=True,
                        meta=np.empty((0, 0, 0), dtype=arr.dtype), name=f"tokendyn-{name}-{path}-{n}")
    dims = (fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM)
    out: dict[str, xr.Variable] = {}
    attrs = {"long_name": attr_text(arr.attrs.get("long_name", name)), "stored_dtype": logical}
    if logical == "bfloat16":
        decoded = raw.map_blocks(decode_bf16_block, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
        out[name] = xr.Variable(dims, decoded, attrs)
        out[f"{name}_bits"] = xr.Variable(
            dims, raw, {"long_name": f"raw bfloat16 bit patterns of {name}", "dtype": "bfloat16"}
        )
    elif logical == "float16":
        out[name] = xr.Variable(dims, raw.astype(np.float32), attrs)
    else:
        out[name] = xr.Variable(dims, raw, attrs)
    return out


class _H5Source:
    """The HDF5 backend of :func:`open_movie`: an open read-only file."""

    def __init__(self, path: str, f: Any, swmr: bool):
        self.path, self.f, self.swmr = path, f, swmr
        self.attrs = f.attrs

    def __contains__(self, name: str) -> bool:
        return name in self.f

    def __getitem__(self, name: str) -> Any:
        return self.f[name]

    def text(self, name: str) -> np.ndarray:
        return np.asarray(self.f[name].asstr()[...], dtype=object)

    def frame_series(self) -> list[str]:
        return frame_axis_names(self.f) if fmt.DIM_FRAME in self.f else []

    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        return H5Block(self.path, name, shape, dtype, self.swmr)


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
    path = os.path.abspath(os.fspath(path))
    if is_zarr_movie(path):
        from tokendyn.sources.zarr import ZarrSource

        return _build_dataset(path, ZarrSource(path), chunks, live, swmr=False)
    forget_handles(path)
    with movie_file(path, swmr=True if live else None) as f:
        swmr = live or bool(getattr(f, "swmr_mode", False))
        return _build_dataset(path, _H5Source(path, f, swmr), chunks, live, swmr)


def is_zarr_movie(path: str | os.PathLike) -> bool:
    """A zarr copy of a movie (``tokendyn convert``) is a directory; an HDF5 movie a file."""
    path = os.fspath(path)
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, ".zgroup"))
                                    or os.path.exists(os.path.join(path, "zarr.json")))


def _build_dataset(path: str, src: Any, chunks: Any, live: bool, swmr: bool = False) -> xr.Dataset:
    """The Dataset of a movie, from either backend (HDF5 file or zarr group)."""
    with h5_errors(path):
        for required in (fmt.STEP, "W", fmt.TOKEN_CLASS):
            if required not in src:
                raise MovieFormatError(f"the movie has no {required!r} variable", path)
        step_all = src[fmt.STEP][...]
        n = complete_frames(step_all)
        if n == 0:
            raise MovieFormatError("the movie holds zero complete frames", path)
        w = src["W"]
        if w.ndim != 3 or w.shape[0] < n:
            raise MovieFormatError(f"W has shape {w.shape}; expected ({n}, token, dim) or more frames", path)
        n_tokens, n_dims = w.shape[1], w.shape[2]
        per_chunk = _frame_chunks(chunks, n_tokens * n_dims * 4, n)
        data_vars: dict[str, xr.Variable] = {}
        for name in fmt.MATRIX_VARIABLES:
            if name in src:
                if src[name].shape[1:] != (n_tokens, n_dims):
                    raise MovieFormatError(f"{name} has shape {src[name].shape[1:]} but W has {(n_tokens, n_dims)}", path)
                data_vars.update(_matrix(path, src, name, n, per_chunk))
        coords: dict[str, Any] = {
            fmt.DIM_FRAME: (fmt.DIM_FRAME, np.arange(n, dtype=np.int64)),
            fmt.STEP: (fmt.DIM_FRAME, step_all[:n].astype(np.int64), {"long_name": "optimizer step"}),
            fmt.DIM_TOKEN: (fmt.DIM_TOKEN, np.arange(n_tokens, dtype=np.int64)),
            fmt.DIM_DIM: (fmt.DIM_DIM, np.arange(n_dims, dtype=np.int64)),
        }
        tc = src[fmt.TOKEN_CLASS]
        coords[fmt.TOKEN_CLASS] = (
            fmt.DIM_TOKEN,
            tc[...].astype(np.uint8),
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
        attrs = {k: attr_text(v) for k, v in src.attrs.items()}
        if "config" in attrs:
            try:
                attrs["config"] = json.loads(attrs["config"])
            except (TypeError, ValueError):
                raise MovieFormatError("the config attribute is not valid JSON", path) from None
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds.encoding["source"] = path
    ds.encoding["tokendyn"] = {"chunks": chunks, "live": live, "swmr": swmr}
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
