"""What every ``tokendyn`` subcommand shares: progress bars and the ``--tokens``/``--frames``
/``--workers`` arguments and their parsing."""
from __future__ import annotations

import argparse
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


def progress_bar(desc: str, quiet: bool = False, unit: str = " frames",
                 note: str | None = None) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A bar driven by ``update(done, total)`` calls, and the function that closes it (see
    :func:`tokendyn.progress.frame_progress`: redrawn on a terminal, plain lines in a log)."""
    from tokendyn.progress import frame_progress

    return frame_progress(desc, quiet, unit, note)


def with_progress(desc: str, quiet: bool, fn: Callable[..., Any], *args: Any, note: str | None = None,
                  **kwargs: Any) -> Any:
    """``fn(*args, progress=..., **kwargs)`` with a progress bar that is closed whatever happens;
    ``note`` is shown on the bar until the first frames are done (e.g. kernels compiling)."""
    update, close = progress_bar(desc, quiet, note=note)
    try:
        return fn(*args, progress=update, **kwargs)
    finally:
        close()


FRAMES_HELP = "frames A:B or A:B:S (every S-th frame), each part optional, e.g. 0:500, 100:, ::10"


def parse_frames(text: str | None) -> slice | None:
    """``"A:B"`` or ``"A:B:S"`` (each part optional) -> ``slice(A, B, S)``; ``None`` or ``""`` -> ``None``.

    A step must be a whole number >= 1 (frames run forward).
    """
    if not text:
        return None
    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 3:
            raise ValueError
        start, stop, step = (int(p) if p.strip() else None for p in parts + [""] * (3 - len(parts)))
    except ValueError:
        raise TokendynError(f"--frames takes A:B or A:B:S (frame indices, each may be empty), got {text!r}") from None
    if step is not None and step < 1:
        raise TokendynError(f"--frames {text}: the step S of A:B:S must be 1 or more (frames run forward)")
    return slice(start, stop, step)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, but a text of several lines (an epilog of examples, the analyses' listing)
    kept as written; one-line texts (descriptions) are wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """A command's epilog: ``example:`` and real invocations, one per line."""
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


def parse_tokens(text: str | None) -> str | list[int] | None:
    """A class name, or comma-separated token ids."""
    if text is None:
        return None
    if all(part.strip().isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    return text


def add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", default=None, help="token class (all, live, dead, phantom) or comma-separated ids")
    p.add_argument("--frames", default=None, metavar="A:B[:S]", help=FRAMES_HELP)


def add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on a dask.distributed scheduler")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="start a local cluster of N processes")


def add_pass_arguments(p: argparse.ArgumentParser) -> None:
    """What a command that makes a pass over a movie takes: the selection, where it runs, quiet."""
    add_selection(p)
    add_cluster(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def shell_words(words: list[str]) -> str:
    """``words`` as one command line a shell reads back the same (quoted where needed)."""
    import shlex

    return " ".join(shlex.quote(str(w)) for w in words)
