"""``tokendyn train``: the trainer's command line (kept apart so ``info``/``check`` never import torch)."""
from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from tokendyn.surfaces.cli_common import examples


def register(sub: Any) -> None:
    register_sweep(sub)
    p = sub.add_parser("train", help="train a tiny GPT and record its embedding matrix into a movie",
                       description="Train a tiny GPT-style model on a corpus (default: the embedded "
                       "story generator) and record W at every step of the schedule.",
                       epilog=examples("tokendyn train --preset tiny --steps 600 --out runs/quickstart.h5",
                                       "tokendyn train --preset duckling --record-every dense:100,every:10 "
                                       "--set lr=1e-3 --out runs/duckling.h5"))
    p.add_argument("--preset", default="tiny", help="tiny, duckling, duckling2, goldilocks-lean, "
                   "goldilocks-balanced, goldilocks-rich, flannel, flannel-untied (default: tiny)")
    p.add_argument("--out", default="runs/run.h5", help="movie to write (default: runs/run.h5)")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--precision", choices=["fp32", "bf16-mixed", "bf16-pure"])
    p.add_argument("--corpus", help="a text file or a folder of .txt files (default: embedded stories)")
    p.add_argument("--record-every", help="record schedule: N, 'dense:K,every:M' or 'steps:a,b,c'")
    p.add_argument("--seed", type=int)
    p.add_argument("--control", metavar="NAME",
                   help="a control run that should learn nothing: shuffled-targets (targets permuted across "
                   "the batch), random-targets (targets uniform over the live ids), lr-zero (no gradient step, "
                   "only weight decay at the schedule's lr), no-weight-decay, or none (default)")
    p.add_argument("--set", dest="set_values", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (repeatable), e.g. --set lr=1e-3 --set tied=false")
    p.add_argument("--overwrite", action="store_true", help="replace an existing movie")
    p.add_argument("--resume", action="store_true", help="continue the movie from its checkpoint (a checkpoint "
                   "of another movie or another config is refused)")
    p.add_argument("--checkpoint-every", type=float, default=None, metavar="SECONDS",
                   help="write the checkpoint every SECONDS of wall time, atomically, matching the movie "
                   "flushed so far (default 300; 0: only at the end); a killed run resumes from the last one")
    p.add_argument("--no-summary", action="store_true", help="skip the analysis summary at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tokendyn.trainers import result_text, train

    overrides: dict[str, Any] = {}
    for key, value in (("steps", args.steps), ("device", args.device), ("precision", args.precision),
                       ("corpus", args.corpus), ("record", args.record_every), ("seed", args.seed),
                       ("control", args.control)):
        if value is not None:
            overrides[key] = value
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    result = train(args.preset, out=args.out, overwrite=args.overwrite, resume=args.resume,
                   progress=not args.quiet, set_values=args.set_values, **overrides)
    print(result_text(result))
    if not args.no_summary and result.movie:
        from tokendyn.surfaces.summary import movie_summary

        print()
        print(movie_summary(result.movie))
    if not result.interrupted:
        return 0
    return 128 + (signal.SIGTERM if result.stopped_by == "SIGTERM" else signal.SIGINT)  # the shell's convention


def cmd_sweep(args: argparse.Namespace) -> int:
    from tokendyn.runs.sweep import builtin_specs, run_sweep

    if args.spec is None:
        print("built-in sweep specs: " + ", ".join(builtin_specs()))
        return 0
    out = args.output or os.path.join("sweeps", os.path.splitext(os.path.basename(args.spec))[0])
    summary = run_sweep(args.spec, out, workers=args.workers, scheduler=args.scheduler)
    print(f"sweep {summary['spec']['name']}: {summary['finished']} of {summary['runs']} runs finished "
          f"({summary['skipped']} resumed); wrote {summary['csv']}, {summary['md']}, {summary['html']}")
    return 0 if summary["finished"] == summary["runs"] else 1


def register_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run many training runs from a YAML/TOML spec on a dask cluster",
                       description="Run a sweep (a grid of presets, sizes, batches, seeds); each run is a "
                       "task on a dask cluster. Finished runs are kept: running it again resumes.",
                       epilog=examples("tokendyn sweep", "tokendyn sweep efficiency-cliff --workers 2 -o sweeps/cliff"))
    p.add_argument("spec", nargs="?", help="a .yaml/.toml spec, or a built-in: efficiency-cliff, architecture "
                   "(omit to list them)")
    p.add_argument("-o", "--output", default=None, help="sweep folder (default: sweeps/SPEC)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: fair timings)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running dask.distributed scheduler")
    p.set_defaults(func=cmd_sweep)
