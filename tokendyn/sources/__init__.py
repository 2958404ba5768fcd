"""Movie sources: one :class:`~tokendyn.sources.base.MovieSource` interface, the HDF5 and zarr
sources behind it, and :func:`~tokendyn.sources.dataset.open_movie`, which turns any source into a
lazy xarray Dataset (also as the xarray engine ``"tokendyn"``: :mod:`.backend`).

Readers only: nothing here writes a movie (writing is :mod:`tokendyn.recorder`'s and
:mod:`tokendyn.tools.convert`'s job).
"""
from __future__ import annotations

import os

from .base import MovieSource


def open_source(path: str | os.PathLike, *, live: bool = False) -> MovieSource:
    """Open the movie at ``path`` with the source that reads it, its header checked.

    A zarr copy (a directory, :func:`~tokendyn.sources.zarr.is_zarr_movie`) opens as a
    :class:`~tokendyn.sources.zarr.ZarrSource`; anything else as an HDF5 movie
    (:class:`~tokendyn.sources.h5.H5Source`), which names what is wrong with a file that is not
    one. ``live`` (follow a run still recording) applies to HDF5 movies; zarr copies are static.
    """
    from .zarr import ZarrSource

    path = os.path.abspath(os.fspath(path))
    if ZarrSource.can_open(path):
        return ZarrSource(path)
    from .h5 import H5Source

    return H5Source(path, live=live)
