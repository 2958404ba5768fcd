"""The zarr source: reads the zarr copies of W-movies that :mod:`tokendyn.tools.convert` writes.

The zarr copy (zarr format 2, readable by xarray and any zarr 2/3 reader) holds the same arrays in
their stored dtypes (bf16 as its uint16 bits), one chunk per frame for the matrices, the same
attributes, and xarray's ``_ARRAY_DIMENSIONS`` names. :func:`tokendyn.open_movie` opens either and
gives the same Dataset, bit for bit.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from tokendyn.errors import MovieError, TokendynError
from tokendyn.format.header import check_header

from .base import MovieSource

FRAME_SERIES_ATTR = "tokendyn_frame_series"


def import_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise TokendynError("zarr copies need zarr: pip install 'tokendyn[distributed]'") from None
    return zarr


def _open_group(path: str) -> Any:
    zarr = import_zarr()
    try:
        return zarr.open_group(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many kinds; all mean "not a readable group"
        raise MovieError(f"not a readable zarr movie ({exc})", path) from None


class ZarrBlock:
    """A picklable view of one array of a zarr movie, opened lazily in the process that reads."""

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype: Any):
        self.path, self.name, self.shape, self.dtype = path, name, shape, np.dtype(dtype)
        self.ndim = len(shape)
        self._array = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._array is None:
            self._array = _open_group(self.path)[self.name]
        return np.asarray(self._array[key])


def is_zarr_movie(path: str | os.PathLike) -> bool:
    """A zarr copy of a movie (``tokendyn convert``) is a directory; an HDF5 movie a file."""
    path = os.fspath(path)
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, ".zgroup"))
                                    or os.path.exists(os.path.join(path, "zarr.json")))


class ZarrSource(MovieSource):
    """A zarr copy of a movie, open read-only with its header checked (the same rules as HDF5)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        self.group = _open_group(self.path)
        attrs = dict(self.group.attrs)
        self.header = check_header(attrs, self.path, container="zarr group")
        self._frame_series = list(attrs.pop(FRAME_SERIES_ATTR, []))
        self.attrs = attrs
        self._names = set(self.group.array_keys())

    @classmethod
    def can_open(cls, path: str) -> bool:
        return is_zarr_movie(path)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        return self.group[name]

    def text(self, name: str) -> np.ndarray:
        return np.asarray(self.group[name][...], dtype=object)

    def frame_series(self) -> list[str]:
        return list(self._frame_series)

    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> ZarrBlock:
        return ZarrBlock(self.path, name, shape, dtype)

    def close(self) -> None:
        """Nothing to release: a zarr group holds no open file."""

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, KeyError, RuntimeError) as exc:
            raise MovieError(f"the zarr movie is corrupted or unreadable ({exc})", self.path) from None
