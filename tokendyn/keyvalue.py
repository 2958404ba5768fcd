"""The one ``KEY=VALUE`` syntax of tokendyn: analysis options (``-O``) and config overrides (``--set``).

A value is read as a Python literal where it is one (``3``, ``1e-3``, ``(1, 2, 4)``, ``1,2,4``,
``True``, ``None``, ``'text'``) and kept as the bare string otherwise (``center=centroid``). Keys may
use ``-`` for ``_``. Whoever takes the pairs checks the keys and the types; this module only reads.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


def parse_value(text: str) -> Any:
    """``"(1,2,4)"`` -> ``(1, 2, 4)``, ``"0.9,0.95"`` -> ``(0.9, 0.95)``, ``"centroid"`` -> ``"centroid"``."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_pairs(pairs: Iterable[str], *, flag: str = "KEY=VALUE", read_values: bool = True) -> dict[str, Any]:
    """``["lags=(1,2,4)", "center=centroid"]`` -> ``{"lags": (1, 2, 4), "center": "centroid"}``.

    With ``read_values=False`` the values stay the stripped strings (for a caller that reads some
    keys as text, e.g. a string-typed config field, and others with :func:`parse_value`).

    Raises
    ------
    ValueError
        For a pair without ``=`` or with an empty key; the message names ``flag``. Callers turn it
        into their own :class:`~tokendyn.errors.TokendynError`.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"{flag} takes KEY=VALUE, got {pair!r}")
        out[key] = parse_value(text) if read_values else text.strip()
    return out
