"""``info`` and ``check``: describe a movie, and list every way it breaks the spec.

Both take an HDF5 movie or its zarr copy (through :func:`tokendyn.sources.open_source`) and hold it
to the structural rules of :mod:`tokendyn.format.structure`, the ones ``open_movie`` refuses on:
``info`` raises at the first, ``check`` lists every one, and more of the spec besides.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError, MovieVersionError
from tokendyn.format.containment import RULE
from tokendyn.format.header import check_format_name, check_version
from tokendyn.format.layout import complete_frames
from tokendyn.format.structure import MovieShape, check_structure, decode_token_text, structure_problems, token_class_problem
from tokendyn.sources import open_source
from tokendyn.sources.base import MovieSource, attr_text


def info(path: str | os.PathLike) -> dict[str, Any]:
    """Describe a movie (an HDF5 file or a zarr copy) without reading its matrices.

    Returns a dict: frames, step range, tokens per class, dims, dtype, bytes on disk and per frame,
    compression, matrices, scalars and the root attributes.
    """
    path = os.fspath(path)
    with open_source(path) as src, src.errors():
        return _info(src, path)


def _info(src: MovieSource, path: str) -> dict[str, Any]:
    shape = check_structure(src, path, src.stored_bytes)
    steps = src[fmt.STEP][...]
    n = complete_frames(steps)
    classes = src[fmt.TOKEN_CLASS][...]
    problem = token_class_problem(classes)
    if problem:
        raise MovieFormatError(problem, path)
    if fmt.TOKEN_TEXT in src:
        src.text(fmt.TOKEN_TEXT)  # invalid UTF-8 is an error here as in open_movie
    frame_bytes = sum(shape.tokens * shape.dims * fmt.STORAGE_DTYPES[d].itemsize for d in shape.matrices.values())
    disk = src.stored_bytes
    scalars = [name for name in src.frame_series() if name not in fmt.RESERVED_NAMES or name == fmt.TIME]
    attrs = {k: v for k, v in src.attrs.items() if k != "config"}
    storage = src.storage("W")
    return {
        "path": os.path.abspath(path),
        "format_version": attrs.get("format_version"),
        "frames": n,
        "incomplete_frames": int(steps.shape[0] - n),
        "steps": [int(steps[0]), int(steps[n - 1])] if n else None,
        "tokens": shape.tokens,
        "dim": shape.dims,
        "tokens_per_class": {c: int(np.sum(classes == i)) for i, c in enumerate(fmt.TOKEN_CLASSES)},
        "dtype": shape.matrices["W"],
        "matrices": list(shape.matrices),
        "scalars": scalars,
        "bytes_on_disk": disk,
        "bytes_per_frame": frame_bytes,
        "disk_bytes_per_frame": disk / n if n else None,
        "compression": storage["compression"],
        "chunks": storage["chunks"],
        "swmr_open_needed": src.swmr,
        "attrs": attrs,
        "config": _parse_json(src.attrs.get("config", "{}"), path),
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
    """List every violation of the W-movie spec in ``path`` (an HDF5 movie or a zarr copy).

    A movie whose data lies outside it (external storage, virtual datasets, links; symbolic links
    out of a zarr store) is listed as such and nothing else of it is read.

    Parameters
    ----------
    scan_values
        Also read every frame to look for NaN/Inf (streams one frame at a time).
    progress
        Called as ``progress(done, total)`` while scanning frames.
    """
    path = os.fspath(path)
    report = CheckReport(os.path.abspath(path))
    # missing / unreadable files raise here; the header and the rest are listed below
    with open_source(path, strict=False) as src, src.errors():
        _check(src, path, report, scan_values, progress)
    return report


def _check(src: MovieSource, path: str, report: CheckReport, scan_values: bool, progress: Any) -> None:
    p = report.problems.append
    foreign = src.foreign_data()
    if foreign:  # reading any of it would read another file (or hang on a FIFO)
        for problem in foreign:
            p(f"{problem}: {RULE}")
        return
    try:
        check_format_name(src.attrs, path, "zarr group" if os.path.isdir(path) else "HDF5 file")
    except MovieFormatError as exc:  # not a W-movie at all: nothing below applies
        p(exc.problem)
        return
    try:
        check_version(src.attrs, path)
    except MovieVersionError as exc:  # a newer major version: the v1 rules below may not apply
        p(exc.problem)
        return
    except MovieFormatError as exc:  # an unreadable or unreleased version: check the rest anyway
        p(exc.problem)
    if src.swmr:
        report.notes.append(
            "the file was left open for writing (a live or crashed SWMR writer); plain h5py/xarray "
            "cannot open it until the writer closes or 'tokendyn repair' makes a clean copy"
        )
    _check_attrs(src, p)
    shape, problems = structure_problems(src, src.stored_bytes)
    report.problems.extend(problems)
    missing = src.missing_chunks()
    report.problems.extend(missing)
    for scale in (fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM):
        if scale not in src:
            p(f"dimension-scale dataset {scale!r} is missing")
        elif getattr(src[scale], "is_scale", True) is False:
            p(f"dataset {scale!r} is not an HDF5 dimension scale")
    if shape is None:
        return
    if missing:  # reading the arrays would stop at the first missing chunk
        report.notes.append("the values were not checked: chunks are missing")
        return
    n = _check_steps(src, report)
    _check_frame_axes(src, shape, report)
    _check_tokens(src, shape, p)
    if scan_values and n:
        _scan_nonfinite(src, shape, n, p, progress)


def _check_attrs(src: MovieSource, p: Callable[[str], None]) -> None:
    for key in ("created", "software", "config"):
        if key not in src.attrs:
            p(f"root attribute {key!r} is missing")
    if "config" in src.attrs:
        try:
            json.loads(src.attrs["config"])
        except (TypeError, ValueError):
            p("root attribute 'config' is not valid JSON text")


def _check_steps(src: MovieSource, report: CheckReport) -> int:
    """The step rules; return the number of complete frames."""
    p = report.problems.append
    steps = src[fmt.STEP][...]
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
    return n


def _check_frame_axes(src: MovieSource, shape: MovieShape, report: CheckReport) -> None:
    p = report.problems.append
    for name in shape.matrices:
        m = src[name]
        if m.shape[0] < shape.frames:
            p(f"{name} has {m.shape[0]} frames but 'step' has {shape.frames}")
        elif m.shape[0] > shape.frames:
            report.notes.append(
                f"{name} has {m.shape[0] - shape.frames} frame(s) beyond the last step written "
                "(a live or interrupted writer); readers ignore them"
            )
        maxshape = getattr(m, "maxshape", None)  # HDF5 only: a zarr array can always grow
        if maxshape is not None and maxshape[0] is not None:
            p(f"{name}'s frame axis is not unlimited")
    for name in src.frame_series():
        if name in fmt.MATRIX_VARIABLES:
            continue
        length = src[name].shape[0] if src[name].shape else 0
        if length != shape.frames:
            p(f"{name!r} has {length} frames but 'step' has {shape.frames}")


def _check_tokens(src: MovieSource, shape: MovieShape, p: Callable[[str], None]) -> None:
    n_tokens, n_dims = shape.tokens, shape.dims
    for scale, size in ((fmt.DIM_TOKEN, n_tokens), (fmt.DIM_DIM, n_dims)):
        arr = src.get(scale)
        if arr is None or not hasattr(arr, "shape"):
            continue
        if tuple(arr.shape) != (size,):
            p(f"{scale!r} has {arr.shape[0] if arr.shape else 0} entries, W has {size} {scale}s")
        elif scale == fmt.DIM_TOKEN and not np.array_equal(arr[...], np.arange(n_tokens)):
            p("'token' does not hold the ids 0..V-1")
    tc = src[fmt.TOKEN_CLASS]
    if tuple(tc.shape) == (n_tokens,) and tc.dtype.kind in "iu":
        problem = token_class_problem(tc[...])
        if problem:
            p(problem)
    if attr_text(tc.attrs.get("flag_meanings", "")) != fmt.FLAG_MEANINGS:
        p(f"'token_class' lacks flag_meanings = {fmt.FLAG_MEANINGS!r}")
    for name, kinds in ((fmt.TOKEN_TEXT, "OSUT"), (fmt.TOKEN_COUNT, "iu")):
        arr = src.get(name)
        if arr is None or not hasattr(arr, "shape") or tuple(arr.shape) != (n_tokens,) or arr.dtype.kind not in kinds:
            continue  # the structural rules listed it
        if name == fmt.TOKEN_TEXT:
            problem = decode_token_text(arr[...])[1]
            if problem:
                p(problem)
        elif np.any(arr[...] < 0):
            p("'token_count' holds negative counts")


def _scan_nonfinite(src: MovieSource, shape: MovieShape, n: int, problem: Callable[[str], None], progress: Any) -> None:
    for name, logical in shape.matrices.items():
        m = src[name]
        bad_frames = []
        total = 0
        block = max(1, (64 << 20) // max(1, m.dtype.itemsize * shape.tokens * shape.dims))
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
