"""The analyses: each takes a Dataset from :func:`tokendyn.open_movie` (plus a token selection and
a frame range) and returns a named :class:`xarray.Dataset`. :mod:`tokendyn.analysis.base` is the
pattern they share, :mod:`tokendyn.analysis.registry` the one list of them that the command line,
the report and the summaries read; any registered analysis is also an attribute of this package
under its function's name."""
from typing import Any

from .base import select, token_mask
from .comoving import comoving_displacement
from .geometry import cloud_geometry
from .hypersphere import hypersphere_walk
from .inhale import find_inhale, inhale
from .lattice import lattice_motion

__all__ = ["comoving_displacement", "hypersphere_walk", "lattice_motion", "inhale", "find_inhale",
           "cloud_geometry", "select", "token_mask"]


def __getattr__(name: str) -> Any:
    """A registered analysis by its function's name (one added without an edit here)."""
    if not name.startswith("_"):
        from . import registry

        for spec in registry.analyses().values():
            if spec.function.__name__ == name:
                return spec.function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
