"""``tokendyn analyse`` and ``report``."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tokendyn.surfaces.cli_common import add_pass_arguments, parse_frames, parse_tokens, with_progress


def cmd_analyse(args: argparse.Namespace) -> int:
    from tokendyn.analysis import registry
    from tokendyn.cluster import compute_on
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
        result = with_progress(args.name, args.quiet, spec, ds, **kwargs).load()
    if args.output:
        save_result(result, args.output)
        print(f"wrote {args.output}")
    else:
        scalars = {k: v.item() for k, v in result.data_vars.items() if v.ndim == 0}
        print(json.dumps({"analysis": spec.function.__name__, "movie": args.movie, **scalars}, indent=2, default=str))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tokendyn.cluster import compute_on
    from tokendyn.surfaces.report import write_report

    with compute_on(args.scheduler, args.workers):
        out = write_report(args.movie, args.output, tokens=parse_tokens(args.tokens),
                           frames=parse_frames(args.frames), progress=not args.quiet)
    print(f"wrote {out['html']} and {out['summary']}")
    return 0


def _with_analyses_listed(parser: argparse.ArgumentParser) -> None:
    """List the registered analyses below ``parser``'s help, importing them only when the help is
    shown: building the parser stays cheap (importing every analysis takes scipy, xarray and dask,
    about 1.7 s of every command's start-up)."""
    plain = parser.format_help

    def format_help() -> str:
        from tokendyn.analysis import registry

        parser.epilog = registry.help_text()
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]


def register(sub: Any) -> None:
    p = sub.add_parser("analyse", aliases=["analyze"], help="run one analysis; save it as .nc or .csv",
                       description="Run one analysis on a movie (also one still being recorded).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _with_analyses_listed(p)
    p.add_argument("movie")
    p.add_argument("name", nargs="?", help="analysis name (omit to list them)")
    p.add_argument("-o", "--output", help="out.nc (the whole result) or out.csv (per-frame tables)")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="an analysis option, e.g. -O lags=(1,2,4) -O center=centroid (see the list below)")
    add_pass_arguments(p)
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("report", help="run every analysis; write a self-contained HTML report and summary.json")
    p.add_argument("movie")
    p.add_argument("-o", "--output", default=None, metavar="DIR", help="output folder (default: MOVIE.report/)")
    add_pass_arguments(p)
    p.set_defaults(func=cmd_report)

