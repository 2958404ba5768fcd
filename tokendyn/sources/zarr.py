"""The zarr source: reads the zarr copies of W-movies that :mod:`tokendyn.tools.convert` writes.

The zarr copy (zarr format 2, readable by xarray and any zarr 2/3 reader) holds the same arrays, one
chunk per frame for the matrices, the same attributes, and xarray's ``_ARRAY_DIMENSIONS`` names; a
bfloat16 matrix is stored as the float32 values it stands for (exact) with its ``dtype`` attribute
kept, and read back here as its bits (:class:`ZarrArray`); older copies store the bits as uint16,
which read the same. :func:`tokendyn.open_movie` opens either and gives the same Dataset, bit for bit.

A copy is data like a movie: its folder is refused when an entry leads outside it
(:func:`tokendyn.format.containment.require_store_contained`), and a chunk file that is missing is a
:class:`~tokendyn.MovieError` naming the array and the chunk, never a frame of zeros.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from tokendyn.errors import MovieError, MovieFormatError, TokendynError
from tokendyn.format.containment import require_store_contained, store_foreign_entries
from tokendyn.format.header import check_header
from tokendyn.format.structure import decode_token_text

from .base import MovieSource

FRAME_SERIES_ATTR = "tokendyn_frame_series"
_METADATA = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})
# What zarr and its codecs raise on a store that is not what its metadata says (zarr's own errors
# are ValueErrors; a bad chunk is whatever its codec raises).
_ZARR_FAILURES = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError)


def import_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise TokendynError("zarr copies need zarr: pip install 'tokendyn[distributed]'") from None
    return zarr


@contextlib.contextmanager
def zarr_errors(path: str) -> Iterator[None]:
    """Turn zarr's failures while reading into a :class:`MovieError` naming the copy."""
    try:
        yield
    except _ZARR_FAILURES as exc:
        raise MovieError(f"the zarr movie is corrupted or unreadable ({type(exc).__name__}: {exc})", path) from None


def _open_group(path: str) -> Any:
    zarr = import_zarr()
    with zarr_errors(path):
        return zarr.open_group(path, mode="r")


