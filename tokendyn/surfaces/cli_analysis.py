"""``tokendyn analyse`` and ``report``."""
from __future__ import annotations

import argparse
import inspect
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from tokendyn.surfaces.cli_common import (
    add_pass_arguments,
    examples,
    parse_frames,
    parse_tokens,
    shell_words,
    terminal_text,
    with_progress,
)

MAX_HEADLINE_ROWS = 40  # the table's headline rows at most (the rest: -o out.nc keeps everything)
PER_CLASS_FIELDS = 3  # per-class headline values shown on a class's line at most
_CLASS_NAMES = ("live", "dead", "phantom")  # tokendyn.format.TOKEN_CLASSES (not imported at start-up)


def cmd_analyse(args: argparse.Namespace) -> int:
    from tokendyn.analysis import registry
    from tokendyn.cluster import compute_on
    from tokendyn.progress import kernels_note
    from tokendyn.sources.dataset import open_movie
    from tokendyn.surfaces.export import save_result

    if args.name is None:
        print(registry.help_text())
        return 0
    spec = registry.get(args.name)
    kwargs: dict[str, Any] = registry.parse_options(spec, args.option or [], movie=args.movie)
    tokens = parse_tokens(args.tokens)
    if tokens is not None:
        kwargs["tokens"] = tokens
    kwargs["frames"] = parse_frames(args.frames)
    ds = open_movie(args.movie)
    with compute_on(args.scheduler, args.workers):
        result = with_progress(spec.name, args.quiet, spec, ds, note=kernels_note(spec.function), **kwargs).load()
    if args.output:
        save_result(result, args.output)
        print(terminal_text(f"wrote {args.output}"))
    else:
        chosen = kwargs.get("tokens", inspect.signature(spec.function).parameters["tokens"].default)
        print(result_table(spec, ds, result, chosen, args.movie))
        print(save_hint(args, spec.name))
    return 0


def save_hint(args: argparse.Namespace, name: str) -> str:
    """The last line of a printed result: the same command with ``-o``, to save it."""
    words = [args.movie, name]
    for option in args.option or []:
        words += ["-O", option]
    for flag, value in (("--tokens", args.tokens), ("--frames", args.frames)):
        if value:
            words += [flag, value]
    return terminal_text(f"save it: tokendyn analyse {shell_words(words)} -o {name}.nc (the whole result) "
                         f"or -o {name}.csv (per-frame tables)")


# --- the result as a table ------------------------------------------------------------------------

def _words(key: str) -> str:
    return str(key).replace("_", " ")


def _number(value: Any) -> float | None:
    """``value`` as a float where it is a real number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _units(result: Any, key: str) -> str:
    """The units of headline ``key``: those of the result's variable of that name (or of its error)."""
    for name in (key, f"{key}_error", f"{key}_all"):
        if name in result.variables:
            units = str(result[name].attrs.get("units", ""))
            return "" if units in ("1", "") else units
    return ""


def _value_text(value: Any, error: Any = None) -> str:
    """A headline value: a number ``± error`` (as the train summary writes it), a word, or a list."""
    from tokendyn.stats import plus_minus

    number = _number(value)
    if number is not None and not isinstance(value, bool):
        err = _number(error)
        if isinstance(value, int) and err is None:
            return str(value)
        return plus_minus(number, err if err is not None else None, ".4g")
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value)
    return str(value)


def _missing(value: Any) -> bool:
    number = _number(value)
    return value is None or (number is not None and not isinstance(value, bool) and not math.isfinite(number))


