"""The zarr source: reads the zarr copies of W-movies that :mod:`tokendyn.tools.convert` writes.

The zarr copy (zarr format 2, readable by xarray and any zarr 2/3 reader) holds the same arrays in
their stored dtypes (bf16 as its uint16 bits), one chunk per frame for the matrices, the same
attributes, and xarray's ``_ARRAY_DIMENSIONS`` names. :func:`tokendyn.open_movie` opens either and
gives the same Dataset, bit for bit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieError, MovieFormatError, TokendynError

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


class ZarrSource:
    """The zarr backend of :func:`tokendyn.open_movie` (same interface as the HDF5 one)."""

    def __init__(self, path: str):
        self.path = path
        self.group = _open_group(path)
        self.attrs = dict(self.group.attrs)
        if self.attrs.get("format") != fmt.FORMAT_NAME:
            raise MovieFormatError(f"zarr group without the W-movie attributes (format={self.attrs.get('format')!r})",
                                   path)
        major = fmt.parse_version(str(self.attrs.get("format_version", "0.0")))[0]
        if major > fmt.FORMAT_MAJOR:
            from tokendyn.errors import MovieVersionError

            raise MovieVersionError(f"written with W-movie format {major}; upgrade tokendyn", path)
        self.attrs.pop(FRAME_SERIES_ATTR, None)
        self._names = set(self.group.array_keys())

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        return self.group[name]

    def text(self, name: str) -> np.ndarray:
        return np.asarray(self.group[name][...], dtype=object)

    def frame_series(self) -> list[str]:
        return list(self.group.attrs.get(FRAME_SERIES_ATTR, []))

    def block(self, name: str, shape: tuple[int, ...], dtype: Any) -> ZarrBlock:
        return ZarrBlock(self.path, name, shape, dtype)
