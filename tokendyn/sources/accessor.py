"""The ``ds.movie`` accessor on Datasets opened by :func:`tokendyn.open_movie`."""
from __future__ import annotations

import numpy as np
import xarray as xr

from tokendyn import format as fmt


@xr.register_dataset_accessor("movie")
class MovieAccessor:
    """Movie-level helpers: ``ds.movie.refresh()``, ``ds.movie.path``, ``ds.movie.tokens(sel)``."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    @property
    def path(self) -> str | None:
        """The file the Dataset was opened from."""
        return self._ds.encoding.get("source")

    def refresh(self) -> xr.Dataset:
        """Re-open the movie, picking up frames written since it was opened (live reading)."""
        from tokendyn.sources.dataset import refresh

        return refresh(self._ds)

    def class_mask(self, name: str) -> np.ndarray:
        """Boolean mask over tokens of one class (``"live"``, ``"dead"``, ``"phantom"``)."""
        return self._ds[fmt.TOKEN_CLASS].values == fmt.class_code(name)
