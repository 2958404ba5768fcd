"""The ``tokendyn`` command line: thin parsing, progress and printing over the public API."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from tokendyn._version import __version__
from tokendyn.errors import TokendynError
from tokendyn.surfaces.cli_common import HelpFormatter, examples, terminal_text, with_progress


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n}"


def cmd_info(args: argparse.Namespace) -> int:
    from tokendyn.tools.inspect import info

    data = info(args.path)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    steps = data["steps"]
    classes = ", ".join(f"{v} {k}" for k, v in data["tokens_per_class"].items())
    lines = [
        f"movie        {data['path']}",
        f"format       tokendyn.wmovie {data['format_version']}  "
        f"({data['attrs'].get('software', '?')}, created {data['attrs'].get('created', '?')})",
        f"frames       {data['frames']}" + (f"  (+{data['incomplete_frames']} incomplete)" if data["incomplete_frames"] else ""),
        f"steps        {steps[0]} .. {steps[1]}" if steps else "steps        none",
        f"tokens       {data['tokens']}  ({classes})",
        f"dim          {data['dim']}",
        f"matrices     {', '.join(data['matrices'])}  dtype {data['dtype']}",
        f"on disk      {_human_bytes(data['bytes_on_disk'])}"
        + (f"  ({_human_bytes(data['disk_bytes_per_frame'])} per frame on disk)" if data["disk_bytes_per_frame"] else ""),
        f"per frame    {_human_bytes(data['bytes_per_frame'])} logical",
        f"compression  {data['compression']}  chunks {data['chunks']}",
        f"scalars      {', '.join(data['scalars']) or 'none'}",
    ]
    if data["swmr_open_needed"]:
        lines.append("state        open for writing (live, or a crashed run: 'tokendyn repair' makes a clean copy)")
    title = data["attrs"].get("title")
    if title:
        lines.insert(1, f"title        {title}")
    print("\n".join(terminal_text(line) for line in lines))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from tokendyn.tools.inspect import check

    report = with_progress("scanning frames", args.quiet, check, args.path, scan_values=not args.no_scan)
    for note in report.notes:
        print(terminal_text(f"note: {note}"))
    for problem in report.problems:
        print(terminal_text(f"problem: {problem}"))
    if report.ok:
        print(terminal_text(f"{report.path}: OK, a valid W-movie"))
        return 0
    print(terminal_text(f"{report.path}: {len(report.problems)} problem(s)"))
    return 1


def cmd_repair(args: argparse.Namespace) -> int:
    from tokendyn.tools.repair import repair

    out = with_progress("copying frames", args.quiet, repair, args.path, args.output, in_place=args.in_place)
    print(terminal_text(f"wrote a clean copy: {out}"))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from tokendyn.tools.convert import convert

    out = with_progress("converting frames", args.quiet, convert, args.source, args.output,
                         overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokendyn", description="Record, inspect and analyse W-movies of token "
                                     "embeddings.", formatter_class=HelpFormatter,
                                     epilog=examples("tokendyn train --preset tiny --out runs/quickstart.h5",
                                                     "tokendyn report runs/quickstart.h5",
                                                     "tokendyn COMMAND --help   (each command's options and examples)"))
    parser.add_argument("--version", action="version", version=f"tokendyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="describe a movie (frames, steps, tokens per class, size)",
                       description="Describe a movie (.h5 or .zarr) without reading its matrices.",
                       epilog=examples("tokendyn info runs/quickstart.h5", "tokendyn info runs/quickstart.zarr --json"))
    p.add_argument("path", help="the movie (.h5 or .zarr)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("check", help="list every violation of the W-movie spec (exit 1 if any)",
                       description="List every way a movie (.h5 or .zarr) breaks the W-movie spec; exit 1 if any.",
                       epilog=examples("tokendyn check runs/quickstart.h5", "tokendyn check runs/quickstart.zarr --no-scan"))
    p.add_argument("path", help="the movie (.h5 or .zarr)")
    p.add_argument("--no-scan", action="store_true", help="skip reading every frame for NaN/Inf")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("repair", help="write a clean copy of a crashed movie that any HDF5 tool opens",
                       epilog=examples("tokendyn repair runs/crashed.h5", "tokendyn repair runs/crashed.h5 --in-place"))
    p.add_argument("path", help="the HDF5 movie")
    p.add_argument("-o", "--output", help="output path (default: NAME.repaired.h5)")
    p.add_argument("--in-place", action="store_true", help="replace the input with the clean copy")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("convert", help="copy a movie to zarr (for object storage) or a zarr copy back to HDF5",
                       epilog=examples("tokendyn convert runs/quickstart.h5 runs/quickstart.zarr",
                                       "tokendyn convert runs/quickstart.zarr back.h5 --overwrite"))
    p.add_argument("source", help="movie.h5 or movie.zarr")
    p.add_argument("output", help="movie.zarr (from HDF5) or movie.h5 (from zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)

    for register in _EXTRA_COMMANDS:
        register(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter  # the examples kept line by line
    return parser


def _register_train(sub: Any) -> None:
    from tokendyn.surfaces.cli_train import register

    register(sub)


def _register_analysis(sub: Any) -> None:
    from tokendyn.surfaces.cli_analysis import register

    register(sub)


def _register_play(sub: Any) -> None:
    from tokendyn.surfaces.cli_play import register

    register(sub)


def _register_import(sub: Any) -> None:
    from tokendyn.surfaces.cli_import import register

    register(sub)


def _register_compare(sub: Any) -> None:
    from tokendyn.surfaces.cli_compare import register

    register(sub)


def _register_experiment(sub: Any) -> None:
    from tokendyn.surfaces.cli_experiment import register

    register(sub)


_EXTRA_COMMANDS: list[Callable[[Any], None]] = [_register_train, _register_analysis, _register_play, _register_import,
                                                _register_compare, _register_experiment]


# The optional packages a command may need, and the extra of pyproject.toml that installs each.
OPTIONAL_EXTRAS = {"torch": "train", "tokenizers": "train", "zarr": "distributed", "distributed": "distributed",
                   "yaml": "distributed", "tomli": "distributed", "selenium": "test",
                   "safetensors": "safetensors"}


def _one_line_warning(message: Warning | str, category: type[Warning], *_args: Any, **_kwargs: Any) -> str:
    """A warning as one escaped line, like the errors (not Python's two lines with the source)."""
    return terminal_text(f"tokendyn: warning: {message}") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokendyn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except TokendynError as exc:
        print(terminal_text(f"tokendyn: error: {exc}"), file=sys.stderr)  # one line, whatever the file held
        return 2
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(terminal_text(f"tokendyn: error: {args.command if hasattr(args, 'command') else 'this command'} needs "
                            f"the optional package {exc.name!r}: pip install 'tokendyn[{extra}]'"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tokendyn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
