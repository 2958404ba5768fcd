"""``info`` and ``check``: describe a movie, and list every way it breaks the spec."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError, MovieVersionError
from tokendyn.format.header import check_format_name, check_header, check_version
from tokendyn.format.layout import complete_frames, frame_axis_names
from tokendyn.sources.base import attr_text
from tokendyn.sources.h5 import h5_errors, open_readonly


def _compression(dset: h5py.Dataset) -> str:
    if dset.compression is None:
        return "none"
    opts = f" {dset.compression_opts}" if dset.compression_opts is not None else ""
    return f"{dset.compression}{opts}" + (" + shuffle" if dset.shuffle else "")


def info(path: str | os.PathLike) -> dict[str, Any]:
    """Describe a movie without reading its matrices.

    Returns a dict: frames, step range, tokens per class, dims, dtype, bytes on disk and per frame,
    compression, matrices, scalars and the root attributes.
    """
    path = os.fspath(path)
    f = open_readonly(path)
    try:
        with h5_errors(path):
            return _info(f, path)
    finally:
        f.close()


def _info(f: h5py.File, path: str) -> dict[str, Any]:
    check_header(f.attrs, path)
    if "W" not in f or fmt.STEP not in f:
        raise MovieFormatError("the movie has no 'W' or 'step' variable", path)
    steps = f[fmt.STEP][...]
    n = complete_frames(steps)
    w = f["W"]
    classes = f[fmt.TOKEN_CLASS][...] if fmt.TOKEN_CLASS in f else np.zeros(w.shape[1], np.uint8)
    matrices = [m for m in fmt.MATRIX_VARIABLES if m in f]
    logical = str(attr_text(w.attrs.get("dtype", w.dtype.name)))
    frame_bytes = sum(int(np.prod(f[m].shape[1:])) * f[m].dtype.itemsize for m in matrices)
    disk = os.path.getsize(path)
    scalars = [
        name for name in frame_axis_names(f)
        if name not in fmt.RESERVED_NAMES or name == fmt.TIME
    ]
    attrs = {k: attr_text(v) for k, v in f.attrs.items() if k != "config"}
    config = attr_text(f.attrs.get("config", "{}"))
    return {
        "path": os.path.abspath(path),
        "format_version": attrs.get("format_version"),
        "frames": n,
        "incomplete_frames": int(steps.shape[0] - n),
        "steps": [int(steps[0]), int(steps[n - 1])] if n else None,
        "tokens": int(w.shape[1]),
        "dim": int(w.shape[2]),
        "tokens_per_class": {c: int(np.sum(classes == i)) for i, c in enumerate(fmt.TOKEN_CLASSES)},
        "dtype": logical,
        "matrices": matrices,
        "scalars": scalars,
        "bytes_on_disk": disk,
        "bytes_per_frame": frame_bytes,
        "disk_bytes_per_frame": disk / n if n else None,
        "compression": _compression(w),
        "chunks": list(w.chunks) if w.chunks else None,
        "swmr_open_needed": bool(getattr(f, "swmr_mode", False)),
        "attrs": attrs,
        "config": _parse_json(config, path),
    }


def _parse_json(text: Any, path: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        raise MovieFormatError("the config attribute is not valid JSON", path) from None


@dataclass
class CheckReport:
    """What :func:`check` found: ``problems`` break the spec, ``notes`` are worth knowing."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    path: str | os.PathLike,
    *,
    scan_values: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """List every violation of the W-movie spec in ``path``.

    Parameters
    ----------
    scan_values
        Also read every frame to look for NaN/Inf (streams one frame at a time).
    progress
        Called as ``progress(done, total)`` while scanning frames.
    """
    path = os.fspath(path)
    report = CheckReport(os.path.abspath(path))
    f = open_readonly(path)  # missing / non-HDF5 / corrupted files raise here
    try:
        with h5_errors(path):
            _check(f, path, report, scan_values, progress)
    finally:
        f.close()
    return report


