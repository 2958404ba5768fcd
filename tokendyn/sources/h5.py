"""The HDF5 source: movie files opened read-only, HDF5's failures turned into tokendyn errors,
and the per-process cache of read handles that every block read goes through.

:class:`H5Source` opens a movie once and checks its header; the Dataset built from it reads through
:class:`H5Block`, which holds a path and a name only, so it pickles to dask.distributed workers and
opens the file (once per process: :func:`fresh_dataset`) where it reads.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieError, MovieFormatError
from tokendyn.format.containment import h5_foreign_data, require_h5_contained
from tokendyn.format.header import check_header
from tokendyn.format.layout import frame_axis_names
from tokendyn.format.structure import decode_token_text

from .base import DirectFrames, MovieSource, attr_text

_LOCKED_HINTS = ("already open for write", "consistency flags", "unable to lock file")


def open_readonly(path: str | os.PathLike, *, swmr: bool | None = None, contained: bool = True) -> h5py.File:
    """Open an HDF5 file read-only.

    ``swmr=None`` tries a plain open first and falls back to an SWMR read open, which is how a
    movie whose SWMR writer crashed (its consistency flags still set) or is still live can be read.
    With ``contained`` (the default), a file with data outside it (external storage, virtual
    datasets, external, soft or user-defined links) is refused with a :class:`MovieError` naming the
    variable, before anything of it is read (:func:`tokendyn.format.containment.h5_foreign_data`);
    ``check`` opens with ``contained=False`` to list those problems itself.
    """
    f = _open_file(os.fspath(path), swmr)
    if contained:
        try:
            with h5_errors(path):
                require_h5_contained(f, path)
        except BaseException:
            f.close()
            raise
    return f


def _open_file(path: str, swmr: bool | None) -> h5py.File:
    if not os.path.exists(path):
        raise MovieError("no such file", path)
    if os.path.isdir(path):
        raise MovieError("is a folder, not a movie file", path)
    if os.path.getsize(path) == 0:
        raise MovieError("the file is empty (0 bytes)", path)
    if not h5py.is_hdf5(path):
        raise MovieError("not an HDF5 file (no HDF5 signature), so not a W-movie", path)
    try:
        if swmr:
            return h5py.File(path, "r", swmr=True, libver="latest")
        return h5py.File(path, "r")
    except OSError as exc:
        text = str(exc)
    # Only a file left "open for write" by an SWMR writer (live or killed) is retried in SWMR-read
    # mode; a truncated file must not be, as SWMR reads retry bad metadata for a long time.
    if swmr is None and any(h in text for h in _LOCKED_HINTS):
        try:
            return h5py.File(path, "r", swmr=True, libver="latest")
        except OSError as exc:
            text = str(exc)
    if any(h in text for h in _LOCKED_HINTS):
        raise MovieError(f"the file is locked by a writer and could not be read ({text})", path)
    raise MovieError(f"the HDF5 file is truncated or corrupted and cannot be opened ({text})", path)


@contextlib.contextmanager
def h5_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn HDF5 failures while reading into a :class:`MovieError` naming the file."""
    try:
        yield
    except (OSError, KeyError, RuntimeError) as exc:
        raise MovieError(f"the HDF5 file is corrupted or unreadable ({exc})", path) from None


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
    Call it under :func:`h5_errors`."""
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


class H5Source(MovieSource):
    """An HDF5 movie, open read-only with its header checked.

    Parameters
    ----------
    path
        The movie file. A movie whose SWMR writer crashed (its consistency flags still set) opens
        too, through an SWMR read open.
    live
        Open through HDF5 SWMR, to follow a run that is still recording.
    strict
        Check the header and refuse a file whose data lies outside it (the default); ``False`` only
        for ``check``, which does both itself (listing those variables, :meth:`foreign_data`).
    """

    def __init__(self, path: str | os.PathLike, *, live: bool = False, strict: bool = True):
        self.path = os.path.abspath(os.fspath(path))
        forget_handles(self.path)  # a cached handle would show this open stale metadata
        self.file = open_readonly(self.path, swmr=True if live else None, contained=strict)
        self.stored_bytes = os.path.getsize(self.path)
        try:
            with h5_errors(self.path):
                self.header = check_header(self.file.attrs, self.path) if strict else (0, 0)
                self.attrs = {k: attr_text(v) for k, v in self.file.attrs.items()}
        except BaseException:
            self.close()
            raise
        self.swmr = live or bool(getattr(self.file, "swmr_mode", False))

    @classmethod
    def can_open(cls, path: str) -> bool:
        return os.path.isfile(path) and h5py.is_hdf5(path)

    def __contains__(self, name: str) -> bool:
        return name in self.file

    def __getitem__(self, name: str) -> Any:
        return self.file[name]

    def text(self, name: str) -> np.ndarray:
        values, problem = decode_token_text(self.file[name][...])
        if problem:
            raise MovieFormatError(problem, self.path)
        return values

    def foreign_data(self) -> list[str]:
        with h5_errors(self.path):
            return h5_foreign_data(self.file)

    def storage(self, name: str) -> dict[str, object]:
        dset = self.file[name]
        if dset.compression is None:
            compression = "none"
        else:
            opts = f" {dset.compression_opts}" if dset.compression_opts is not None else ""
            compression = f"{dset.compression}{opts}" + (" + shuffle" if dset.shuffle else "")
        return {"compression": compression, "chunks": list(dset.chunks) if dset.chunks else None}

    def release(self) -> Callable[[], None]:
        return functools.partial(forget_handles, self.path)

    def frame_series(self) -> list[str]:
        return frame_axis_names(self.file) if fmt.DIM_FRAME in self.file else []

    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> H5Block:
        return H5Block(self.path, name, shape, dtype, self.swmr)

    def direct_frames(self, name: str, shape: tuple[int, ...], dtype: Any) -> DirectFrames:
        return DirectFrames(self.path, name, self.swmr, tuple(shape), np.dtype(dtype).name)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        return h5_errors(self.path)

    def close(self) -> None:
        try:
            self.file.close()
        except (OSError, RuntimeError):
            pass