def _rows(headline: Mapping[str, Any], prefix: str = "", parent: str = "",
          errors: Any = None) -> Iterator[tuple[str, str, Any, Any]]:
    """``(label, key, value, error)`` of each leaf of a headline dict; ``X_error`` goes beside ``X``.
    ``key`` names the leaf's units: its own key, or that of the dict above it (``msd`` of
    ``{"msd": {"live": {1: ...}}}``). ``errors``: the dict of errors parallel to ``headline`` (the
    ``msd_error`` beside ``msd``), where the errors are not beside each value."""
    errors = errors if isinstance(errors, Mapping) else {}

    def error_of(key: str) -> Any:
        found = headline.get(f"{key}_error")
        return errors.get(key) if found is None else found

    for key, value in headline.items():
        key = str(key)
        if (key.endswith("_error") and key[:-6] in headline) or \
                ("_error_" in key and key.replace("_error_", "_", 1) in headline):
            continue  # shown beside its value
        label = f"{prefix}{_words(key)}"
        units_key = parent or key
        if isinstance(value, Mapping):
            plain = all(not isinstance(v, (Mapping, list)) for v in value.values())
            if plain and not any(str(k).endswith("_error") for k in value):
                # {threshold: value}: one row per entry, its error from the sibling X_error dict
                sub_errors = error_of(key) or {}
                for sub, v in value.items():
                    yield (f"{label} [{sub}]", units_key, v,
                           sub_errors.get(sub) if isinstance(sub_errors, Mapping) else None)
            else:
                yield from _rows(value, f"{label} ", parent or (key if key not in _CLASS_NAMES else ""), error_of(key))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value, 1):
                yield from _rows(item, f"{label} {i}: ", "")
        else:
            error = error_of(key)
            if error is None:  # X_centroid's error written X_error_centroid
                base, _, tail = key.rpartition("_")
                error = headline.get(f"{base}_error_{tail}") if base else None
            yield label, key, value, error


def _class_count(ds: Any, tokens: Any) -> dict[str, int]:
    """Tokens per class of the selection the analysis ran on."""
    import numpy as np

    from tokendyn import format as fmt
    from tokendyn.analysis.base import token_mask

    classes = ds.token_class.values[token_mask(ds, tokens)]
    return {name: int(np.sum(classes == code)) for code, name in enumerate(fmt.TOKEN_CLASSES)}


def _per_token_means(spec: Any, result: Any) -> dict[str, str]:
    """Per class, the mean of the analysis's first per-token value ± its bootstrap error over the tokens."""
    import numpy as np

    from tokendyn import format as fmt
    from tokendyn.stats import bootstrap_mean

    if spec.token_values is None:
        return {}
    try:
        values = spec.token_values(result)
    except Exception:  # noqa: BLE001 - a result without what token_values needs: no per-token column
        return {}
    for name, array in values.items():
        if "token_class" not in array.coords:
            continue
        units = str(array.attrs.get("units", ""))
        classes, data = array["token_class"].values, np.asarray(array.values, np.float64)
        out = {}
        for code, cls in enumerate(fmt.TOKEN_CLASSES):
            picked = data[(classes == code) & np.isfinite(data)]
            if picked.size:
                est = bootstrap_mean(picked, resamples=500)
                out[cls] = f"mean {_words(name)} {format(est, '')}" + (f" {units}" if units not in ("", "1") else "")
        return out
    return {}


def result_table(spec: Any, ds: Any, result: Any, tokens: Any, movie: str) -> str:
    """An analysis's result as the terminal shows it: its headline numbers with their errors and
    units, a line per token class (its tokens and its own headline values), and how to save it."""
    from tokendyn import format as fmt

    headline = spec.headline(result) if spec.headline is not None else None
    if headline is None:
        headline = {k: v.item() for k, v in result.data_vars.items() if v.ndim == 0}
    classes = {k: v for k, v in headline.items() if k in fmt.TOKEN_CLASSES and isinstance(v, Mapping)}
    rest = {k: v for k, v in headline.items() if k not in classes}
    steps = result["step"].values if "step" in result.coords else []
    span = f", steps {int(steps[0])}..{int(steps[-1])}" if len(steps) else ""
    lines = [f"{spec.name} ({spec.function.__name__}) on {movie}: tokens {tokens}, "
             f"{result.sizes.get(fmt.DIM_FRAME, 0)} frames{span}", "", "headline numbers"]
    if not rest:  # the headline is all per class: show the result's own numbers above them
        rest = {k: v.item() for k, v in result.data_vars.items() if v.ndim == 0 and not k.endswith("_error")}
    rows = [(label, _value_text(value, error), _units(result, key)) for label, key, value, error in _rows(rest)
            if not _missing(value)]
    hidden = sum(1 for _ in _rows(rest)) - len(rows)
    width = min(44, max((len(r[0]) for r in rows), default=0))
    for label, text, units in rows[:MAX_HEADLINE_ROWS]:
        lines.append(f"  {label:<{width}}  {text}" + (f"  {units}" if units else ""))
    if len(rows) > MAX_HEADLINE_ROWS:
        hidden += len(rows) - MAX_HEADLINE_ROWS
    if not rows:
        lines.append("  (none)")
    if hidden:
        lines.append(f"  ({hidden} more value(s) not shown: n/a or beyond the first {MAX_HEADLINE_ROWS})")
    counts = _class_count(ds, tokens)
    means = _per_token_means(spec, result) if not classes else {}
    lines += ["", "per class"]
    for cls, count in counts.items():
        if not count:
            continue
        parts = [f"{count} tokens"]
        leaves = [leaf for leaf in _rows(classes.get(cls, {})) if not _missing(leaf[2])]
        # numbers with errors first, then numbers, then words and flags
        leaves.sort(key=lambda leaf: (leaf[3] is None, _number(leaf[2]) is None or isinstance(leaf[2], bool)))
        fields = [(label, _value_text(v, e), _units(result, key)) for label, key, v, e in leaves]
        parts += [f"{label} {text}" + (f" {units}" if units else "") for label, text, units in fields[:PER_CLASS_FIELDS]]
        if cls in means:
            parts.append(means[cls])
        lines.append(f"  {cls:<8} " + "; ".join(parts))
    lines.append("")
    return "\n".join(terminal_text(line) for line in lines)


