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
    CompareError,
    ConfigError,
    MovieError,
    MovieFormatError,
    MovieLockedError,
    MovieVersionError,
    RecorderError,
    TokendynError,
)

_LAZY = {
    "open_movie": ("tokendyn.sources.dataset", "open_movie"),
    "refresh": ("tokendyn.sources.dataset", "refresh"),
    "info": ("tokendyn.tools.inspect", "info"),
    "check": ("tokendyn.tools.inspect", "check"),
    "repair": ("tokendyn.tools.repair", "repair"),
    "Recorder": ("tokendyn.recorder", "Recorder"),
    "train": ("tokendyn.trainers", "train"),
    "TrainConfig": ("tokendyn.trainers", "TrainConfig"),
    "analysis": ("tokendyn.analysis", None),
    "synthetic": ("tokendyn.synthetic", None),
    "write_report": ("tokendyn.surfaces.report", "write_report"),
    "play": ("tokendyn.surfaces.player", "play"),
    "convert": ("tokendyn.tools.convert", "convert"),
    "save_result": ("tokendyn.surfaces.export", "save_result"),
    "run_sweep": ("tokendyn.runs.sweep", "run_sweep"),
    "compare": ("tokendyn.surfaces.compare_report", "compare"),
    "run_experiment": ("tokendyn.runs.experiment", "run_experiment"),
}

__all__ = [
    "__version__",
    "TokendynError",
    "MovieError",
    "MovieFormatError",
    "MovieLockedError",
    "MovieVersionError",
    "RecorderError",
    "ConfigError",
    "AnalysisError",
    "CompareError",
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
