"""The header of a W-movie: its ``format`` name and ``format_version``, checked in one place.

Every reader (the HDF5 and zarr sources, ``info``, ``check``, ``repair``) calls :func:`check_header`
on the root attributes before anything else. The rules (``docs/format.md``): the format name must
be ``tokendyn.wmovie``; the version is ``"MAJOR.MINOR"``; a major version this reader does not know
is refused, a newer one with :class:`~tokendyn.errors.MovieVersionError` ("upgrade tokendyn"), one
below 1 (never released) with :class:`~tokendyn.errors.MovieFormatError`; a newer minor version is
read.
"""
from __future__ import annotations

from collections.abc import Mapping

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError, MovieVersionError


def parse_version(text: str) -> tuple[int, int]:
    """Parse ``"major.minor"``; raise ValueError on anything else."""
    major, minor = str(text).split(".")
    return int(major), int(minor)


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def check_format_name(attrs: Mapping[str, object], path: str, container: str = "HDF5 file") -> None:
    """Raise :class:`MovieFormatError` unless ``attrs`` declare a W-movie.

    ``container`` names what was opened in the message ("HDF5 file", "zarr group").
    """
    name = _text(attrs.get("format"))
    if not isinstance(name, str) or name != fmt.FORMAT_NAME:  # an opaque or array attribute is not a name
        raise MovieFormatError(
            f"{container} without the W-movie attributes (format={name!r}, expected {fmt.FORMAT_NAME!r})", path
        )


def check_version(attrs: Mapping[str, object], path: str) -> tuple[int, int]:
    """The ``(major, minor)`` format version in ``attrs``, if this reader knows its major version.

    Raises
    ------
    MovieVersionError
        A newer major version.
    MovieFormatError
        A missing or unreadable version, or a major version below 1.
    """
    raw = _text(attrs.get("format_version"))
    try:
        major, minor = parse_version(raw)
    except (ValueError, TypeError):
        raise MovieFormatError(f"unreadable format_version {raw!r}", path) from None
    if major > fmt.FORMAT_MAJOR:
        raise MovieVersionError(
            f"written with W-movie format {major}.{minor}; this tokendyn reads major version "
            f"{fmt.FORMAT_MAJOR} only: upgrade tokendyn",
            path,
        )
    if major < 1:
        raise MovieFormatError(f"format_version {raw!r} is not a released version", path)
    return major, minor


def check_header(attrs: Mapping[str, object], path: str, container: str = "HDF5 file") -> tuple[int, int]:
    """:func:`check_format_name`, then :func:`check_version`: the ``(major, minor)`` version."""
    check_format_name(attrs, path, container)
    return check_version(attrs, path)
