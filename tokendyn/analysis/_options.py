"""What an analysis's options accept, declared once beside its signature and checked in one place.

An analysis declares a :class:`Rule` for each of its options with :func:`accepts`; the decorated
function checks every option before it runs (from Python and from ``tokendyn analyse -O``, whose
:func:`tokendyn.analysis.registry.parse_options` reads the same rules), refuses option names it
does not have, and puts the movie's path on any tokendyn error raised without one. A refused
value is one :class:`~tokendyn.errors.AnalysisError`: ``"MOVIE: ANALYSIS's OPTION must be
EXPECTED, not VALUE"``.
"""
from __future__ import annotations

import functools
import inspect
import math
import reprlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError, TokendynError

COMMON = ("ds", "tokens", "frames", "progress")  # the arguments every analysis takes; the rest are options

F = TypeVar("F", bound=Callable[..., Any])

_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = 60


def shown(value: Any) -> str:
    """A value as an error message shows it: its ``repr``, cut short (one line, whatever its size)."""
    return _short.repr(value)


class Rule(NamedTuple):
    """What one option accepts: ``fits(value)`` says whether it does, ``expected`` says what in words."""

    expected: str
    fits: Callable[[Any], bool]


def is_whole(value: Any, minimum: int | None = None) -> bool:
    """Whether ``value`` is a whole number (not a bool, not a float), at least ``minimum``."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    return whole and (minimum is None or value >= minimum)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (an int or a float, not a bool, not NaN or infinite)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float is still a finite number
        return True


def whole(minimum: int | None = None, expected: str | None = None) -> Rule:
    """A whole number, at least ``minimum``."""
    words = expected or ("a whole number" + ("" if minimum is None else f" >= {minimum}"))
    return Rule(words, lambda v: is_whole(v, minimum))


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False,
           expected: str | None = None) -> Rule:
    """A finite number between ``low`` and ``high`` (each bound included unless ``open_``)."""
    def fits(v: Any) -> bool:
        if not is_number(v):
            return False
        above = low is None or (v > low if open_low else v >= low)
        below = high is None or (v < high if open_high else v <= high)
        return above and below

    if expected is None:
        expected = "a finite number"
        if low is not None and high is not None:
            expected += f" {'above' if open_low else 'from'} {low:g} {'and below' if open_high else 'to'} {high:g}"
        elif low is not None:
            expected += f" {'>' if open_low else '>='} {low:g}"
        elif high is not None:
            expected += f" {'<' if open_high else '<='} {high:g}"
    return Rule(expected, fits)


def choice(*words: str) -> Rule:
    """One of a few words."""
    quoted = [repr(w) for w in words]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return Rule(expected, lambda v: isinstance(v, str) and v in words)


def is_sequence(value: Any) -> bool:
    """A tuple, list or 1-d array (not a string)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def sequence(item: Rule, expected: str, *, none: bool = False) -> Rule:
    """A non-empty sequence of values that each fit ``item`` (or ``None`` where ``none``)."""
    return Rule(expected, lambda v: (none and v is None) or (is_sequence(v) and len(v) > 0 and all(item.fits(x) for x in v)))


def tokens() -> Rule:
    """A token selection (its ids are checked against the movie when the analysis runs)."""
    def fits(v: Any) -> bool:
        if v is None or isinstance(v, str):
            return v is None or v == "all" or v in fmt.TOKEN_CLASSES
        arr = np.asarray(v) if is_sequence(v) or isinstance(v, (np.ndarray, int, np.integer)) else None
        return arr is not None and arr.ndim <= 1 and (arr.dtype.kind in "biu" or arr.size == 0)

    return Rule("a token class ('all', 'live', 'dead', 'phantom'), token ids or a boolean mask", fits)


def movie_path(ds: Any) -> str | None:
    """The file a Dataset was opened from, for error messages (``None`` for one made in memory)."""
    encoding = getattr(ds, "encoding", None)
    return encoding.get("source") if isinstance(encoding, dict) else None


def check_option(ds: xr.Dataset, analysis: str, option: str, value: Any, ok: bool, expected: str) -> None:
    """Unless ``ok``: :class:`~tokendyn.errors.AnalysisError` ``"MOVIE: ANALYSIS's OPTION must be
    EXPECTED, not VALUE"``."""
    if not ok:
        raise AnalysisError(f"{analysis}'s {option} must be {expected}, not {shown(value)}", movie_path(ds))


def own_options(fn: Callable[..., Any]) -> list[str]:
    """The names of a function's own keyword options (every argument with a default but the common ones)."""
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.name not in COMMON and p.default is not inspect.Parameter.empty]


def rules_of(fn: Callable[..., Any]) -> dict[str, Rule]:
    """The rules an analysis declared with :func:`accepts` (empty for one that declared none)."""
    return dict(getattr(fn, "option_rules", {}))


def accepts(**rules: Rule) -> Callable[[F], F]:
    """Decorator: the analysis checks its options against ``rules`` (one per option) before it runs.

    It also refuses an option name it does not have, a ``ds`` that is not a Dataset, and puts the
    movie's path on a tokendyn error raised without one. The decorated function keeps its name,
    docstring and signature (the registry reads its options from it).
    """
    def decorate(fn: F) -> F:
        missing = [name for name in own_options(fn) if name not in rules]
        extra = [name for name in rules if name not in own_options(fn)]
        if missing or extra:
            raise TypeError(f"{fn.__qualname__}: a rule for each option and none else (no rule for {missing}, "
                            f"rules without an option: {extra})")
        signature = inspect.signature(fn)
        name = fn.__name__

        @functools.wraps(fn)
        def checked(ds: Any, *args: Any, **kwargs: Any) -> Any:
            path = movie_path(ds)
            if not isinstance(ds, xr.Dataset):
                raise AnalysisError(f"{name} takes a Dataset from tokendyn.open_movie(path), not {type(ds).__name__}")
            unknown = [key for key in kwargs if key not in signature.parameters]
            if unknown:
                raise AnalysisError(f"{name} has no option {unknown[0]!r}; its options: "
                                    f"{', '.join(own_options(fn)) or 'none'}", path)
            bound = signature.bind(ds, *args, **kwargs)
            bound.apply_defaults()
            for option, rule in rules.items():
                value = bound.arguments[option]
                check_option(ds, name, option, value, rule.fits(value), rule.expected)
            try:
                return fn(*bound.args, **bound.kwargs)
            except TokendynError as exc:
                if exc.path is not None or path is None:
                    raise
                raise type(exc)(exc.problem, path) from exc

        checked.option_rules = dict(rules)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate
