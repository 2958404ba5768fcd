"""The xarray engine ``"tokendyn"``: ``xr.open_dataset(path, engine="tokendyn")`` is
:func:`tokendyn.open_movie` (registered as the ``xarray.backends`` entry point ``tokendyn``)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from xarray.backends import BackendEntrypoint

from tokendyn.errors import TokendynError
from tokendyn.format.header import check_format_name

from .zarr import is_zarr_movie

if TYPE_CHECKING:
    import xarray as xr


class TokendynBackend(BackendEntrypoint):
    """Opens W-movies (HDF5 files and their zarr copies) as :func:`tokendyn.open_movie` does.

    Parameters of ``xr.open_dataset`` it takes: ``drop_variables``; ``live`` (follow a run still
    recording, through HDF5 SWMR); ``frames_per_chunk`` (frames per dask chunk, what
    ``open_movie`` calls ``chunks``: xarray's own ``chunks`` argument re-chunks afterwards, and a
    re-chunked matrix is then read through dask rather than straight from the file).
    """

    description = "tokendyn W-movies (HDF5 or zarr copy): W decoded lazily, bf16 bits kept as W_bits"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "live", "frames_per_chunk")

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        live: bool = False,
        frames_per_chunk: int | None = None,
    ) -> xr.Dataset:
        from .dataset import open_movie  # here: xarray imports every engine's module to list them

        ds = open_movie(_path(filename_or_obj), chunks=frames_per_chunk, live=live)
        if drop_variables is not None:
            names = [drop_variables] if isinstance(drop_variables, str) else list(drop_variables)
            ds = ds.drop_vars(names, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Only a file or zarr copy whose header says it is a W-movie (never raises)."""
        try:
            path = _path(filename_or_obj)
            if is_zarr_movie(path):
                import zarr

                check_format_name(dict(zarr.open_group(path, mode="r").attrs), path)
                return True
            import h5py

            if not (os.path.isfile(path) and h5py.is_hdf5(path)):
                return False
            with h5py.File(path, "r") as f:
                check_format_name(f.attrs, path)
            return True
        except Exception:  # noqa: BLE001 - guessing must never fail: any problem means "not ours"
            return False


def _path(filename_or_obj: Any) -> str:
    try:
        return os.fspath(filename_or_obj)
    except TypeError:
        raise TokendynError(f"the tokendyn engine opens movies by path, not a {type(filename_or_obj).__name__}") from None
