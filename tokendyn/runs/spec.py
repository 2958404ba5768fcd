"""Spec files of sweeps and experiments: found (a file, or a built-in by name), parsed (YAML with
PyYAML's safe loader refusing a key given twice, or TOML) and checked for their keys and the kinds
of their values, every problem one :class:`~tokendyn.errors.ConfigError` naming the file."""
from __future__ import annotations

import os
from typing import Any

from tokendyn.errors import ConfigError, TokendynError

BUILTIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweeps")
SPEC_KEYS = {"name", "preset", "presets", "steps", "seeds", "precision", "grid", "set", "record", "device"}
GRID_KEYS = {"layers", "dim", "heads", "ffn", "ffn_ratio", "batch", "context", "lr", "precision", "steps"}


def builtin_specs(builtin: str = BUILTIN) -> list[str]:
    """The names of the built-in specs in the folder ``builtin`` (the sweeps' by default)."""
    return sorted(os.path.splitext(f)[0] for f in os.listdir(builtin) if f.endswith(".yaml"))


def spec_path(source: str, builtin: str = BUILTIN) -> str:
    """The file of a spec: ``source`` itself, or the built-in spec of that name in ``builtin``."""
    if not os.path.exists(source) and source in builtin_specs(builtin):
        return os.path.join(builtin, source + ".yaml")
    return source


def read_spec(source: str, *, builtin: str = BUILTIN, what: str = "sweep spec") -> tuple[str, Any]:
    """The file of a spec (``source`` or the built-in of that name in ``builtin``) and its parsed
    YAML/TOML content, unchecked; a missing, unreadable or unparsable file is a :class:`ConfigError`
    naming it (``what`` names the kind of spec in the message)."""
    path = spec_path(source, builtin)
    if not os.path.isfile(path):
        raise ConfigError(f"no {what} file or built-in spec of that name (built-in: {', '.join(builtin_specs(builtin))})",
                          source)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} ({exc.strerror or exc})", path) from None
    return path, _parse(raw, path, what)


def _parse(raw: bytes, path: str, what: str = "sweep spec") -> Any:
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            errors: tuple[type[Exception], ...] = (tomllib.TOMLDecodeError,)
        else:
            import yaml

            errors = (yaml.YAMLError,)
    except ImportError as exc:
        package = "PyYAML" if exc.name == "yaml" else exc.name
        raise TokendynError(f"reading a {what} needs {package}: pip install 'tokendyn[distributed]'") from None
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text) if path.endswith(".toml") else yaml.load(text, Loader=_unique_key_loader())
    except (UnicodeDecodeError, ValueError, RecursionError, *errors) as exc:
        first = " ".join(str(exc).replace(' in "<unicode string>",', "").split())  # one line, however it wraps
        raise ConfigError(f"cannot parse the {what} ({first[:300]})", path) from None


def _unique_key_loader() -> type:
    """PyYAML's safe loader (no Python objects, no code), refusing a key given twice in one mapping
    (plain PyYAML keeps the last one)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    twice = key in seen
                except TypeError:  # unhashable: the safe loader refuses it below
                    continue
                if twice:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def check_shape(spec: Any, path: str, *, keys: set[str] = SPEC_KEYS, grid_keys: set[str] = GRID_KEYS,
                what: str = "sweep spec") -> None:
    """The spec's keys (of ``keys``; its grid's of ``grid_keys``) and the types of the values they
    share with a sweep's (the values themselves are the configs' to check)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{_a(what)} is a mapping (name, preset or presets, grid, ...)", path)
    unknown = set(spec) - keys
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {sorted(map(str, unknown))}; keys: {sorted(keys)}", path)
    words = lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)  # noqa: E731
    wholes = lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool)  # noqa: E731
                                                                for x in v)
    kinds = {"name": (lambda v: isinstance(v, str) and bool(v), "a word"),
             "preset": (lambda v: isinstance(v, str), "a preset name"),
             "presets": (words, "a list of preset names, e.g. [tiny, duckling]"),
             "seeds": (wholes, "a list of whole numbers, e.g. [0, 1, 2]"),
             "grid": (lambda v: isinstance(v, dict), "a mapping of config fields to lists of values"),
             "set": (lambda v: isinstance(v, dict), "a mapping of config fields to values")}
    for key, (fits, expected) in kinds.items():
        if key in spec and not fits(spec[key]):
            raise ConfigError(f"the {what}'s {key} must be {expected}, not {spec[key]!r}"[:300], path)
    bad_grid = set(spec.get("grid") or {}) - grid_keys
    if bad_grid:
        raise ConfigError(f"cannot sweep over {sorted(map(str, bad_grid))}; grid keys: {sorted(grid_keys)}", path)
    empty = [key for key, values in (spec.get("grid") or {}).items() if values == [] or isinstance(values, dict)]
    if empty:
        raise ConfigError(f"the grid's {empty[0]} must be a value or a non-empty list of values", path)
    if not spec.get("preset") and not spec.get("presets"):
        raise ConfigError(f"{_a(what)} needs preset: NAME or presets: [NAMES]", path)


def _a(what: str) -> str:
    return ("an " if what[:1] in "aeiou" else "a ") + what