def cmd_report(args: argparse.Namespace) -> int:
    from tokendyn.cluster import compute_on
    from tokendyn.surfaces.report import write_report

    with compute_on(args.scheduler, args.workers):
        out = write_report(args.movie[0], args.output, tokens=parse_tokens(args.tokens),
                           frames=parse_frames(args.frames), progress=not args.quiet)
    print(terminal_text(f"wrote {out['html']} and {out['summary']}"))
    return 0


class _OneMovie(argparse.Action):
    """``report`` takes one movie; two or more are a comparison: say so on one line."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if len(values) > 1:
            print(terminal_text(f"tokendyn: error: report takes one movie; to compare runs, use: "
                                f"tokendyn compare {shell_words(values)}"), file=sys.stderr)
            raise SystemExit(2)
        setattr(namespace, self.dest, values)


def _with_analyses_listed(parser: argparse.ArgumentParser, example: str) -> None:
    """List the registered analyses below ``parser``'s help, importing them only when the help is
    shown: building the parser stays cheap (importing every analysis takes scipy, xarray and dask,
    about 1.7 s of every command's start-up)."""
    plain = parser.format_help

    def format_help() -> str:
        from tokendyn.analysis import registry

        parser.epilog = registry.help_text() + "\n\n" + example
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]


def register(sub: Any) -> None:
    example = examples("tokendyn analyse runs/quickstart.h5 geometry",
                       "tokendyn analyse runs/quickstart.h5 comoving -O lags=1,10,100 --frames 0:600:10 -o comoving.nc")
    p = sub.add_parser("analyse", aliases=["analyze"], help="run one analysis; print it, or save it as .nc or .csv",
                       description="Run one analysis on a movie (.h5 or .zarr; also one still being recorded) and "
                       "print its headline numbers, or save the whole result with -o.",
                       epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter)
    _with_analyses_listed(p, example)
    p.add_argument("movie", help="the movie (.h5 or .zarr)")
    p.add_argument("name", nargs="?", help="analysis name (omit to list them)")
    p.add_argument("-o", "--output", help="out.nc (the whole result) or out.csv (per-frame tables); "
                   "without it, the headline numbers are printed")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="an analysis option, e.g. -O lags=1,2,4 -O center=centroid (a sequence as 1,2,4, no "
                   "quotes needed; see the list below)")
    add_pass_arguments(p)
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("report", help="run every analysis; write a self-contained HTML report and summary.json",
                       description="Run every analysis that applies to a movie (.h5 or .zarr) and write an HTML "
                       "report with its figures and summary.json. To compare runs, use tokendyn compare.",
                       epilog=examples("tokendyn report runs/quickstart.h5",
                                       "tokendyn report runs/quickstart.h5 -o quickstart.report --frames ::10"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("movie", nargs="+", action=_OneMovie, metavar="MOVIE", help="the movie (.h5 or .zarr)")
    p.add_argument("-o", "--output", default=None, metavar="DIR", help="output folder (default: MOVIE.report/)")
    add_pass_arguments(p)
    p.set_defaults(func=cmd_report)
