"""The progress bars of tokendyn: one factory, so every long task shows the same kind of bar.

On a terminal a bar is a tqdm bar redrawn at most every :data:`REFRESH_SECONDS`. Where stderr is
not a terminal (a log file, CI, a cluster job) redraws with carriage returns would fill the log,
so the bar writes a plain, newline-terminated line instead: when it starts, every
:data:`LINE_PERCENT` % of the work, at least every :data:`LINE_SECONDS` seconds while it moves,
and when it ends.

``TOKENDYN_PROGRESS`` overrides the choice: ``bar`` (redraws), ``lines`` (plain lines) or ``off``.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm as _std_tqdm

REFRESH_SECONDS = 0.5  # the fastest a terminal bar redraws
LINE_PERCENT = 5.0  # a plain line every this many percent of the work ...
LINE_SECONDS = 30.0  # ... or after this many seconds, whichever comes first
ENV = "TOKENDYN_PROGRESS"

Update = Callable[[int, int], None]


class LineBar(_std_tqdm):
    """A tqdm bar that writes plain lines (no carriage returns): for logs and CI."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._line_bucket = -1  # the LINE_PERCENT step of the last line written
        self._line_time = 0.0
        self._line_n: float | None = None  # ``n`` when the last line was written
        self._final = False
        kwargs.setdefault("ascii", True)
        kwargs["miniters"] = 0  # every update reaches display() (it writes only on a new LINE_PERCENT step): tqdm's
        # dynamic miniters would skip past several steps, and 1 would skip fractional updates (a report's bar)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing the line (msg=""): nothing to clear in a log
            return False
        now = time.time()
        total = self.total or 0
        bucket = int(self.n * 100 / total // LINE_PERCENT) if total > 0 else -1
        due = (self._final or self._line_n is None or bucket > self._line_bucket
               or (now - self._line_time >= LINE_SECONDS and self.n != self._line_n))
        if not due or (self._final and self.n == self._line_n):
            return False
        self._line_bucket, self._line_time, self._line_n = bucket, now, self.n
        self.fp.write(self.__str__().rstrip() + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable:
            self._final = True
            with self._lock:
                self.display()
        self.leave = False  # the last line is written: tqdm's close must not write "\n" or "\r"
        super().close()


def interactive(file: IO[str] | None = None) -> bool:
    """Whether progress on ``file`` (default stderr) is redrawn in place: a terminal or a notebook."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice in ("bar", "lines"):
        return choice == "bar"
    file = sys.stderr if file is None else file
    try:
        if file.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules and file is sys.stderr  # a Jupyter kernel's stderr is no tty


def progress_bar(total: float | None = None, desc: str = "", unit: str = " frames", *, initial: float = 0,
                 leave: bool = True, disable: bool = False, file: IO[str] | None = None,
                 start_time: float | None = None, **kwargs: Any) -> Any:
    """A progress bar on ``file`` (default stderr): a tqdm bar on a terminal, plain lines elsewhere.

    Parameters
    ----------
    total, desc, unit, initial, leave, disable
        As tqdm takes them; ``unit`` is shown after the count and in the rate (``" frames"``:
        ``12.5 frames/s``). ``disable`` (or ``TOKENDYN_PROGRESS=off``) gives a bar that shows nothing.
    file
        Where it is shown (default: stderr).
    start_time
        When the work began (``time.time()``), for a bar made after its first part is done: its
        rate then counts the time before (a bar made at the first update would otherwise see all
        of that update's work done in no time: "15798545.07 frame/s").
    **kwargs
        Other tqdm arguments (``bar_format``, ``unit_scale``, ...).

    Returns
    -------
    tqdm
        The bar (``update``, ``set_postfix_str``, ``set_description``, ``close``, a context manager).
    """
    file = sys.stderr if file is None else file
    disable = disable or os.environ.get(ENV, "").strip().lower() == "off"
    options: dict[str, Any] = dict(total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                                   disable=disable, file=file, mininterval=REFRESH_SECONDS, **kwargs)
    if interactive(file):
        from tqdm.auto import tqdm

        bar = tqdm(dynamic_ncols=True, **options)
    else:
        bar = LineBar(**options)
    if start_time is not None and not disable:
        bar.start_t = min(bar.start_t, start_time)
        bar.last_print_t = min(bar.last_print_t, start_time)
    return bar


def frame_progress(desc: str, quiet: bool = False, unit: str = " frames", note: str | None = None,
                   file: IO[str] | None = None) -> tuple[Update, Callable[[], None]]:
    """A bar driven by ``update(done, total)`` calls (the ``progress`` callback of the analyses and
    the tools), and the function that closes it.

    The bar appears at the first call, its clock started when this was called. With ``note``
    (e.g. ``"compiling kernels (first run only)"``) it appears at once as ``"DESC: NOTE"``, and
    says ``DESC`` again from the first call on: what happens before the first part is done.
    """
    if quiet:
        return (lambda done, total: None), (lambda: None)
    began = time.time()
    held: dict[str, Any] = {}
    if note:
        held["bar"] = progress_bar(None, f"{desc}: {note}", unit, leave=False, file=file)

    def update(done: int, total: int) -> None:
        bar = held.get("bar")
        if bar is None:
            bar = held["bar"] = progress_bar(total, desc, unit, leave=False, file=file, start_time=began)
        if bar.total != total:
            bar.total = total
            bar.set_description_str(desc, refresh=False)
        if done != bar.n:
            bar.update(done - bar.n)  # redraws only as often as the bar's refresh allows

    def close() -> None:
        bar = held.pop("bar", None)
        if bar is not None:
            bar.close()

    return update, close


COMPILING = "compiling kernels (first run only)"


def _cached_dispatchers(function: Callable[..., Any]) -> list[Any]:
    """The numba kernels with an on-disk cache that ``function``'s module calls: those it holds, and
    those of the ``tokendyn.analysis._*`` kernel modules it imports as modules."""
    import inspect
    import types

    module = inspect.getmodule(function)
    if module is None:
        return []
    found: dict[int, Any] = {}

    def take(namespace: dict[str, Any], home: str | None) -> None:
        for value in list(namespace.values()):
            cache = getattr(value, "_cache", None)
            if cache is None or type(cache).__name__ == "NullCache" or not hasattr(value, "py_func"):
                continue
            if home is None or getattr(value.py_func, "__module__", None) == home:
                found[id(value)] = value

    take(vars(module), None)
    for value in list(vars(module).values()):
        if isinstance(value, types.ModuleType) and value.__name__.startswith("tokendyn.analysis._"):
            take(vars(value), value.__name__)
    return list(found.values())


def kernels_note(function: Callable[..., Any]) -> str | None:
    """:data:`COMPILING` when none of the numba kernels of ``function`` (an analysis) is compiled,
    in this process or in numba's on-disk cache (a fresh install, a new numba, changed kernel
    files, a fresh ``NUMBA_CACHE_DIR``); else ``None``.

    One cached kernel is enough to say nothing: some kernels run only with some options (e.g. the
    lazy per-token ones), so they may never be cached, and a note on every run would be false.
    Never raises: where numba's cache cannot be read, it says nothing.
    """
    try:
        kernels = _cached_dispatchers(function)
        if not kernels or any(k.overloads or k._cache._cache_file._load_index() for k in kernels):
            return None
    except Exception:  # noqa: BLE001 - numba's cache internals moved: no note rather than an error
        return None
    return COMPILING
