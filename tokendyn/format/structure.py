"""The structural rules of a W-movie, in one place: what every reader (``open_movie``, ``info``) refuses
and ``check`` lists.

The rules read metadata only (names, kinds, shapes, dtypes, the ``dtype`` attribute), never an
array's values, and allocate nothing from a declared size: a shape is first held against the bytes
the movie actually has (:func:`fits_in`), so a header declaring 2**40 tokens is a one-line error,
not a ``MemoryError``. They apply to any store that maps names to arrays with ``shape``, ``ndim``,
``dtype`` and ``attrs`` (an h5py File, the zarr source); a group (anything without a shape) where an
array belongs is a problem, not a crash. The value rules of the token metadata, read at open
(``token_class`` codes, UTF-8 ``token_text``), are here too.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieFormatError

# No stored bytes decode to more than this many (deflate's ceiling is about 1032:1), so a declared
# size above ``MAX_EXPANSION`` times the movie's bytes cannot be real data.
MAX_EXPANSION = 1100
SLACK_BYTES = 2**20

# Per-token arrays and their dtype kinds.
_TOKEN_ARRAYS = {fmt.TOKEN_CLASS: "iu", fmt.TOKEN_TEXT: "OSUT", fmt.TOKEN_COUNT: "iu"}


@dataclass(frozen=True)
class MovieShape:
    """The sizes a movie declares, once they passed the structural rules."""

    frames: int  # the length of the frame axis (``step``), complete frames or not
    tokens: int
    dims: int
    matrices: dict[str, str]  # matrix name -> logical dtype ("float32", "float16", "bfloat16")


def fits_in(nbytes: int, stored_bytes: int) -> bool:
    """Whether ``nbytes`` of data could come out of a movie of ``stored_bytes`` bytes."""
    return nbytes <= MAX_EXPANSION * max(int(stored_bytes), 0) + SLACK_BYTES


def _text(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def logical_dtype(arr: Any) -> object:
    """The logical dtype a matrix declares in its ``dtype`` attribute (default: its stored dtype)."""
    return _text(arr.attrs.get("dtype", arr.dtype.name))


def _is_array(obj: Any) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype")


def _array(arrays: Any, name: str, problems: list[str], required: bool = False) -> Any:
    if name not in arrays:
        if required:
            problems.append(f"the movie has no {name!r} variable")
        return None
    obj = arrays[name]
    if not _is_array(obj):
        problems.append(f"{name!r} is a group, not an array")
        return None
    return obj


def _matrix(name: str, arr: Any, stored_bytes: int, problems: list[str]) -> tuple[tuple[int, int], str] | None:
    """A matrix's (tokens, dims) and logical dtype, or None after listing why it cannot be read."""
    if arr.ndim != 3:
        problems.append(f"{name} must be 3-D (frame, token, dim), has shape {tuple(arr.shape)}")
        return None
    logical = logical_dtype(arr)
    if logical not in fmt.STORAGE_DTYPES:
        problems.append(f"{name} has unsupported dtype attribute {logical!r}")
        return None
    expected = fmt.STORAGE_DTYPES[logical]
    if arr.dtype != expected:
        problems.append(f"{name} declares dtype {logical} but is stored as {arr.dtype} (expected {expected})")
        return None
    tokens, dims = (int(n) for n in arr.shape[1:])
    if tokens == 0 or dims == 0:
        problems.append(f"{name} has a zero-length {'token' if tokens == 0 else 'dim'} axis (shape {tuple(arr.shape)})")
        return None
    if not fits_in(tokens * dims * expected.itemsize, stored_bytes):
        problems.append(f"{name} declares {tokens} tokens x {dims} dims per frame, more than a movie of "
                        f"{stored_bytes} bytes can hold")
        return None
    return (tokens, dims), str(logical)


