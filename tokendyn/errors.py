"""The exceptions tokendyn raises for problems a user can fix.

Every user-facing error is a :class:`TokendynError`; its message names the file (when there is
one) and the problem. The command line prints the message without a traceback and exits non-zero.
"""
from __future__ import annotations

import os

__all__ = [
    "TokendynError",
    "MovieError",
    "MovieFormatError",
    "MovieVersionError",
    "MovieLockedError",
    "RecorderError",
    "ConfigError",
    "AnalysisError",
]


class TokendynError(Exception):
    """Base class of every error tokendyn raises on purpose."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class MovieError(TokendynError):
    """A movie file cannot be opened or read (missing, not HDF5, truncated, locked)."""


class MovieFormatError(MovieError):
    """A file is HDF5 but does not follow the W-movie spec."""


class MovieVersionError(MovieFormatError):
    """A movie was written with a newer major version of the format than this reader knows."""


class MovieLockedError(MovieError):
    """Another live process is writing the movie (it holds ``<movie>.lock``)."""


class RecorderError(TokendynError):
    """The recorder was misused, or writing the movie failed."""


class ConfigError(TokendynError):
    """A training or analysis configuration is invalid."""


class AnalysisError(TokendynError):
    """An analysis cannot run on the given movie or selection."""


class CompareError(TokendynError):
    """Runs cannot be compared as asked (a missing run, a label matching nothing, no common analysis)."""
