"""Movie sources: one :class:`~tokendyn.sources.base.MovieSource` interface, the HDF5 and zarr
sources behind it, and :func:`~tokendyn.sources.dataset.open_movie`, which turns any source into a
lazy xarray Dataset (also as the xarray engine ``"tokendyn"``: :mod:`.backend`).

Readers only: nothing here writes a movie (writing is :mod:`tokendyn.recorder`'s and
:mod:`tokendyn.tools.convert`'s job).
"""
from __future__ import annotations

import os

from .base import MovieSource


def open_source(path: str | os.PathLike, *, live: bool = False, strict: bool = True) -> MovieSource:
    """Open the movie at ``path`` with the source that reads it, its header checked.

    A folder opens as a zarr copy (:class:`~tokendyn.sources.zarr.ZarrSource`, which names what is
    wrong with a folder that is not one); anything else as an HDF5 movie
    (:class:`~tokendyn.sources.h5.H5Source`), which names what is wrong with a file that is not
    one. ``live`` (follow a run still recording) applies to HDF5 movies; zarr copies are static.
    Either refuses a movie whose data lies outside it; ``strict=False`` (``check`` only) leaves
    that and the header to the caller.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        from .zarr import ZarrSource

        return ZarrSource(path, strict=strict)
    from .h5 import H5Source

    return H5Source(path, live=live, strict=strict)
