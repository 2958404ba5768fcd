"""The interface every movie source implements, so :func:`tokendyn.open_movie` reads any backend.

A :class:`MovieSource` is one opened movie: an HDF5 file (:class:`tokendyn.sources.h5.H5Source`)
or a zarr copy (:class:`tokendyn.sources.zarr.ZarrSource`). Its constructor opens the movie and
checks its header (:func:`tokendyn.format.header.check_header`) once; :mod:`tokendyn.sources.dataset`
then builds the lazy Dataset from what the source offers here and nothing else. A new backend
subclasses :class:`MovieSource`, implements the abstract methods, and adds itself to
:func:`tokendyn.sources.open_source`.
"""
from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class StoredArray(Protocol):
    """One stored array of a movie, as a backend gives it (an h5py Dataset, a zarr Array)."""

    shape: tuple[int, ...]
    ndim: int
    dtype: np.dtype
    attrs: Mapping[str, Any]

    def __getitem__(self, key: Any) -> Any: ...


class BlockReader(Protocol):
    """A picklable, lazily opened view of one stored array for :func:`dask.array.from_array`: it
    travels to other processes as a path and a name and opens the movie where it reads."""

    shape: tuple[int, ...]
    ndim: int
    dtype: np.dtype

    def __getitem__(self, key: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class DirectFrames:
    """Where the stored frames of a matrix variable can be read straight from the file (mapped in
    place or read into a buffer) instead of through dask.

    A source offers one (:meth:`MovieSource.direct_frames`) for a file it can be read from that
    way; :func:`tokendyn.open_movie` records it per variable in ``ds.encoding["tokendyn"]["direct"]``
    together with ``array``, the name of the dask array it built over those frames, and
    ``variable``, the Dataset variable holding that array. A reader may use the record only while
    that variable still holds that very array: a selection, a loaded or a computed copy does not.
    """

    path: str
    dataset: str  # the stored array's name in the file
    swmr: bool  # read through HDF5 SWMR (refresh before each read)
    shape: tuple[int, ...]
    dtype: str  # the stored dtype ("uint16" for bfloat16 bits)
    variable: str = ""
    array: str = ""


class MovieSource(abc.ABC):
    """One opened movie, read-only; use it as a context manager (or call :meth:`close`).

    Attributes
    ----------
    path
        The movie's absolute path (what dask tasks reopen).
    attrs
        The root attributes as plain Python values.
    header
        The ``(major, minor)`` format version, checked when the source was opened.
    swmr
        Whether reads go through HDF5 SWMR (a movie open for writing, live or crashed).
    stored_bytes
        The movie's size on disk (what declared sizes are held against:
        :func:`tokendyn.format.structure.fits_in`).
    """

    path: str
    attrs: dict[str, Any]
    header: tuple[int, int]
    swmr: bool = False
    stored_bytes: int = 0

    @classmethod
    @abc.abstractmethod
    def can_open(cls, path: str) -> bool:
        """Whether ``path`` looks like a movie of this backend (cheap: no full open)."""

    @abc.abstractmethod
    def __contains__(self, name: str) -> bool:
        """Whether the movie stores an array ``name``."""

    @abc.abstractmethod
    def __getitem__(self, name: str) -> StoredArray:
        """The stored array ``name`` (read through it only while the source is open)."""

    def get(self, name: str, default: Any = None) -> Any:
        """The stored array (or group) ``name``, or ``default`` when the movie has none."""
        if name not in self:
            return default
        return self[name]

    @abc.abstractmethod
    def text(self, name: str) -> np.ndarray:
        """A stored array of strings as an object array of ``str``."""

    @abc.abstractmethod
    def frame_series(self) -> list[str]:
        """The names of every array whose first axis is the ``frame`` dimension."""

    @abc.abstractmethod
    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> BlockReader:
        """A picklable reader of the first ``shape[0]`` frames of the array ``name``."""

    def direct_frames(self, name: str, shape: tuple[int, ...], dtype: Any) -> DirectFrames | None:
        """Where the frames of ``name`` can be read straight from the file, or ``None`` (then only
        through dask: the default)."""
        return None

    def foreign_data(self) -> list[str]:
        """Every variable whose data lies outside the movie (each names it); a source opened with
        its default ``contained=True`` has refused such a movie already."""
        return []

    def missing_chunks(self) -> list[str]:
        """Every stored chunk the movie's arrays lack, as ``"name/key"`` (default: none can be)."""
        return []

    def storage(self, name: str) -> dict[str, object]:
        """How the array ``name`` is stored: ``{"compression": text, "chunks": list or None}``."""
        return {"compression": "unknown", "chunks": None}

    def release(self) -> Callable[[], None] | None:
        """A picklable function that releases what reads of this movie leave open in the process
        that calls it (cached file handles), for :meth:`xarray.Dataset.close`; None: nothing to."""
        return None

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn this backend's failures while reading into a :class:`~tokendyn.MovieError` naming
        the movie (default: let them through)."""
        yield

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the source holds open (its Dataset reads through its block readers)."""

    def __enter__(self) -> MovieSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attr_text(value: object) -> object:
    """Attributes come back as numpy scalars or bytes; give plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
