"""Opening movie files read-only, turning HDF5's failures into tokendyn errors."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import h5py

from tokendyn import format as fmt
from tokendyn.errors import MovieError, MovieFormatError, MovieVersionError

_LOCKED_HINTS = ("already open for write", "consistency flags", "unable to lock file")


def open_readonly(path: str | os.PathLike, *, swmr: bool | None = None) -> h5py.File:
    """Open an HDF5 file read-only.

    ``swmr=None`` tries a plain open first and falls back to an SWMR read open, which is how a
    movie whose SWMR writer crashed (its consistency flags still set) or is still live can be read.
    """
    path = os.fspath(path)
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


@contextlib.contextmanager
def movie_file(path: str | os.PathLike, *, swmr: bool | None = None) -> Iterator[h5py.File]:
    """Open a movie read-only and check its header (format name and major version)."""
    f = open_readonly(path, swmr=swmr)
    try:
        with h5_errors(path):
            check_header(f, os.fspath(path))
            yield f
    finally:
        try:
            f.close()
        except (OSError, RuntimeError):
            pass


def check_header(f: h5py.File, path: str) -> tuple[int, int]:
    """Raise unless ``f`` declares itself a W-movie of a major version this reader knows."""
    name = f.attrs.get("format")
    if isinstance(name, bytes):
        name = name.decode()
    if name != fmt.FORMAT_NAME:
        raise MovieFormatError(
            f"HDF5 file without the W-movie attributes (format={name!r}, expected {fmt.FORMAT_NAME!r})",
            path,
        )
    raw = f.attrs.get("format_version")
    try:
        major, minor = fmt.parse_version(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, AttributeError, TypeError):
        raise MovieFormatError(f"unreadable format_version {raw!r}", path) from None
    if major > fmt.FORMAT_MAJOR:
        raise MovieVersionError(
            f"written with W-movie format {major}.{minor}; this tokendyn reads major version "
            f"{fmt.FORMAT_MAJOR} only: upgrade tokendyn",
            path,
        )
    if major < 1:
        raise MovieFormatError(f"format_version {raw!r} is not a released version", path)
    return major, minor


def attr_text(value: object) -> object:
    """Attributes come back as numpy scalars or bytes; give plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
