"""The analyses by name, with their options read off their signatures (for the CLI and reports)."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from tokendyn.errors import AnalysisError
from tokendyn.keyvalue import parse_pairs

from .comoving import comoving_displacement
from .geometry import cloud_geometry
from .hypersphere import hypersphere_walk
from .inhale import inhale
from .lattice import lattice_motion

ANALYSES: dict[str, Callable[..., Any]] = {
    "comoving": comoving_displacement,
    "hypersphere": hypersphere_walk,
    "lattice": lattice_motion,
    "inhale": inhale,
    "geometry": cloud_geometry,
}
_COMMON = {"ds", "tokens", "frames", "progress"}


def get(name: str) -> Callable[..., Any]:
    """The analysis function called ``name`` (short name or function name)."""
    for short, fn in ANALYSES.items():
        if name in (short, fn.__name__):
            return fn
    raise AnalysisError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")


def options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The analysis's own keyword options and their defaults."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.name not in _COMMON and p.default is not inspect.Parameter.empty}


def summary_line(fn: Callable[..., Any]) -> str:
    return (inspect.getdoc(fn) or "").splitlines()[0]


def parse_options(fn: Callable[..., Any], pairs: list[str]) -> dict[str, Any]:
    """``["lags=(1,2,4)", "center=centroid"]`` -> keyword arguments, checked against the signature."""
    known = options(fn)
    try:
        out = parse_pairs(pairs, flag="-O/--option")
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    for key in out:
        if key not in known:
            raise AnalysisError(f"{fn.__name__} has no option {key!r}; its options: {', '.join(known) or 'none'}")
    return out


def help_text() -> str:
    lines = ["analyses:"]
    for short, fn in ANALYSES.items():
        lines.append(f"  {short:12s} {summary_line(fn)}")
        opts = ", ".join(f"{k}={v!r}" for k, v in options(fn).items())
        if opts:
            lines.append(f"  {'':12s}   options: {opts}")
    return "\n".join(lines)
