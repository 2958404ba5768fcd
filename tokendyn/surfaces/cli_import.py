"""``tokendyn import``: turn safetensors snapshots, stacks and Hugging Face checkpoints into a movie."""
from __future__ import annotations

import argparse
from typing import Any

from tokendyn.surfaces.cli_common import examples, terminal_text, with_progress


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="make a movie from safetensors snapshots, a [T,V,d] stack or HF checkpoints",
                       description="Import embeddings a run already saved, one frame at a time: a safetensors "
                       "file holding a stacked [T, V, d] tensor, a folder of *_step{N}.safetensors snapshots, a "
                       "folder of Hugging Face Trainer checkpoint-<step>/ folders, or one HF model folder. "
                       "bf16 stays bit-exact; pickle files (.bin, .pt, .ckpt) are refused, never opened.",
                       epilog=examples("tokendyn import snapshots/ -o runs/imported.h5 --dead-ids 3,5,10-20",
                                       "tokendyn import stack.safetensors --steps 0:1000:10 -o runs/stack.h5"))
    p.add_argument("source", help="a .safetensors stack, or a folder of snapshots, checkpoints or one model")
    p.add_argument("-o", "--output", required=True, help="the movie to write (.h5)")
    p.add_argument("--kind", default="auto", choices=["auto", "stack", "snapshots", "checkpoints", "model"],
                   help="what SOURCE is (default: guessed from its layout)")
    p.add_argument("--key", help="the tensor to import (default: the only 3-D tensor of a stack, a known "
                   "embedding name such as model.embed_tokens.weight, or the only 2-D tensor)")
    p.add_argument("--steps", help="stack: a tensor of the file holding the steps, or a range a:b:c "
                   "(default 0..T-1)")
    p.add_argument("--glob", default="*_step*.safetensors", help="snapshots: which files (default: %(default)s)")
    p.add_argument("--step-regex", default=r"_step(\d+)\.safetensors$",
                   help="snapshots: reads the step from a name, first group (default: %(default)s)")
    p.add_argument("--mask", metavar="FILE[:KEY]", help="a safetensors file with a boolean/0-1 vector of V "
                   "(true = dead token)")
    p.add_argument("--dead-ids", metavar="IDS", help="dead token ids, e.g. 3,5,10-20")
    p.add_argument("--phantom-from", type=int, metavar="N", help="rows N.. are phantom (beyond the tokenizer)")
    p.add_argument("--title", help="the movie's title")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from tokendyn.errors import TokendynError
    from tokendyn.integrations.importers import detect_kind, import_path

    kind = detect_kind(args.source) if args.kind == "auto" else args.kind
    kwargs: dict[str, Any] = {"key": args.key, "mask": args.mask, "dead_ids": args.dead_ids,
                              "phantom_from": args.phantom_from, "title": args.title, "overwrite": args.overwrite}
    if kind == "snapshots":
        kwargs.update(glob=args.glob, step_regex=args.step_regex)
    if args.steps is not None:
        if kind != "stack":
            raise TokendynError(f"--steps is for a stack; {kind} take their steps from their names", args.source)
        kwargs["steps"] = args.steps
    out = with_progress("importing frames", args.quiet, import_path, args.source, args.output, kind=kind, **kwargs)
    print(terminal_text(f"wrote {out}"))
    return 0
