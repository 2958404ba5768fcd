"""Every analysis, registered once: what the CLI, the report, the summaries, the tests and the
benchmarks iterate over.

An analysis module registers its function with :func:`register` beside its definition; the
registry finds the built-in analyses by importing every public module of :mod:`tokendyn.analysis`
(so a new one needs no edit anywhere else), and third-party ones through the entry-point group
``tokendyn.analyses`` (an entry point names a module that registers on import, an
:class:`Analysis`, or a function, registered under the entry point's name).

Its options are read off the function's signature; its help is its docstring's first paragraph.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import xarray as xr

from tokendyn.errors import AnalysisError
from tokendyn.keyvalue import parse_pairs

from ._options import COMMON, rules_of, shown
from .base import TokenSelection, check_result

ENTRY_POINT_GROUP = "tokendyn.analyses"

F = TypeVar("F", bound=Callable[..., xr.Dataset])


class ReportFigure(NamedTuple):
    """One figure of an analysis in the report: its section id (``fig-ID``), title and figure."""

    id: str
    title: str
    figure: Any  # matplotlib.figure.Figure (matplotlib is imported only where figures are made)


def _always(ds: xr.Dataset, tokens: TokenSelection) -> bool:
    return True


def _given_or_all(ds: xr.Dataset, tokens: TokenSelection) -> TokenSelection:
    return "all" if tokens is None else tokens


def _all_tokens(ds: xr.Dataset) -> Sequence[TokenSelection]:
    return ("all",)


@dataclass(frozen=True, eq=False)
class Analysis:
    """One registered analysis.

    Attributes
    ----------
    name : str
        Its short name (``tokendyn analyse MOVIE NAME``, the report's summary.json key).
    function : callable
        ``function(ds, tokens="all", *, frames=None, <options>, progress=None) -> xarray.Dataset``.
    order : int
        Where it comes in listings, the report and the summaries (lower first, then by name).
    applies : callable
        ``applies(ds, tokens) -> bool``: whether the report and the summaries run it on these
        tokens of this movie (e.g. lattice motion only on a bfloat16 movie). Default: always.
    report_tokens : callable
        ``report_tokens(ds, tokens) -> tokens``: the tokens the report runs it on, given the
        report's selection (``None`` when none was given). Default: that selection, else ``"all"``.
    summary_tokens : callable
        ``summary_tokens(ds) -> [tokens, ...]``: the selections the train summary runs it on, one
        run each. Default: ``("all",)``.
    run_options : mapping
        The options the report and the summaries call it with (e.g. ``{"smooth": 3}``).
    headline : callable or None
        ``headline(result) -> dict``: its entry in the report's summary.json (numpy scalars and
        NaN are made JSON-friendly by the report).
    headline_fields : callable or None
        ``headline_fields(result) -> {path: (measured against, units[, primary])}``: what each
        headline number is measured against and its units, for the report's headline table;
        ``path`` is a number's dotted path in the headline (``"dead.late_mean_step_displacement"``)
        or a glob pattern of paths (``"*.frozen_fraction"``); ``primary`` marks the numbers the
        table shows first.
    summary_lines : callable or None
        ``summary_lines(result) -> [(label, text), ...]``: its lines in the train summary.
    figures : callable or None
        ``figures(result, colours) -> [ReportFigure, ...]``, ``colours`` mapping token class names
        to colours; import matplotlib inside it, never at module level.
    compare_tokens : callable
        ``compare_tokens(ds) -> tokens``: the tokens ``tokendyn compare`` runs it on (one run per
        movie; its curves, token values and events all come from that run). Default: the report's
        tokens for no selection.
    curves : callable or None
        ``curves(result) -> {name: DataArray}``: the curves ``tokendyn compare`` overlays across
        runs, aligned on step: each over ``frame`` (with the ``step`` coordinate) and optionally
        ``class``, with ``long_name`` and ``units``.
    token_values : callable or None
        ``token_values(result) -> {name: DataArray}``: one number per token (over ``token``, its
        coordinate the token ids), with ``long_name`` and ``units``; ``tokendyn compare`` tests
        the token classes against each other with them (NaN: not defined for that token).
    events : callable or None
        ``events(result) -> {name: value}``: what happened in the run, counted across a group's
        runs: a ``bool`` ("inhale: 3 of 3 runs"), an ``int`` (a count: "2 phases in 2 of 3"), or a
        ``float`` step (its mean and spread over the runs where it happened; NaN: it did not).

    A headline's number ``X`` carries its standard error as ``X_error`` beside it (the report and
    ``tokendyn compare`` show ``X ± X_error``).
    """

    name: str
    function: Callable[..., xr.Dataset]
    order: int = 100
    applies: Callable[[xr.Dataset, TokenSelection], bool] = _always
    report_tokens: Callable[[xr.Dataset, TokenSelection], TokenSelection] = _given_or_all
    summary_tokens: Callable[[xr.Dataset], Sequence[TokenSelection]] = _all_tokens
    run_options: Mapping[str, Any] = field(default_factory=dict)
    headline: Callable[[xr.Dataset], dict[str, Any]] | None = None
    headline_fields: Callable[[xr.Dataset], Mapping[str, tuple]] | None = None
    summary_lines: Callable[[xr.Dataset], list[tuple[str, str]]] | None = None
    figures: Callable[[xr.Dataset, Mapping[str, str]], list[ReportFigure]] | None = None
    compare_tokens: Callable[[xr.Dataset], TokenSelection] | None = None
    curves: Callable[[xr.Dataset], dict[str, xr.DataArray]] | None = None
    token_values: Callable[[xr.Dataset], dict[str, xr.DataArray]] | None = None
    events: Callable[[xr.Dataset], dict[str, Any]] | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Its own keyword options and their defaults (from the signature)."""
        return options(self.function)

    @property
    def help(self) -> str:
        """Its docstring's first paragraph, on one line."""
        return first_paragraph(self.function)

    def __call__(self, ds: xr.Dataset, *args: Any, **kwargs: Any) -> xr.Dataset:
        """Run it; the result is checked (:func:`tokendyn.analysis.base.check_result`)."""
        result = self.function(ds, *args, **kwargs)
        check_result(result, self.function.__name__)
        return result

    def tokens_to_compare(self, ds: xr.Dataset) -> TokenSelection:
        """The tokens ``tokendyn compare`` runs it on (:attr:`compare_tokens`, else the report's)."""
        return self.compare_tokens(ds) if self.compare_tokens is not None else self.report_tokens(ds, None)

    def standard_run(self, ds: xr.Dataset, tokens: TokenSelection, *, frames: Any = None,
                     progress: Callable[[int, int], None] | None = None) -> xr.Dataset:
        """Run it as the report and the summaries do: on ``tokens``, with :attr:`run_options`."""
        return self(ds, tokens, frames=frames, progress=progress, **self.run_options)


