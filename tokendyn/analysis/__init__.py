"""The analyses: each takes a Dataset from :func:`tokendyn.open_movie` (plus a token selection and
a frame range) and returns a named :class:`xarray.Dataset`. See :mod:`tokendyn.analysis.base` for
the pattern they share."""
from .base import select, token_mask
from .comoving import comoving_displacement
from .geometry import cloud_geometry
from .hypersphere import hypersphere_walk
from .inhale import find_inhale, inhale
from .lattice import lattice_motion

__all__ = ["comoving_displacement", "hypersphere_walk", "lattice_motion", "inhale", "find_inhale",
           "cloud_geometry", "select", "token_mask"]
