"""``tokendyn play``: the animated token cloud."""
from __future__ import annotations

import argparse
from typing import Any

from tokendyn.surfaces.cli_common import add_selection, parse_frames, parse_tokens


def cmd_play(args: argparse.Namespace) -> int:
    from tokendyn.surfaces.player import play

    trace = [int(t) for t in args.trace.split(",")] if args.trace else None
    out = play(args.movie, args.output, tokens=parse_tokens(args.tokens) or "all",
               frames=parse_frames(args.frames), fit=args.fit, max_frames=args.max_frames, trace=trace,
               fps=args.fps)
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("play", help="animate the token cloud: self-contained HTML player, GIF or MP4")
    p.add_argument("movie")
    p.add_argument("-o", "--output", default=None, help="cloud.html (default), cloud.gif or cloud.mp4")
    add_selection(p)
    p.add_argument("--fit", default="all", help="PCA fitted once on 'all' frames or on one frame index")
    p.add_argument("--max-frames", type=int, default=200, help="frames shown at most (evenly spaced)")
    p.add_argument("--trace", default=None, help="comma-separated token ids to trace with their paths")
    p.add_argument("--fps", type=int, default=12)
    p.set_defaults(func=cmd_play)
