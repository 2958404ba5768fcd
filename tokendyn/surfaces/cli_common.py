"""What every ``tokendyn`` subcommand shares: progress bars and the ``--tokens``/``--frames``
/``--workers`` arguments and their parsing."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from tokendyn.errors import TokendynError


def terminal_text(value: Any) -> str:
    """``value`` as text safe to print: every character that is not printable (terminal escape
    sequences, carriage returns, newlines, bidirectional overrides) written as ``repr`` writes it.

    Everything a movie holds (its file name, title, config, token texts) and every error message
    that quotes it goes through this before it reaches the user's terminal.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def progress_bar(desc: str, quiet: bool = False) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar driven by ``update(done, total)`` calls, and the function that closes it."""
    if quiet:
        return (lambda done, total: None), (lambda: None)
    from tqdm.auto import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit="frame", leave=False, file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def with_progress(desc: str, quiet: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, progress=..., **kwargs)`` with a progress bar that is closed whatever happens."""
    update, close = progress_bar(desc, quiet)
    try:
        return fn(*args, progress=update, **kwargs)
    finally:
        close()


def parse_frames(text: str | None) -> slice | None:
    """``"A:B"`` (either side optional) -> ``slice(A, B)``; ``None`` or ``""`` -> ``None``."""
    if not text:
        return None
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise TokendynError(f"--frames takes A:B (frame indices, either may be empty), got {text!r}") from None


def parse_tokens(text: str | None) -> str | list[int] | None:
    """A class name, or comma-separated token ids."""
    if text is None:
        return None
    if all(part.strip().isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    return text


def add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", default=None, help="token class (all, live, dead, phantom) or comma-separated ids")
    p.add_argument("--frames", default=None, metavar="A:B", help="frame range, e.g. 0:500 or 100:")


def add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on a dask.distributed scheduler")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="start a local cluster of N processes")


def add_pass_arguments(p: argparse.ArgumentParser) -> None:
    """What a command that makes a pass over a movie takes: the selection, where it runs, quiet."""
    add_selection(p)
    add_cluster(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
