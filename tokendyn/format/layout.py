"""Creating and growing the HDF5 layout of a W-movie (the spec is in :mod:`tokendyn.format`)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt

SCALAR_CHUNK = 1024


def _scale(f: h5py.File, name: str, data: np.ndarray | None = None) -> h5py.Dataset:
    if data is None:
        ds = f.create_dataset(name, shape=(0,), maxshape=(None,), dtype="i8", chunks=(SCALAR_CHUNK,))
    else:
        ds = f.create_dataset(name, data=data.astype("i8"))
    ds.make_scale(name)
    return ds


def _frame_series(f: h5py.File, name: str, dtype: str, fill: Any, frame: h5py.Dataset) -> h5py.Dataset:
    ds = f.create_dataset(
        name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(SCALAR_CHUNK,), fillvalue=fill
    )
    ds.dims[0].attach_scale(frame)
    return ds


def _preallocated() -> Any:
    """Dataset creation properties: chunk space allocated when the dataset grows, never filled."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def create_layout(
    f: h5py.File,
    *,
    n_tokens: int,
    n_dims: int,
    matrices: Mapping[str, str],
    scalars: Iterable[str],
    token_class: np.ndarray,
    token_text: list[str] | None,
    token_count: np.ndarray | None,
    attrs: Mapping[str, Any],
    compression: str | None,
    preallocate: bool = False,
) -> None:
    """Write the root attributes, the dimension scales and every (empty) variable of a movie.

    With ``preallocate`` (uncompressed only), the matrices' chunks get their file space as soon
    as the frame axis grows, and are never filled by HDF5: the recorder then writes frames
    straight to that space (:mod:`recorder._direct`)."""
    for key, value in attrs.items():
        if value is not None:
            f.attrs[key] = value
    frame = _scale(f, fmt.DIM_FRAME)
    token = _scale(f, fmt.DIM_TOKEN, np.arange(n_tokens))
    dim = _scale(f, fmt.DIM_DIM, np.arange(n_dims))
    step = _frame_series(f, fmt.STEP, "i8", fmt.STEP_FILL, frame)
    step.attrs["long_name"] = "optimizer steps taken when the frame was captured"
    time = _frame_series(f, fmt.TIME, "f8", np.nan, frame)
    time.attrs["units"] = "s"
    time.attrs["long_name"] = "wall-clock seconds since the run started"
    for name in scalars:
        _frame_series(f, name, "f8", np.nan, frame)
    filters: dict[str, Any] = {}
    if compression == "gzip":
        filters = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    elif compression == "lzf":
        filters = {"compression": "lzf", "shuffle": True}
    elif compression is not None:
        raise ValueError(f"unknown compression {compression!r}; use None, 'gzip' or 'lzf'")
    for name, dtype in matrices.items():
        ds = f.create_dataset(
            name,
            shape=(0, n_tokens, n_dims),
            maxshape=(None, n_tokens, n_dims),
            dtype=fmt.STORAGE_DTYPES[dtype],
            chunks=(1, n_tokens, n_dims),
            **(filters or ({"dcpl": _preallocated()} if preallocate else {})),
        )
        ds.attrs["dtype"] = dtype
        ds.attrs["long_name"] = "embedding matrix" if name == "W" else "unembedding matrix"
        for axis, scale in enumerate((frame, token, dim)):
            ds.dims[axis].attach_scale(scale)
        nf = _frame_series(f, fmt.NONFINITE[name], "i8", -1, frame)
        nf.attrs["long_name"] = f"number of NaN/Inf entries in {name}"
    tc = f.create_dataset(fmt.TOKEN_CLASS, data=np.asarray(token_class, dtype="u1"))
    tc.attrs["flag_values"] = fmt.FLAG_VALUES
    tc.attrs["flag_meanings"] = fmt.FLAG_MEANINGS
    tc.attrs["long_name"] = "token class"
    tc.dims[0].attach_scale(token)
    if token_text is not None:
        tt = f.create_dataset(
            fmt.TOKEN_TEXT, data=np.array(token_text, dtype=object), dtype=h5py.string_dtype("utf-8")
        )
        tt.dims[0].attach_scale(token)
    if token_count is not None:
        cnt = f.create_dataset(fmt.TOKEN_COUNT, data=np.asarray(token_count, dtype="i8"))
        cnt.attrs["long_name"] = "occurrences in the training data"
        cnt.dims[0].attach_scale(token)


def frame_axis_names(f: h5py.File) -> list[str]:
    """Names of every dataset whose first axis is the ``frame`` dimension (the scale included)."""
    frame = f[fmt.DIM_FRAME]
    names = [fmt.DIM_FRAME]
    for name, obj in f.items():
        if name == fmt.DIM_FRAME or not isinstance(obj, h5py.Dataset) or obj.ndim == 0 or obj.is_scale:
            continue
        try:
            attached = h5py.h5ds.is_attached(obj.id, frame.id, 0)
        except RuntimeError:
            attached = False
        if attached:
            names.append(name)
    return names


def complete_frames(step: np.ndarray) -> int:
    """Number of leading frames whose ``step`` was written (the writer writes ``step`` last)."""
    step = np.asarray(step)
    incomplete = np.flatnonzero(step == fmt.STEP_FILL)
    return int(incomplete[0]) if incomplete.size else int(step.shape[0])


def config_json(config: Any) -> str:
    """Serialise a config (dict, dataclass or JSON text) to JSON text for the ``config`` attribute."""
    if config is None:
        return "{}"
    if isinstance(config, str):
        json.loads(config)  # must already be JSON
        return config
    if hasattr(config, "__dataclass_fields__"):
        import dataclasses

        config = dataclasses.asdict(config)
    return json.dumps(config, sort_keys=True, default=str)
