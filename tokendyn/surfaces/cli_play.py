"""``tokendyn play``: the animated token cloud."""
from __future__ import annotations

import argparse
from typing import Any

from tokendyn.surfaces.cli_common import add_selection, parse_frames, parse_tokens

EXAMPLE = """examples:
  tokendyn play runs/quickstart.h5                       # runs/quickstart.cloud.html
  tokendyn play run.h5 --frames 0:2000:10 --trace the,42 --projection aligned
  tokendyn play run.h5 -o cloud.gif --max-frames 60"""


def parse_trace(text: str | None) -> list[int | str] | None:
    """``"the,42"`` -> ``["the", 42]``: a whole number is a token id, anything else a token text."""
    if text is None:
        return None
    items = [part.strip() for part in text.split(",")]
    return [int(part) if part.isdigit() else part for part in items if part]


def cmd_play(args: argparse.Namespace) -> int:
    from tokendyn.surfaces.player import play

    out = play(args.movie, args.output, tokens=parse_tokens(args.tokens) or "all",
               frames=parse_frames(args.frames), fit=args.fit, max_frames=args.max_frames,
               trace=parse_trace(args.trace), fps=args.fps, projection=args.projection, max_tokens=args.max_tokens,
               trail=args.trail)
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("play", help="animate the token cloud: self-contained HTML player, GIF or MP4",
                       description="Animate the token cloud in a 2-D PCA projection. The HTML player works "
                       "offline: hover a dot for its token, click to pin it and draw its trail, search by text "
                       "or id, toggle classes, play/pause/step/scrub at a chosen speed.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("movie")
    p.add_argument("-o", "--output", default=None, help="cloud.html (default), cloud.gif or cloud.mp4")
    add_selection(p)
    p.add_argument("--projection", default="fixed", choices=("fixed", "last", "aligned"),
                   help="fixed: one PCA plane (see --fit); last: the plane of the last shown frame; "
                        "aligned: a plane per frame, each rotated onto the previous one (default fixed)")
    p.add_argument("--fit", default="all", help="the fixed plane fitted on 'all' shown frames or on one frame index")
    p.add_argument("--max-frames", type=int, default=200,
                   help="frames shown at most, evenly spaced, after the --frames stride (default 200)")
    p.add_argument("--max-tokens", type=int, default=16384,
                   help="tokens shown at most (a random sample above it; traced tokens kept; default 16384)")
    p.add_argument("--trace", default=None, metavar="TOKENS",
                   help="comma-separated token texts or ids to pin with their trails and nearest neighbours; "
                        "a text also matches with the tokenizer's word-start mark in front")
    p.add_argument("--trail", type=int, default=50, help="frames of a pinned token's trail (default 50)")
    p.add_argument("--fps", type=int, default=12, help="playback speed, frames per second (default 12)")
    p.set_defaults(func=cmd_play)
