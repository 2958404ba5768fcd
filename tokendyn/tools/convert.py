"""Zarr copies of W-movies, for object storage: ``tokendyn convert movie.h5 movie.zarr`` and back.

The zarr copy (zarr format 2, readable by xarray and any zarr 2/3 reader) holds the same arrays in
their stored dtypes (bf16 as its uint16 bits), one chunk per frame for the matrices, the same
attributes, and xarray's ``_ARRAY_DIMENSIONS`` names. :func:`tokendyn.open_movie` opens either and
gives the same Dataset, bit for bit. Writing is this module's job; reading is the zarr source's
(:mod:`tokendyn.sources.zarr`).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError, TokendynError
from tokendyn.format.layout import complete_frames
from tokendyn.format.structure import check_structure, fits_in, token_class_problem
from tokendyn.sources.base import attr_text
from tokendyn.sources.h5 import H5Source
from tokendyn.sources.zarr import FRAME_SERIES_ATTR, ZarrSource, import_zarr

_TOKEN_AXIS = (fmt.DIM_TOKEN, fmt.TOKEN_CLASS, fmt.TOKEN_TEXT, fmt.TOKEN_COUNT)


def _dims(name: str, ndim: int, frame_series: list[str]) -> list[str]:
    if name in fmt.MATRIX_VARIABLES:
        return [fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM]
    if name in frame_series:
        return [fmt.DIM_FRAME][:ndim]
    if name in _TOKEN_AXIS:
        return [fmt.DIM_TOKEN]
    if name == fmt.DIM_DIM:
        return [fmt.DIM_DIM]
    return [f"{name}_{i}" for i in range(ndim)]


def _matrix_codec(logical: str) -> dict[str, Any]:
    """How a matrix is stored in the copy: bf16 widened to the float32 values it stands for (exact,
    so plain zarr/xarray read the right numbers), byte-shuffled and zstd-compressed so the zero
    low halves cost almost nothing; other dtypes as they are, uncompressed (fast to read)."""
    if logical != "bfloat16":
        return {"dtype_of": lambda stored: stored, "compressors": None}
    from numcodecs import Blosc

    return {"dtype_of": lambda stored: np.dtype("<f4"),
            "compressors": Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)}


def _widen_bf16(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype="<u2").astype("<u4") << np.uint32(16)).view("<f4")


def to_zarr(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None, frames_per_copy: int = 64) -> str:
    """Copy the complete frames of the HDF5 movie ``src`` into a zarr group at ``dst``.

    The copy reads the same in plain ``xarray.open_zarr`` as in :func:`tokendyn.open_movie`: no
    fill value is declared (so nothing is masked as missing), every chunk is written (so a missing
    one is detected), and a bfloat16 matrix is stored as its float32 values with ``dtype``
    ``"bfloat16"`` kept as an attribute (tokendyn reads the bits back exactly).
    """
    zarr = import_zarr()
    src, dst = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(dst))
    if os.path.exists(dst):
        if not overwrite:
            raise TokendynError("the output exists; pass overwrite (--overwrite)", dst)
        shutil.rmtree(dst) if os.path.isdir(dst) else os.remove(dst)
    with H5Source(src) as source, source.errors():
        f = source.file
        shape = check_structure(source, src, source.stored_bytes)
        if fmt.TOKEN_CLASS in f:  # a reader refuses codes other than 0, 1, 2: so does the copy
            problem = token_class_problem(f[fmt.TOKEN_CLASS][...])
            if problem:
                raise MovieFormatError(problem, src)
        n = complete_frames(f[fmt.STEP][...])
        series = source.frame_series()
        for name, dset in f.items():
            if not isinstance(dset, h5py.Dataset):
                raise MovieFormatError(f"{name!r} is a group: a movie holds arrays only", src)
            if name not in shape.matrices and not fits_in(dset.size * dset.dtype.itemsize, source.stored_bytes):
                raise MovieFormatError(f"{name!r} declares shape {dset.shape}, more than the file can hold", src)
        group = zarr.open_group(dst, mode="w", zarr_format=2)
        group.attrs.update(source.attrs)
        group.attrs[FRAME_SERIES_ATTR] = series
        total = n * len(shape.matrices)
        done = 0
        every_chunk = {"write_empty_chunks": True}
        # h5py holds its global lock while f.items() is being iterated; zarr writes on its own thread,
        # where a garbage collection may finalize an h5py object and wait for that lock: a deadlock
        # (as in hdmf-dev/hdmf-zarr#362). So the variables are listed first, and no zarr call runs
        # inside an h5py iteration.
        for name, dset in [(name, f[name]) for name in list(f.keys())]:
            data_shape = (n,) + dset.shape[1:] if name in series or name in fmt.MATRIX_VARIABLES else dset.shape
            if dset.dtype.kind in ("O", "S") or h5_is_text(dset):
                values = np.asarray(source.text(name), dtype=str)
                arr = group.create_array(name, shape=values.shape, dtype=values.dtype if values.size else "<U1",
                                         fill_value=None, config=every_chunk)
                if values.size:
                    arr[...] = values
            elif name in shape.matrices:
                codec = _matrix_codec(shape.matrices[name])
                arr = group.create_array(name, shape=data_shape, dtype=codec["dtype_of"](dset.dtype),
                                         chunks=(1,) + dset.shape[1:], compressors=codec["compressors"],
                                         fill_value=None, config=every_chunk)
                for start in range(0, n, frames_per_copy):
                    stop = min(n, start + frames_per_copy)
                    block = dset[start:stop]
                    arr[start:stop] = _widen_bf16(block) if shape.matrices[name] == "bfloat16" else block
                    done += stop - start
                    if progress:
                        progress(done, total)
            else:
                arr = group.create_array(name, shape=data_shape, dtype=dset.dtype, fill_value=None, config=every_chunk)
                if np.prod(data_shape):
                    arr[...] = dset[: data_shape[0]] if dset.ndim else dset[()]
            attrs = {k: attr_text(v) for k, v in dset.attrs.items() if k not in fmt.STRUCTURAL_ATTRS}
            attrs["_ARRAY_DIMENSIONS"] = _dims(name, len(data_shape), series)
            arr.attrs.update(json.loads(json.dumps(attrs, default=_jsonable)))
    return dst


def h5_is_text(dset: Any) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def from_zarr(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
              progress: Callable[[int, int], None] | None = None) -> str:
    """Write the zarr movie ``src`` back as an HDF5 movie at ``dst`` (through the recorder, so the
    result is a standard movie that ``tokendyn check`` passes); frames, steps, times, scalars,
    token metadata and the run's attributes are copied bit for bit."""
    from tokendyn.format import BF16Bits
    from tokendyn.recorder import Recorder

    src, dst = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(dst))
    s = ZarrSource(src)
    shape = check_structure(s, src, s.stored_bytes)
    n = complete_frames(s[fmt.STEP][...])
    steps = s[fmt.STEP][:n]
    times = s[fmt.TIME][:n] if fmt.TIME in s else None
    skip = fmt.RESERVED_NAMES
    scalars = [k for k in s.frame_series() if k not in skip]
    config = s.attrs.get("config")
    matrices, logical = list(shape.matrices), shape.matrices
    classes = s[fmt.TOKEN_CLASS][...]
    problem = token_class_problem(classes)
    if problem:
        raise MovieFormatError(problem, src)
    rec = Recorder(dst, token_class=classes,
                   token_text=list(s.text(fmt.TOKEN_TEXT)) if fmt.TOKEN_TEXT in s else None,
                   token_count=s[fmt.TOKEN_COUNT][...] if fmt.TOKEN_COUNT in s else None,
                   config=json.loads(config) if isinstance(config, str) else config,
                   title=s.attrs.get("title"), seed=s.attrs.get("seed"), scalars=scalars, overwrite=overwrite,
                   flush_every=64)
    series = {k: s[k][:n] for k in scalars}
    try:
        for i in range(n):
            frame = {}
            for m in matrices:
                raw = np.asarray(s[m][i])
                frame[m] = BF16Bits(raw) if logical[m] == "bfloat16" else raw.view(logical[m])
            rec.capture(int(steps[i]), time=None if times is None else float(times[i]),
                        **frame, **{k: v[i] for k, v in series.items()})
            if progress:
                progress(i + 1, n)
    finally:
        rec.close()
    _copy_extra_attrs(dst, s.attrs)
    return dst


def _copy_extra_attrs(dst: str, attrs: dict) -> None:
    """Attributes the recorder does not set itself (a user's own, ``created``) come back too."""
    with h5py.File(dst, "r+") as f:
        for key, value in attrs.items():
            if key not in ("format", "format_version", "software", "config"):
                f.attrs[key] = value if not isinstance(value, (dict, list)) else json.dumps(value)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None) -> str:
    """HDF5 movie -> zarr copy, or zarr copy (a folder) -> HDF5 movie, by the kind of ``src``."""
    if os.path.isdir(src):
        return from_zarr(src, dst, overwrite=overwrite, progress=progress)
    if not os.fspath(dst).rstrip("/").endswith(".zarr"):
        raise TokendynError("the output of a conversion from HDF5 must be a .zarr directory", dst)
    return to_zarr(src, dst, overwrite=overwrite, progress=progress)
