"""The recorder's checks of what it is given: each bad argument becomes one clear
:class:`~tokendyn.errors.RecorderError` naming the movie, before anything is written.

Per-token data (classes, texts, counts), the names and values of per-frame scalars, step numbers,
time stamps, the options, and each matrix's shape and dtype are checked here; whether a frame fits
the movie's layout is for the front end (:mod:`tokendyn.recorder.capture`), which knows it.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import RecorderError
from tokendyn.format.layout import config_json

from ._snapshot import _is_torch_tensor, logical_dtype, shape_of
from .schedule import Schedule, parse_schedule

# Names the readers give to variables they make: a scalar of that name would hide one.
_READER_NAMES = frozenset(f"{name}_bits" for name in fmt.MATRIX_VARIABLES)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(value: Any, what: str, path: str, *, minimum: int | None = 0) -> int:
    """``value`` as an int: an integer (Python, numpy, 0-d tensor) or a float with no fraction."""
    number = None
    if not isinstance(value, (bool, str, bytes)):
        try:
            number = operator.index(value)
        except TypeError:
            try:
                real = float(value)
            except (TypeError, ValueError, RuntimeError):
                real = math.nan
            if math.isfinite(real) and real.is_integer():
                number = int(real)
    if number is None:
        raise RecorderError(f"{what} must be a whole number, got {_describe(value)}", path)
    if minimum is not None and number < minimum:
        raise RecorderError(f"{what} must be at least {minimum}, got {number}", path)
    return number


def positive_seconds(value: Any, what: str, path: str) -> float:
    """A finite number of seconds above zero."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise RecorderError(f"{what} must be a positive number of seconds, got {_describe(value)}", path)
    return seconds


def time_stamp(value: Any, path: str) -> float | None:
    """A frame's time stamp: ``None`` (the recorder's clock), seconds, or NaN (unknown, as in the file)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.inf
    if math.isinf(seconds):
        raise RecorderError(f"time must be a number of seconds, got {_describe(value)}", path)
    return seconds


def schedule(spec: Any, path: str) -> Schedule:
    """The schedule of :func:`~tokendyn.recorder.schedule.parse_schedule`."""
    try:
        return parse_schedule(spec)
    except (TypeError, ValueError) as exc:
        raise RecorderError(f"schedule: {exc}", path) from None


def config_text(config: Any, path: str) -> str:
    """The run's config as JSON text (:func:`~tokendyn.format.layout.config_json`)."""
    try:
        return config_json(config)
    except ValueError as exc:  # text that is not JSON
        raise RecorderError(f"config is not JSON text ({exc})", path) from None


def optional_text(value: Any, what: str, path: str) -> str | None:
    """``None`` or a string."""
    if value is not None and not isinstance(value, str):
        raise RecorderError(f"{what} must be a string, got {type(value).__name__}", path)
    return value


def matrix_layout(name: str, x: Any, path: str) -> tuple[tuple[int, ...], str]:
    """Shape and logical dtype of a matrix given to ``capture``."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise RecorderError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}", path)
    try:
        return shape_of(x), logical_dtype(x)
    except RecorderError as exc:
        raise RecorderError(f"{name}: {exc.problem}", path) from None


def token_classes(token_class: Any, n_tokens: int, path: str) -> np.ndarray:
    """The ``token_class`` array (uint8 codes) from codes 0/1/2 or class names; all live if None."""
    if token_class is None:
        return np.zeros(n_tokens, dtype=np.uint8)
    arr = np.asarray(token_class.detach().cpu() if _is_torch_tensor(token_class) else token_class)
    if arr.shape != (n_tokens,):
        raise RecorderError(f"token_class has shape {arr.shape}, expected ({n_tokens},)", path)
    if arr.dtype.kind in "US":
        try:
            return np.array([fmt.class_code(str(c)) for c in arr], dtype=np.uint8)
        except ValueError as exc:
            raise RecorderError(f"token_class: {exc}", path) from None
    integral = arr.dtype.kind in "iub" or (arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    if not integral or arr.min(initial=0) < 0 or arr.max(initial=0) > fmt.CLASS_PHANTOM:
        bad = arr[~np.isin(arr, fmt.FLAG_VALUES)] if arr.dtype.kind in "iufb" else arr
        shown = _describe(bad[0].item()) if bad.size else arr.dtype.name
        raise RecorderError(f"token_class values must be 0 (live), 1 (dead) or 2 (phantom), got {shown}", path)
    return arr.astype(np.uint8)


def token_texts(token_text: Any, path: str) -> list[str] | None:
    """Per-token texts as ``str``: each a ``str`` or UTF-8 ``bytes`` that HDF5 can store as UTF-8."""
    if token_text is None:
        return None
    if isinstance(token_text, (str, bytes)):
        raise RecorderError("token_text must be a sequence of strings, one per token, not one string", path)
    texts = []
    for i, text in enumerate(token_text):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecorderError(f"token_text[{i}] is not valid UTF-8 ({exc.reason} at byte {exc.start})", path) from None
        elif not isinstance(text, str):
            raise RecorderError(f"token_text[{i}] is {type(text).__name__} {_describe(text)}, expected a string", path)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecorderError(f"token_text[{i}] cannot be stored as UTF-8 ({exc.reason})", path) from None
        texts.append(str(text))
    return texts


def token_counts(token_count: Any, path: str) -> np.ndarray | None:
    """Per-token occurrence counts: whole numbers, none negative."""
    if token_count is None:
        return None
    arr = np.asarray(token_count.detach().cpu() if _is_torch_tensor(token_count) else token_count)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise RecorderError(f"token_count must hold whole numbers, got dtype {arr.dtype}", path)
    if arr.size and arr.min() < 0:
        raise RecorderError(f"token_count holds a negative count ({int(arr.min())})", path)
    return arr.astype(np.int64)


def scalar_names(names: Iterable[Any], path: str) -> list[str]:
    """Names of per-frame scalars: strings HDF5 takes as one dataset name, none the format's."""
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name or name == "." or "/" in name or "\0" in name:
            raise RecorderError(f"{_describe(name)} cannot name a scalar: use a non-empty string without '/'", path)
    reserved = sorted({name for name in names if name in fmt.RESERVED_NAMES or name in _READER_NAMES})
    if reserved:
        raise RecorderError(f"scalar name(s) {reserved} are reserved by the format", path)
    if len(set(names)) != len(names):
        raise RecorderError(f"scalar names {names} hold a name twice", path)
    return names


def scalar_values(scalars: Mapping[str, Any], path: str) -> None:
    """Each per-frame scalar must be one real number (a Python or numpy number, or a one-element tensor)."""
    for name, value in scalars.items():
        if _is_torch_tensor(value):
            if value.numel() != 1 or value.is_complex():
                raise RecorderError(f"scalar {name!r} must be one real number, got a tensor of shape "
                                    f"{list(value.shape)} and dtype {value.dtype}", path)
            continue
        if isinstance(value, (numbers.Real, np.bool_)) or (isinstance(value, np.ndarray) and value.shape == ()
                                                          and value.dtype.kind in "biuf"):
            continue
        raise RecorderError(f"scalar {name!r} must be a real number, got {type(value).__name__} {_describe(value)}",
                            path)
