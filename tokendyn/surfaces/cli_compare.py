"""``tokendyn compare``."""
from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare runs: headlines, curves and token classes with error bars")
    p.add_argument("runs", nargs="+")