def _check(f: h5py.File, path: str, report: CheckReport, scan_values: bool, progress: Any) -> None:
    p = report.problems.append
    try:
        check_format_name(f.attrs, path)
    except MovieFormatError as exc:  # not a W-movie at all: nothing below applies
        p(exc.problem)
        return
    try:
        check_version(f.attrs, path)
    except MovieVersionError as exc:  # a newer major version: the v1 rules below may not apply
        p(exc.problem)
        return
    except MovieFormatError as exc:  # an unreadable or unreleased version: check the rest anyway
        p(exc.problem)
    if getattr(f, "swmr_mode", False):
        report.notes.append(
            "the file was left open for writing (a live or crashed SWMR writer); plain h5py/xarray "
            "cannot open it until the writer closes or 'tokendyn repair' makes a clean copy"
        )
    for key in ("created", "software", "config"):
        if key not in f.attrs:
            p(f"root attribute {key!r} is missing")
    if "config" in f.attrs:
        try:
            json.loads(attr_text(f.attrs["config"]))
        except (TypeError, ValueError):
            p("root attribute 'config' is not valid JSON text")
    for scale in (fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM):
        if scale not in f:
            p(f"dimension-scale dataset {scale!r} is missing")
        elif not f[scale].is_scale:
            p(f"dataset {scale!r} is not an HDF5 dimension scale")
    if "W" not in f or fmt.STEP not in f:
        p("variable 'W' or 'step' is missing")
        return
    steps = f[fmt.STEP][...]
    if steps.dtype.kind not in "iu":
        p(f"'step' has dtype {steps.dtype}, expected int64")
    n = complete_frames(steps)
    trailing = steps[n:]
    if np.any(trailing != fmt.STEP_FILL):
        p(f"frame {n} has no step (fill -1) but later frames do: a hole in the movie")
    elif trailing.size:
        report.notes.append(f"{trailing.size} trailing incomplete frame(s) will be ignored by readers")
    if n == 0:
        p("the movie holds zero complete frames")
    good = steps[:n]
    if n and np.any(np.diff(good) <= 0):
        bad = int(np.flatnonzero(np.diff(good) <= 0)[0]) + 1
        p(f"steps are not strictly increasing (frame {bad}: step {good[bad]} after {good[bad - 1]})")
    if n and good[0] != 0:
        report.notes.append(f"frame 0 is step {good[0]}, not the initialization (step 0)")
    if n and good.min() < 0:
        p("negative step values")
    n_frames_axis = steps.shape[0]
    shape = None
    for name in fmt.MATRIX_VARIABLES:
        if name not in f:
            continue
        m = f[name]
        if m.ndim != 3:
            p(f"{name} must be 3-D (frame, token, dim), has shape {m.shape}")
            continue
        if shape is None:
            shape = m.shape[1:]
        elif m.shape[1:] != shape:
            p(f"{name} has shape {m.shape[1:]} per frame but W has {shape}")
        logical = attr_text(m.attrs.get("dtype", m.dtype.name))
        if logical not in fmt.STORAGE_DTYPES:
            p(f"{name} has unsupported dtype attribute {logical!r}")
        elif m.dtype != fmt.STORAGE_DTYPES[logical]:
            p(f"{name} declares dtype {logical} but is stored as {m.dtype} (expected {fmt.STORAGE_DTYPES[logical]})")
        if m.shape[0] < n_frames_axis:
            p(f"{name} has {m.shape[0]} frames but 'step' has {n_frames_axis}")
        elif m.shape[0] > n_frames_axis:
            report.notes.append(
                f"{name} has {m.shape[0] - n_frames_axis} frame(s) beyond the last step written "
                "(a live or interrupted writer); readers ignore them"
            )
        if m.maxshape[0] is not None:
            p(f"{name}'s frame axis is not unlimited")
    if shape is None:
        return
    n_tokens, n_dims = shape
    for name in frame_axis_names(f):
        if name in fmt.MATRIX_VARIABLES:
            continue
        if f[name].shape[0] != n_frames_axis:
            p(f"{name!r} has {f[name].shape[0]} frames but 'step' has {n_frames_axis}")
    if fmt.DIM_TOKEN in f and f[fmt.DIM_TOKEN].shape != (n_tokens,):
        p(f"'token' has {f[fmt.DIM_TOKEN].shape[0]} entries, W has {n_tokens} tokens")
    elif fmt.DIM_TOKEN in f and not np.array_equal(f[fmt.DIM_TOKEN][...], np.arange(n_tokens)):
        p("'token' does not hold the ids 0..V-1")
    if fmt.DIM_DIM in f and f[fmt.DIM_DIM].shape != (n_dims,):
        p(f"'dim' has {f[fmt.DIM_DIM].shape[0]} entries, W has {n_dims} dims")
    if fmt.TOKEN_CLASS not in f:
        p("'token_class' is missing")
    else:
        tc = f[fmt.TOKEN_CLASS]
        if tc.shape != (n_tokens,):
            p(f"'token_class' has shape {tc.shape}, expected ({n_tokens},)")
        elif np.any(tc[...] > fmt.CLASS_PHANTOM):
            p("'token_class' holds values other than 0 (live), 1 (dead), 2 (phantom)")
        if attr_text(tc.attrs.get("flag_meanings", "")) != fmt.FLAG_MEANINGS:
            p(f"'token_class' lacks flag_meanings = {fmt.FLAG_MEANINGS!r}")
    for name in (fmt.TOKEN_TEXT, fmt.TOKEN_COUNT):
        if name in f and f[name].shape != (n_tokens,):
            p(f"{name!r} has shape {f[name].shape}, expected ({n_tokens},)")
    if fmt.TOKEN_COUNT in f and np.any(f[fmt.TOKEN_COUNT][...] < 0):
        p("'token_count' holds negative counts")
    if scan_values and n:
        _scan_nonfinite(f, n, p, progress)


def _scan_nonfinite(f: h5py.File, n: int, problem: Callable[[str], None], progress: Any) -> None:
    for name in fmt.MATRIX_VARIABLES:
        if name not in f:
            continue
        m = f[name]
        logical = attr_text(m.attrs.get("dtype", m.dtype.name))
        if logical not in fmt.STORAGE_DTYPES or m.dtype != fmt.STORAGE_DTYPES[logical]:
            continue
        bad_frames = []
        total = 0
        block = max(1, (64 << 20) // max(1, m.dtype.itemsize * int(np.prod(m.shape[1:]))))
        for start in range(0, n, block):
            stop = min(n, start + block)
            data = m[start:stop]
            for i in range(stop - start):
                count = fmt.count_nonfinite(data[i], logical)
                if count:
                    total += count
                    bad_frames.append(start + i)
            if progress is not None:
                progress(stop, n)
        if bad_frames:
            shown = ", ".join(str(b) for b in bad_frames[:5]) + (" ..." if len(bad_frames) > 5 else "")
            problem(f"{name} holds {total} NaN/Inf entries in {len(bad_frames)} frame(s) (frames {shown})")
