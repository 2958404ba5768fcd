"""tokendyn: the physics of token embeddings during training.

Record every step of a model's embedding matrix into a W-movie (:class:`Recorder`), open it lazily
(:func:`open_movie`), train tiny models that make such movies (:func:`train`), and analyse the motion
of the token cloud (:mod:`tokendyn.analysis`).

Heavy modules load on first use, so ``import tokendyn.format`` (used by the recorder inside a
training loop) pulls in numpy only.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import (
    AnalysisError,
    ConfigError,
    MovieError,
    MovieFormatError,
    MovieVersionError,
    RecorderError,
    TokendynError,
)

_LAZY = {
    "open_movie": ("tokendyn.io", "open_movie"),
    "refresh": ("tokendyn.io", "refresh"),
    "info": ("tokendyn.inspect", "info"),
    "check": ("tokendyn.inspect", "check"),
    "repair": ("tokendyn.repair", "repair"),
    "Recorder": ("recorder", "Recorder"),
    "train": ("trainers", "train"),
    "TrainConfig": ("trainers", "TrainConfig"),
    "analysis": ("tokendyn.analysis", None),
    "synthetic": ("tokendyn.synthetic", None),
    "write_report": ("tokendyn.report", "write_report"),
    "play": ("tokendyn.player", "play"),
    "convert": ("tokendyn.zarr_store", "convert"),
    "save_result": ("tokendyn.export", "save_result"),
    "run_sweep": ("trainers.sweep", "run_sweep"),
}

__all__ = [
    "__version__",
    "TokendynError",
    "MovieError",
    "MovieFormatError",
    "MovieVersionError",
    "RecorderError",
    "ConfigError",
    "AnalysisError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tokendyn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
