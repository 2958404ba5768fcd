"""Shared helpers: print one JSON line per figure and keep a section of RESULTS.md per script."""
from __future__ import annotations

import json
import os
import platform
import re
import sys
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def emit(**figure: Any) -> dict[str, Any]:
    """Print one figure as a JSON line and return it."""
    print(json.dumps(figure, default=float), flush=True)
    return figure


def machine() -> str:
    import numpy

    return f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {numpy.__version__}"


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def figures_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of a section: one row per figure with its value, target and verdict."""
    lines = [f"| {r['figure']} | {r['value']:.3g} | {r['target']} | {r['verdict']} |" for r in rows]
    return "\n".join(["| figure | value | target | verdict |", "|---|---|---|---|", *lines])


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, keeping the other scripts' sections."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    fresh = "# Benchmark results\n\nEach section is written by the script it names, from a real run.\n"
    text = open(RESULTS).read() if os.path.exists(RESULTS) else fresh
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    with open(RESULTS, "w") as fh:
        fh.write(text)
