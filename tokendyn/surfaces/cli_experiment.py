"""``tokendyn experiment``: a grid of training runs from a spec, then ``compare`` on their groups."""
from __future__ import annotations

import argparse
from typing import Any

from tokendyn.surfaces.cli_common import examples, terminal_text


def cmd_experiment(args: argparse.Namespace) -> int:
    from tokendyn.runs.experiment import builtin_experiments, run_experiment

    if args.spec is None:
        print("built-in experiment specs: " + ", ".join(builtin_experiments()))
        return 0
    summary = run_experiment(args.spec, args.output, workers=args.workers, scheduler=args.scheduler,
                             compare=not args.no_compare, progress=not args.quiet)
    name, failed = summary["spec"]["name"], summary["failed"]
    print(terminal_text(f"experiment {name}: {summary['finished']} of {summary['runs']} runs finished "
                        f"({summary['skipped']} resumed{f', {len(failed)} failed' if failed else ''}) "
                        f"in {len(summary['groups'])} groups; runs in {summary['folder']}/runs"))
    print(terminal_text(f"wrote {summary['experiment']}"))
    if summary["compare"]:
        print(terminal_text("wrote " + ", ".join(str(p) for p in summary["compare"].values())))
    return 0 if summary["finished"] == summary["runs"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser("experiment", help="run a grid of training runs from a spec, then compare them",
                       description="Train presets x precisions x controls x seeds (and grid values) from a "
                       "YAML/TOML spec, each run a task on a dask cluster, then compare the runs, one group per "
                       "configuration without its seed. Finished runs are kept: running it again resumes.",
                       epilog=examples("tokendyn experiment", "tokendyn experiment lab-log --workers 2 -o experiments/lab-log"))
    p.add_argument("spec", nargs="?", help="a .yaml/.toml spec, or a built-in: lab-log (omit to list them)")
    p.add_argument("-o", "--output", default=None, help="experiment folder (default: experiments/NAME)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: one per CPU core; 0: train here, without dask)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running dask.distributed scheduler")
    p.add_argument("--no-compare", action="store_true", help="train only; do not compare the groups")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_experiment)
