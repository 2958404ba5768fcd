"""``tokendyn compare``."""
from __future__ import annotations

import argparse
from typing import Any

from tokendyn.surfaces.cli_common import add_cluster, examples


def cmd_compare(args: argparse.Namespace) -> int:
    from tokendyn.cluster import compute_on
    from tokendyn.surfaces.compare_report import compare

    with compute_on(args.scheduler, args.workers):
        out = compare(args.runs, args.output, labels=args.label or None, alpha=args.alpha, margin=args.margin,
                      run_margin=args.run_margin, progress=not args.quiet)
    print(f"wrote {out['html']} and {out['json']}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare runs: headlines, curves, events and token classes, with error bars",
                       description="Compare runs: every applicable analysis on each, headlines side by side, "
                                   "curves overlaid with a group's bootstrap band, events counted, token classes "
                                   "tested. Runs that share a label form a group (seeds of one configuration).",
                       epilog=examples("tokendyn compare runs/a.h5 runs/b.h5 -o comparison",
                                       "tokendyn compare runs/*.h5 --label 'tied=*tied*' --label 'untied=*untied*'"))
    p.add_argument("runs", nargs="+", metavar="RUN", help="movies (.h5 or .zarr)")
    p.add_argument("-o", "--output", default=None, metavar="DIR", help="output folder (default: comparison/)")
    p.add_argument("--label", action="append", metavar="NAME=GLOB",
                   help="runs whose path or file name matches GLOB form the group NAME (repeat for each group)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the tests (default 0.05)")
    p.add_argument("--margin", type=float, default=0.2,
                   help="equivalence margin of per-token tests, in Cliff's delta (default 0.2)")
    p.add_argument("--run-margin", type=float, default=0.5,
                   help="equivalence margin of tests over runs, in Hedges' g (default 0.5)")
    add_cluster(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)