def _problems(arrays: Any, stored_bytes: int, found: dict[str, MovieShape]) -> Iterator[str]:
    problems: list[str] = []
    step = _array(arrays, fmt.STEP, problems, required=True)
    w = _array(arrays, "W", problems, required=True)
    tc = _array(arrays, fmt.TOKEN_CLASS, problems, required=True)
    yield from problems
    problems.clear()
    for name in fmt.READER_NAMES:
        if name in arrays:
            yield (f"the movie stores a variable {name!r}, a name readers give the raw bfloat16 bits of "
                   f"{name.removesuffix('_bits')!r}: rename it")
    frames = None
    if step is not None:
        if step.ndim != 1 or step.dtype.kind not in "iu":
            yield f"'step' must be a 1-D integer array, has shape {tuple(step.shape)} and dtype {step.dtype}"
        elif not fits_in(int(step.shape[0]) * step.dtype.itemsize, stored_bytes):
            yield f"'step' declares {step.shape[0]} frames, more than a movie of {stored_bytes} bytes can hold"
        else:
            frames = int(step.shape[0])
    shape, matrices = None, {}
    if w is not None:
        got = _matrix("W", w, stored_bytes, problems)
        if got is not None:
            shape, matrices["W"] = got
    e = _array(arrays, "E", problems)
    if e is not None:
        got = _matrix("E", e, stored_bytes, problems)
        if got is not None and shape is not None and got[0] != shape:
            problems.append(f"E has shape {got[0]} per frame but W has {shape}")
        elif got is not None:
            matrices["E"] = got[1]
    yield from problems
    problems.clear()
    for name in (fmt.TIME, fmt.DIM_FRAME, fmt.DIM_TOKEN, fmt.DIM_DIM):
        arr = _array(arrays, name, problems)
        size = None if shape is None else dict(zip((fmt.DIM_TOKEN, fmt.DIM_DIM), shape)).get(name)
        if arr is not None and size is not None and tuple(arr.shape) != (size,):  # a scale that lies about its axis
            problems.append(f"the {name!r} scale has shape {tuple(arr.shape)}, but W has {size} {name}s")
    for name in fmt.NONFINITE.values():
        arr = _array(arrays, name, problems)
        if arr is not None and (arr.ndim != 1 or arr.dtype.kind not in "iu"):
            problems.append(f"{name!r} must be a 1-D integer array, has shape {tuple(arr.shape)} and dtype {arr.dtype}")
    for name, kinds in _TOKEN_ARRAYS.items():
        arr = tc if name == fmt.TOKEN_CLASS else _array(arrays, name, problems)
        if arr is None:
            continue
        if arr.dtype.kind not in kinds:
            problems.append(f"{name!r} has dtype {arr.dtype}, expected {'text' if 'O' in kinds else 'integers'}")
        elif shape is not None and tuple(arr.shape) != (shape[0],):
            problems.append(f"{name!r} has shape {tuple(arr.shape)}, expected ({shape[0]},)")
    yield from problems
    if frames is not None and shape is not None and tc is not None:
        found["shape"] = MovieShape(frames, shape[0], shape[1], matrices)


def structure_problems(arrays: Any, stored_bytes: int) -> tuple[MovieShape | None, list[str]]:
    """Every structural rule ``arrays`` (a movie's store) breaks, and its sizes when they can be read
    (``None`` when a rule they rest on is broken).

    Parameters
    ----------
    arrays
        The movie's store: ``name in arrays`` and ``arrays[name]`` (an array, or a group).
    stored_bytes
        The movie's size on disk, against which declared sizes are held.
    """
    found: dict[str, MovieShape] = {}
    problems = list(_problems(arrays, stored_bytes, found))
    return found.get("shape"), problems


def check_structure(arrays: Any, path: str, stored_bytes: int) -> MovieShape:
    """The movie's sizes; raise :class:`MovieFormatError` (naming ``path``) at the first broken rule."""
    for problem in _problems(arrays, stored_bytes, found := {}):
        raise MovieFormatError(problem, path)
    return found["shape"]


def token_class_problem(values: np.ndarray) -> str | None:
    """What is wrong with the ``token_class`` codes ``values`` (None: every one is 0, 1 or 2)."""
    values = np.asarray(values)
    bad = np.flatnonzero((values < fmt.CLASS_LIVE) | (values > fmt.CLASS_PHANTOM))
    if not bad.size:
        return None
    more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
    return (f"'token_class' holds {values[bad[0]]} at token {bad[0]}{more}; expected 0 (live), 1 (dead), "
            "2 (phantom)")


def decode_token_text(raw: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Token texts as an object array of ``str``, and what is wrong with them (None: all valid UTF-8).

    Bytes are decoded strictly; an entry that is not UTF-8 comes back with its bad bytes escaped.
    """
    raw = np.asarray(raw, dtype=object).reshape(-1)
    out = np.empty(raw.shape, dtype=object)
    problem = None
    for i, value in enumerate(raw):
        if isinstance(value, (bytes, np.bytes_)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                if problem is None:
                    problem = f"'token_text' entry {i} is not valid UTF-8 ({bytes(value)[:40]!r})"
                value = bytes(value).decode("utf-8", "backslashreplace")
        out[i] = str(value)
    return out, problem