_REGISTRY: dict[str, Analysis] = {}
_discovered = False


def register(name: str, **fields: Any) -> Callable[[F], F]:
    """Decorator registering an analysis function under ``name``, with the other
    :class:`Analysis` fields as keywords; the function is returned unchanged."""
    def decorate(function: F) -> F:
        add(Analysis(name, function, **fields))
        return function

    return decorate


def add(spec: Analysis) -> Analysis:
    """Register ``spec``. Registering the same function again (a module reloaded) replaces it; a
    name (or function name) taken by another function is a :class:`TypeError`, as is a function
    whose signature does not follow the pattern."""
    _check_signature(spec.function)
    for other in _REGISTRY.values():
        clash = {spec.name, spec.function.__name__} & {other.name, other.function.__name__}
        if clash and _origin(other.function) != _origin(spec.function):
            raise TypeError(f"cannot register {_origin(spec.function)} as {spec.name!r}: "
                            f"{sorted(clash)[0]!r} is {_origin(other.function)}")
    for key in [key for key, other in _REGISTRY.items() if _origin(other.function) == _origin(spec.function)]:
        del _REGISTRY[key]
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> Analysis:
    """Remove the analysis called ``name`` (short name or function name) and return it."""
    spec = get(name)
    del _REGISTRY[spec.name]
    return spec


@contextmanager
def registered(spec: Analysis) -> Iterator[Analysis]:
    """``spec`` registered inside the ``with`` block only (for tests and examples)."""
    analyses()  # the built-in ones first, so that leaving the block removes only this one
    add(spec)
    try:
        yield spec
    finally:
        _REGISTRY.pop(spec.name, None)


def analyses() -> dict[str, Analysis]:
    """Every registered analysis by short name, in :attr:`Analysis.order`."""
    _discover()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def names() -> list[str]:
    """The short names of every registered analysis, in order."""
    return list(analyses())


def get(name: str) -> Analysis:
    """The analysis called ``name`` (short name or function name)."""
    found = analyses()
    for short, spec in found.items():
        if name in (short, spec.function.__name__):
            return spec
    raise AnalysisError(f"unknown analysis {name!r}; choose from {', '.join(found)}")


def options(fn: Callable[..., Any] | Analysis) -> dict[str, Any]:
    """An analysis's own keyword options and their defaults."""
    fn = fn.function if isinstance(fn, Analysis) else fn
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.name not in COMMON and p.default is not inspect.Parameter.empty}


