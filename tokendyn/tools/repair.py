"""``repair``: write a clean copy of a movie whose writer crashed, for tools other than tokendyn.

A movie written in SWMR mode whose writer was killed keeps HDF5's "open for write" flags, so plain
``h5py.File(path, "r")`` and ``xarray.open_dataset`` refuse it (tokendyn itself opens it). The copy
holds every complete frame, is closed cleanly and opens anywhere. The input is never modified unless
``in_place=True``, which replaces it atomically with the clean copy.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieError, MovieFormatError
from tokendyn.format.header import check_header
from tokendyn.format.layout import complete_frames, create_layout, frame_axis_names
from tokendyn.sources.base import attr_text
from tokendyn.sources.h5 import open_readonly


def repair(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    in_place: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Copy every complete frame of ``path`` into a cleanly closed movie; return its path.

    ``out`` defaults to ``<name>.repaired.h5`` beside the input. With ``in_place=True`` the input
    is replaced (atomically, through a temporary file in the same folder).
    """
    path = os.fspath(path)
    if in_place and out is not None:
        raise MovieError("give either an output path or in_place=True, not both", path)
    if out is None and not in_place:
        root, _ = os.path.splitext(path)
        out = root + ".repaired.h5"
    if out is not None and os.path.abspath(out) == os.path.abspath(path):
        raise MovieError("the output would overwrite the input; use in_place=True", path)
    src = open_readonly(path)
    try:
        check_header(src.attrs, path)
        if "W" not in src or fmt.STEP not in src:
            raise MovieFormatError("the movie has no 'W' or 'step' variable", path)
        n = complete_frames(src[fmt.STEP][...])
        target = out if out is not None else tempfile.mktemp(suffix=".h5.tmp", dir=os.path.dirname(os.path.abspath(path)))
        if out is not None and os.path.exists(out):
            raise MovieError(f"the output {out} already exists", path)
        _copy(src, os.fspath(target), n, progress)
    finally:
        src.close()
    if in_place:
        os.replace(target, path)
        return path
    return os.fspath(target)


def _copy(src: h5py.File, target: str, n: int, progress: Callable[[int, int], None] | None) -> None:
    matrices = {m: str(attr_text(src[m].attrs.get("dtype", src[m].dtype.name))) for m in fmt.MATRIX_VARIABLES if m in src}
    n_tokens, n_dims = src["W"].shape[1:]
    scalars = [name for name in frame_axis_names(src) if name not in fmt.RESERVED_NAMES]
    attrs = {k: v for k, v in src.attrs.items()}
    compression = src["W"].compression if src["W"].compression in ("gzip", "lzf") else None
    with h5py.File(target, "w-") as dst:
        create_layout(
            dst,
            n_tokens=n_tokens,
            n_dims=n_dims,
            matrices=matrices,
            scalars=scalars,
            token_class=src[fmt.TOKEN_CLASS][...] if fmt.TOKEN_CLASS in src else np.zeros(n_tokens, np.uint8),
            token_text=list(src[fmt.TOKEN_TEXT].asstr()[...]) if fmt.TOKEN_TEXT in src else None,
            token_count=src[fmt.TOKEN_COUNT][...] if fmt.TOKEN_COUNT in src else None,
            attrs=attrs,
            compression=compression,
        )
        names = frame_axis_names(dst)
        for name in names:
            dst[name].resize(n, axis=0)
        for name in names:
            if name in matrices or name == fmt.STEP:
                continue
            if name in src:
                dst[name][:] = src[name][:n]
        for name, dtype in matrices.items():
            for i in range(n):
                dst[name][i] = src[name][i]
                if fmt.NONFINITE[name] not in src:
                    dst[fmt.NONFINITE[name]][i] = fmt.count_nonfinite(src[name][i], dtype)
                if progress is not None:
                    progress(i + 1, n)
        dst[fmt.DIM_FRAME][:] = np.arange(n)
        dst[fmt.STEP][:] = src[fmt.STEP][:n]