def _chunk_range(key: Any, length: int, chunk: int) -> range | list[int]:
    """The chunk indices along one axis that the basic index ``key`` touches."""
    if isinstance(key, (int, np.integer)):
        i = int(key) + (length if key < 0 else 0)
        return [i // chunk] if 0 <= i < length else []
    if isinstance(key, slice):
        start, stop, step = key.indices(length)
        if step == 1:
            return range(start // chunk, (stop - 1) // chunk + 1) if stop > start else range(0)
        return sorted({i // chunk for i in range(start, stop, step)})
    return range(-(-length // chunk))  # anything else: every chunk of the axis


def _expand(key: Any, ndim: int) -> tuple[Any, ...]:
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    return key + (slice(None),) * (ndim - len(key))


class ZarrArray:
    """One array of a zarr movie as the readers see it.

    A bfloat16 matrix stored as float32 has the dtype of its bits (uint16) here and reads as them;
    a read that touches a chunk whose file is missing raises :class:`MovieError` naming it.
    """

    def __init__(self, path: str, name: str, array: Any):
        self.path, self.name, self._array = path, name, array
        self.shape = tuple(int(n) for n in array.shape)
        self.ndim = len(self.shape)
        self.attrs = dict(array.attrs)
        self.chunks = tuple(int(c) for c in array.chunks)
        stored = np.dtype(array.dtype)
        self._widened = stored == np.float32 and self.attrs.get("dtype") == "bfloat16"
        self.dtype = np.dtype("<u2") if self._widened else stored
        self._folder = os.path.join(path, *name.split("/"))

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        """The store key of the chunk at ``coords`` (``"3.0.0"`` in zarr 2)."""
        return self._array.metadata.encode_chunk_key(coords)

    def grid(self) -> tuple[int, ...]:
        """The number of chunks along each axis."""
        return tuple(-(-n // c) for n, c in zip(self.shape, self.chunks))

    def _require_chunks(self, key: Any) -> None:
        axes = [_chunk_range(k, n, c) for k, n, c in zip(_expand(key, self.ndim), self.shape, self.chunks)]
        for coords in itertools.product(*axes):
            chunk = self.chunk_key(coords)
            if not os.path.isfile(os.path.join(self._folder, chunk)):
                raise MovieError(f"chunk {self.name}/{chunk} of {self.name!r} is missing: the zarr store is "
                                 "incomplete (copy it again with 'tokendyn convert')", self.path)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.ndim and min(self.shape):
            self._require_chunks(key)
        with zarr_errors(self.path):
            data = np.asarray(self._array[key])
        if not self._widened:
            return data
        halves = np.ascontiguousarray(data, dtype="<f4").reshape(-1).view("<u2")  # low, high, low, high, ...
        if halves[0::2].any():
            raise MovieFormatError(f"{self.name!r} declares dtype bfloat16 but holds float32 values that are not "
                                   "bfloat16", self.path)
        return halves[1::2].reshape(data.shape)


class ZarrBlock:
    """A picklable view of one array of a zarr movie, opened lazily in the process that reads."""

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype: Any):
        self.path, self.name, self.shape, self.dtype = path, name, shape, np.dtype(dtype)
        self.ndim = len(shape)
        self._array: ZarrArray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._array is None:
            with zarr_errors(self.path):
                self._array = ZarrArray(self.path, self.name, _open_group(self.path)[self.name])
        return self._array[key]


def is_zarr_movie(path: str | os.PathLike) -> bool:
    """A zarr copy of a movie (``tokendyn convert``) is a directory; an HDF5 movie a file."""
    path = os.fspath(path)
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, ".zgroup"))
                                    or os.path.exists(os.path.join(path, "zarr.json")))


class ZarrSource(MovieSource):
    """A zarr copy of a movie, open read-only with its header checked (the same rules as HDF5).

    ``strict=False`` (for ``check`` only) leaves the header to the caller and opens a store with
    entries leading outside it, to list them (:meth:`foreign_data`); nothing of such a store is read.
    """

    def __init__(self, path: str | os.PathLike, *, strict: bool = True):
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(self.path):
            raise MovieError("no such zarr store" if not os.path.exists(self.path) else "not a folder", self.path)
        if not is_zarr_movie(self.path):
            raise MovieError("is a folder but not a zarr copy of a movie (no .zgroup or zarr.json in it)", self.path)
        self._foreign, self.stored_bytes = store_foreign_entries(self.path)
        self._arrays: dict[str, ZarrArray] = {}
        self._groups: dict[str, Any] = {}
        self._frame_series: list[str] = []
        if strict:
            require_store_contained(self.path)
        elif self._foreign:  # for check: list them, read nothing (a FIFO would hang the read)
            self.attrs, self.header = {}, (0, 0)
            return
        self.group = _open_group(self.path)
        with zarr_errors(self.path):
            attrs = dict(self.group.attrs)
        self.header = check_header(attrs, self.path, container="zarr group") if strict else (0, 0)
        series = attrs.pop(FRAME_SERIES_ATTR, [])
        self._frame_series = [str(s) for s in series] if isinstance(series, list) else []
        self.attrs = attrs
        with zarr_errors(self.path):  # every array's metadata, so a bad .zarray shows here
            for name, member in self.group.members():
                if hasattr(member, "shape"):
                    self._arrays[name] = ZarrArray(self.path, name, member)
                else:
                    self._groups[name] = member

    @classmethod
    def can_open(cls, path: str) -> bool:
        return is_zarr_movie(path)

    def __contains__(self, name: str) -> bool:
        return name in self._arrays or name in self._groups

    def __getitem__(self, name: str) -> Any:
        if name in self._groups:
            return self._groups[name]
        try:
            return self._arrays[name]
        except KeyError:
            raise MovieFormatError(f"the movie has no {name!r} variable", self.path) from None

    def text(self, name: str) -> np.ndarray:
        values, problem = decode_token_text(self[name][...])
        if problem:
            raise MovieFormatError(problem, self.path)
        return values

    def frame_series(self) -> list[str]:
        return [name for name in self._frame_series if name in self._arrays]

    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> ZarrBlock:
        return ZarrBlock(self.path, name, shape, dtype)

    def foreign_data(self) -> list[str]:
        return list(self._foreign)

    def missing_chunks(self, shown: int = 5) -> list[str]:
        """One line per array whose chunk files are not all there, naming the first ``shown``."""
        problems = []
        for name, arr in sorted(self._arrays.items()):
            if not arr.ndim or not min(arr.shape):
                continue
            present = set()
            for folder, _, files in os.walk(arr._folder):
                rel = os.path.relpath(folder, arr._folder)
                present.update(f if rel == "." else os.path.join(rel, f) for f in files if f not in _METADATA)
            expected = int(np.prod(arr.grid(), dtype=object))
            missing: list[str] = []
            for tried, coords in enumerate(itertools.product(*(range(g) for g in arr.grid()))):
                if len(missing) >= shown or tried > len(present) + shown:
                    break
                if arr.chunk_key(coords) not in present:
                    missing.append(f"{name}/{arr.chunk_key(coords)}")
            if missing:
                count = max(expected - len(present), len(missing))
                more = " ..." if count > len(missing) else ""
                problems.append(f"{name!r} lacks {count} of its {expected} chunk(s) ({', '.join(missing)}{more}): "
                                "the zarr store is incomplete")
        return problems

    def storage(self, name: str) -> dict[str, object]:
        arr = self._arrays[name]._array
        codecs = [type(c).__name__ for c in (*arr.filters, *arr.compressors)]
        return {"compression": " + ".join(codecs) or "none", "chunks": list(arr.chunks)}

    def close(self) -> None:
        """Nothing to release: a zarr group holds no open file."""

    def errors(self) -> contextlib.AbstractContextManager[None]:
        return zarr_errors(self.path)
