"""``tokendyn experiment``."""
from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("experiment", help="run a grid of training runs from a spec, then compare them")
    p.add_argument("spec")