def first_paragraph(fn: Callable[..., Any]) -> str:
    """A function's docstring up to its first blank line, joined into one line."""
    paragraph = (inspect.getdoc(fn) or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def parse_options(fn: Callable[..., Any] | Analysis, pairs: list[str], movie: str | None = None) -> dict[str, Any]:
    """``["lags=1,2,4", "center=centroid"]`` -> keyword arguments, checked against the signature:
    each key must be an option, and each value must fit the option's rule (see
    :func:`tokendyn.analysis.base.accepts`) or, for an analysis that declares none, be of the kind
    of its default (a number, a whole number, a word, a sequence; ``None`` where the annotation
    allows it). Errors name ``movie``.

    A sequence is written ``1,2,4`` (no brackets, so the shell needs no quotes), or ``(1,2,4)`` as
    before; one value (``lags=4``) is a sequence of one where the option takes a sequence."""
    fn = fn.function if isinstance(fn, Analysis) else fn
    known = options(fn)
    try:
        out = parse_pairs(pairs, flag="-O/--option")
    except ValueError as exc:
        raise AnalysisError(str(exc), movie) from None
    parameters = inspect.signature(fn).parameters
    rules = rules_of(fn)
    for key, value in out.items():
        if key not in known:
            raise AnalysisError(f"{fn.__name__} has no option {key!r}; its options: {', '.join(known) or 'none'}",
                                movie)
        rule = rules.get(key)
        if _wants_sequence(known[key], rule) and not isinstance(value, (tuple, list)) and value is not None:
            value = out[key] = (value,)  # lags=4: a sequence of one
        expected = (None if rule.fits(value) else rule.expected) if rule else \
            _kind_mismatch(value, known[key], str(parameters[key].annotation))
        if expected:
            raise AnalysisError(f"{fn.__name__}'s {key} must be {expected}, not {shown(value)}", movie)
    return out


def _wants_sequence(default: Any, rule: Any) -> bool:
    """Whether an option takes a sequence: its default is one, or its rule takes ``(x,)`` but not ``x``."""
    if isinstance(default, (tuple, list)):
        return True
    if rule is None or isinstance(default, (str, bytes)):
        return False
    probe = default if default is not None else 1
    try:
        return bool(rule.fits((probe,))) and not rule.fits(probe)
    except Exception:  # noqa: BLE001 - a rule that cannot judge the probe: leave the value as written
        return False


def option_text(value: Any) -> str:
    """An option's value as ``-O KEY=VALUE`` takes it unquoted: ``(1, 2, 4)`` -> ``1,2,4``."""
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (int, float)) for v in value):
        return ",".join(repr(v) for v in value)
    if isinstance(value, str) and value and value.replace("_", "").replace("-", "").isalnum():
        return value
    return repr(value)


def _kind_mismatch(value: Any, default: Any, annotation: str) -> str | None:
    """What an option's value should be, where it is not of the kind of the default."""
    if default is None or (value is None and ("None" in annotation or "Optional" in annotation)):
        return None
    kinds = [(bool, "True or False", lambda v: isinstance(v, bool)),
             (int, "a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
             (float, "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
             (str, "a word", lambda v: isinstance(v, str)),
             ((tuple, list), "a sequence such as 1,2,4", lambda v: isinstance(v, (tuple, list)))]
    for kind, expected, fits in kinds:
        if isinstance(default, kind):
            return None if fits(value) else expected
    return None


def help_text() -> str:
    """The listing of ``tokendyn analyse``: each analysis, its help and its options (with their
    defaults, written as ``-O KEY=VALUE`` takes them)."""
    lines = ["analyses (options: -O KEY=VALUE, a sequence as 1,2,4):"]
    for short, spec in analyses().items():
        lines.append(textwrap.fill(spec.help, 110, initial_indent=f"  {short:12s} ", subsequent_indent=" " * 15))
        opts = " ".join(f"{k}={option_text(v)}" for k, v in spec.options.items())
        if opts:
            lines.append(textwrap.fill(opts, 110, initial_indent=f"  {'':12s}   options: ",
                                       subsequent_indent=" " * 27, break_long_words=False))
    return "\n".join(lines)


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _check_signature(fn: Callable[..., Any]) -> None:
    """The pattern's signature: ``(ds, tokens=..., *, frames=None, <options with defaults>,
    progress=None)``, options keyword-only, and a docstring (its first paragraph is the help)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise TypeError(f"{fn!r} has no signature to read its options from") from None
    problems = []
    if [p.name for p in params[:2]] != ["ds", "tokens"] or params[1].default is inspect.Parameter.empty:
        problems.append("its first arguments must be ds and tokens (with a default, e.g. tokens=\"all\")")
    by_name = {p.name: p for p in params}
    for name in ("frames", "progress"):
        p = by_name.get(name)
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is not None:
            problems.append(f"it must take a keyword-only {name}=None")
    for p in params[2:]:
        if p.name not in COMMON and (p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty):
            problems.append(f"its option {p.name} must be keyword-only, with a default")
    if not first_paragraph(fn):
        problems.append("it needs a docstring (its first paragraph is its help)")
    if problems:
        raise TypeError(f"{_origin(fn)} cannot be registered as an analysis: " + "; ".join(problems))


def _discover() -> None:
    """Import every public module of tokendyn.analysis (each registers what it defines), then the
    entry points of other packages; once per process."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("tokendyn.analysis")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _load_entry_points()


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            if isinstance(loaded, Analysis):
                add(loaded)
            elif callable(loaded) and not any(spec.function is loaded for spec in _REGISTRY.values()):
                add(Analysis(point.name, loaded))
        except Exception as exc:  # a broken plugin must not break the command line
            warnings.warn(f"tokendyn: the analysis entry point {point.name!r} ({point.value}) was not loaded: {exc}",
                          RuntimeWarning, stacklevel=2)
