"""Movie sources: one :class:`~tokendyn.sources.base.MovieSource` interface, the HDF5 and zarr
sources behind it, and :func:`open_movie`, which turns any source into a lazy xarray Dataset.

Readers only: nothing here writes a movie (writing is :mod:`tokendyn.recorder`'s and
:mod:`tokendyn.tools.convert`'s job).
"""
