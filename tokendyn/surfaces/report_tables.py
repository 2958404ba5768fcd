"""The report's tables: the headline numbers flattened to rows (value ± error, units, what each is
measured against, from the analysis's ``headline_fields``) and the movie and configuration rows."""
from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from tokendyn.jsonable import jsonable as _jsonable
from tokendyn.jsonable import number as _number
from tokendyn.stats import plus_minus
from tokendyn.surfaces.palette import CLASS_ORDER

__all__ = ["config_text", "fields_of", "headline_rows", "movie_rows"]


_CLASSES = {*CLASS_ORDER, "all"}


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """A nested headline as ``{path: value}``, each path the tuple of its keys (a key may hold a dot:
    a threshold ``"0.5"``); short lists of numbers (a step range) stay one value."""
    out: dict[tuple[str, ...], Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(_flatten(v, (*prefix, str(k))))
    elif isinstance(value, (list, tuple)) and not (value and all(isinstance(v, (int, float)) for v in value)
                                                   and len(value) <= 3):
        for i, v in enumerate(value):
            out.update(_flatten(v, (*prefix, str(i))))
    else:
        out[prefix] = value
    return out


def _error_key(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The number whose standard error ``path`` is (a part ``X_error`` for ``X``), else None."""
    if not any(p.endswith("_error") for p in path):
        return None
    return tuple(p[: -len("_error")] if p.endswith("_error") else p for p in path)


def _generic_units(key: str) -> str:
    last = key.split(".")[-1].lower()
    parts = key.lower()
    if "pvalue" in last or last in ("p",):
        return "1 (p-value)"
    if last.endswith("step") or last in ("start", "bottom", "contraction_start") or ".freeze_onset." in f".{parts}.":
        return "steps"
    if "msd" in parts:
        return "embedding units²"
    if any(w in last for w in ("fraction", "ratio", "depth", "excess", "rho", "lr_min", "lr_max", "moved",
                               "predicted", "rise", "correlation")):
        return "1"
    if any(w in last for w in ("radius", "norm", "displacement", "drop", "noise")):
        return "embedding units"
    if "temperature" in last:
        return "sites²"
    return ""


def fields_of(spec: Any, result: Any) -> dict[str, tuple]:
    """An analysis's own words on its headline numbers (``Analysis.headline_fields``): a flattened
    key or pattern -> ``(measured against, units)`` or ``(measured against, units, primary)``."""
    return {} if spec.headline_fields is None else dict(spec.headline_fields(result))


def _describe(key: str, fields: Mapping[str, tuple]) -> tuple[str, str, bool]:
    """(measured against, units, primary) of a headline number by its dotted path: its analysis's
    own words where it declares them (the exact path, else the first glob pattern that matches,
    ``*`` any text), else units read off the path."""
    found = fields.get(key) or next((v for pattern, v in fields.items() if fnmatch.fnmatchcase(key, pattern)), None)
    if found is None:
        return "", _generic_units(key), False
    about, units, *rest = found
    return about, units, bool(rest and rest[0])


def _value_text(value: Any, error: Any, units: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and not isinstance(error, (int, float)):
        return str(int(value))
    if isinstance(value, (float, int, np.floating)) and "p-value" in units and 0 <= value < 1e-16:
        return "< 1e-16"  # double precision has lost it
    if isinstance(value, (float, int, np.floating)):
        return plus_minus(float(value), float(error) if isinstance(error, (int, float)) else None)
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return " .. ".join(str(v) for v in value)
    return str(value)


def _quantity(parts: list[str]) -> str:
    """``["freeze_onset", "0.5"]`` -> ``"freeze onset (0.5)"``, ``["phases", "0", "depth"]`` ->
    ``"phase 1 depth"``: the name, then the rest of the path."""
    name = parts[0].replace("_", " ")
    if len(parts) >= 3 and parts[1].isdigit():
        return f"{name.rstrip('s')} {int(parts[1]) + 1} {' '.join(parts[2:]).replace('_', ' ')}"
    rest = ", ".join(parts[1:]).replace("_", " ")
    return f"{name} ({rest})" if rest else name


def headline_rows(headline: Mapping[str, Any], fields: Mapping[str, tuple]) -> list[tuple[bool, list[str]]]:
    """One analysis's headline as table rows, each ``(primary, [quantity, class, value ± error,
    units, measured against])`` (an ``X_error`` is shown beside ``X``, not as a row of its own)."""
    flat = _flatten(_jsonable(headline))
    errors = {_error_key(k): v for k, v in flat.items() if _error_key(k)}
    rows = []
    for path, value in flat.items():
        if _error_key(path):
            continue
        about, units, primary = _describe(".".join(path), fields)
        cls = next((p for p in path if p in _CLASSES), "")
        rest = [p for p in path if p != cls] or list(path)
        rows.append((primary, [_quantity(rest), cls, _value_text(value, errors.get(path), units), units, about]))
    return rows


def movie_rows(meta: dict) -> list[tuple[str, Any]]:
    """The movie table's rows from ``tools.inspect.info``: tokens per class as "live 328 · dead 184 · ...", steps, size."""
    per = meta.get("tokens_per_class") or {}
    ordered = [(c, per[c]) for c in CLASS_ORDER if c in per] + [(c, n) for c, n in per.items() if c not in CLASS_ORDER]
    steps = meta.get("steps") or []
    rows: list[tuple[str, Any]] = [("frames", str(meta["frames"])),
                                   ("steps", " .. ".join(str(s) for s in steps) if steps else "none"),
                                   ("tokens", (str(meta["tokens"]), ordered)),
                                   ("dim", str(meta["dim"])), ("dtype", str(meta["dtype"])),
                                   ("matrices", ", ".join(map(str, meta.get("matrices") or [])) or "none"),
                                   ("scalars", ", ".join(map(str, meta.get("scalars") or [])) or "none"),
                                   ("on disk", f"{meta['bytes_on_disk'] / 2**20:.1f} MiB")]
    title = (meta.get("attrs") or {}).get("title")
    if title:
        rows.insert(0, ("title", str(title)))
    return rows


def config_text(value: Any) -> str:
    """A configuration value as the report's table shows it (JSON for a container, ``none`` for nothing)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_number) if value else "none"
    return "none" if value is None else str(value)
