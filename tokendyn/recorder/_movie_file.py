"""The movie file as the writer sees it: create it empty or reopen it to continue a run, and look
up the datasets it fills.

Both open the file with the write properties the writer relies on: no chunk cache (a failed write
raises inside its own call), large metadata blocks, and for direct writes 4 KiB alignment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError, RecorderError
from tokendyn.format.header import check_header
from tokendyn.format.layout import complete_frames, create_layout, frame_axis_names

from ._direct import ALIGN, DirectFrames
from ._superblock import clear_write_flags, read_superblock

RUN_ID = "run_id"  # root attribute: the run's identity, a uuid4 in hex, written when the movie is created

# HDF5 takes metadata space in blocks of this size (default 2 KiB): with 2 KiB blocks a new block
# lands between two frames of W about every 120 frames, with 64 KiB blocks a few times in a whole
# run (measured: 17 vs 2 breaks in 2,000 frames), so the frames lie one after another in the file
# and the analyses map them in place. Costs at most 64 KiB of file.
_META_BLOCK_BYTES = 64 * 2**10


def _file_space(direct: bool) -> dict[str, int]:
    """File access properties: metadata blocks, and for direct writes every object of 4 KiB or
    more on a 4 KiB boundary (only then: frames of other sizes would get gaps between them)."""
    aligned = {"alignment_threshold": ALIGN, "alignment_interval": ALIGN} if direct else {}
    return {"meta_block_size": _META_BLOCK_BYTES, **aligned}


@dataclass(frozen=True)
class ResumePoint:
    """What a reopened movie keeps, for the front end to continue from.

    Attributes
    ----------
    matrices
        Shape and logical dtype of each recorded matrix.
    scalars
        Names of the per-frame scalars.
    frames
        Frames kept.
    last_step
        Step of the last kept frame (-1 if none).
    last_time
        Time stamp of the last kept frame (0.0 if none or not recorded).
    run_id
        The movie's ``run_id`` attribute (``None`` for a movie written before there was one).
    swmr_capable
        Whether the file can be written in SWMR mode (HDF5 superblock version 3 or later).
    """

    matrices: dict[str, tuple[tuple[int, ...], str]]
    scalars: list[str]
    frames: int
    last_step: int
    last_time: float
    run_id: str | None
    swmr_capable: bool


def create_movie(path: str, *, direct: bool, **layout: Any) -> h5py.File:
    """Create the movie at ``path`` with every variable empty, flushed and open for writing.

    Parameters
    ----------
    path
        The file to create (an existing one is an error).
    direct
        Lay the matrices out for direct writes (preallocated, aligned chunks).
    **layout
        The keyword arguments of :func:`tokendyn.format.layout.create_layout` but ``preallocate``.
    """
    try:
        # No chunk cache: every chunk goes to disk inside its write call, so a failed write
        # (a full disk) raises there instead of being lost in a later cache eviction.
        f = h5py.File(path, "w-", libver="latest", rdcc_nbytes=0, **_file_space(direct))
    except OSError as exc:
        raise RecorderError(f"cannot create the movie: {exc}", path) from None
    try:
        create_layout(f, preallocate=direct, **layout)
    except ValueError as exc:
        f.close()
        os.remove(path)
        raise RecorderError(str(exc), path) from None
    f.flush()
    return f


def reopen_movie(path: str, after: int, expect_run_id: str | None = None) -> tuple[h5py.File, ResumePoint]:
    """Open the movie at ``path`` for writing and drop its frames with ``step > after``.

    With ``expect_run_id``, a movie with another ``run_id`` (or none) is refused before it changes.

    Call it only while holding the movie's writer lock: the marks a killed writer left in the
    file's superblock are cleared first (:func:`~tokendyn.recorder._superblock.clear_write_flags`),
    which is safe only because the lock proves that no live process writes it.

    Returns
    -------
    file, point
        The open file (flushed) and what it keeps.
    """
    try:
        clear_write_flags(path)
        f = h5py.File(path, "r+", libver="latest", rdcc_nbytes=0, **_file_space(False))
        if any(DirectFrames.preallocated(f[name]) for name in fmt.MATRIX_VARIABLES if name in f):
            f.close()  # made for direct writes: its new chunks must be aligned too
            f = h5py.File(path, "r+", libver="latest", rdcc_nbytes=0, **_file_space(True))
    except OSError as exc:
        if "already open for read-only" in str(exc):
            raise RecorderError("cannot resume: this process still has the movie open for reading; close "
                                "the file or Dataset that reads it first", path) from None
        raise RecorderError(
            f"cannot open the movie to resume ({exc}); if the file is damaged, 'tokendyn repair {path}' "
            "writes a clean copy",
            path,
        ) from None
    try:
        point = _truncate(f, path, after, expect_run_id)
    except BaseException:
        f.close()
        raise
    return f, point


def _truncate(f: h5py.File, path: str, after: int, expect_run_id: str | None) -> ResumePoint:
    """Drop the frames with ``step > after`` (and any incomplete ones) from an open movie, once it
    is known to be one the recorder can continue."""
    try:
        check_header(f.attrs, path)
    except MovieFormatError as exc:
        raise RecorderError(f"cannot resume: {exc.problem}", path) from None
    missing = [name for name in (fmt.STEP, fmt.TIME, fmt.DIM_FRAME, "W") if name not in f]
    if missing:
        raise RecorderError(f"cannot resume: the movie has no {missing[0]!r} variable", path)
    matrices = {}
    for name in (m for m in fmt.MATRIX_VARIABLES if m in f):
        dtype = _text(f[name].attrs.get("dtype"))
        if f[name].ndim != 3 or fmt.STORAGE_DTYPES.get(dtype) != f[name].dtype:
            raise RecorderError(f"cannot resume: {name} is not a (frame, token, dim) matrix of a dtype the "
                                "recorder writes", path)
        matrices[name] = (tuple(f[name].shape[1:]), dtype)
    run_id = _text(f.attrs.get(RUN_ID))
    if expect_run_id is not None and run_id != expect_run_id:
        raise RecorderError(f"cannot resume: this movie is run {run_id}, not run {expect_run_id} (the checkpoint "
                            "belongs to another movie)", path)
    steps = f[fmt.STEP][...]
    n = complete_frames(steps)
    keep = int(np.searchsorted(steps[:n], after, side="right"))
    for name in frame_axis_names(f):
        f[name].resize(keep, axis=0)
    last_time = float(f[fmt.TIME][keep - 1]) if keep else 0.0
    point = ResumePoint(
        matrices=matrices,
        scalars=[name for name in frame_axis_names(f) if name not in fmt.RESERVED_NAMES],
        frames=keep,
        last_step=int(steps[keep - 1]) if keep else -1,
        last_time=0.0 if np.isnan(last_time) else last_time,
        run_id=run_id,
        swmr_capable=read_superblock(path).version >= 3,
    )
    f.flush()
    return point


def _text(value: Any) -> str | None:
    """An attribute's text (h5py gives fixed-length strings as bytes)."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Targets:
    """The open datasets the writer thread fills, looked up once (an h5py lookup is ~100 us).

    Parameters
    ----------
    f
        The open movie.
    matrices, series
        Names of its frame-axis datasets: the (frame, token, dim) matrices, and the rest.
    """

    def __init__(self, f: h5py.File, matrices: list[str], series: list[str]):
        self.matrices = {name: f[name] for name in matrices}
        self.allocated = {name: d.shape[0] for name, d in self.matrices.items()}
        self.raw = {name: d.compression is None for name, d in self.matrices.items()}
        self.logical_dtypes = {name: str(d.attrs["dtype"]) for name, d in self.matrices.items()}
        self.series = {name: f[name] for name in series}
        self.dtypes = {name: d.dtype for name, d in self.series.items()}
        # matrices whose frames go straight to disk (see recorder._direct)
        writers = {name: DirectFrames.open(f.filename, d) for name, d in self.matrices.items()
                   if DirectFrames.preallocated(d)}
        self.direct = {name: writer for name, writer in writers.items() if writer is not None}

    def close(self) -> None:
        """Close the direct-write descriptors."""
        for writer in self.direct.values():
            writer.close()
        self.direct = {}
