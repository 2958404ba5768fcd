"""The report's figures as one style: the class palette, sizes that read at a laptop's width,
constrained layout, and inline SVG whose text stays text (so a browser can measure it).

Every figure of ``tokendyn report`` and ``tokendyn compare`` is drawn inside :func:`style` and
turned into markup by :func:`svg_markup`, which also marks each panel (``<g id="panel-N"
data-series="K">``) so that a test can check, in the browser, that a panel with more than one
series has a legend and that no two labels overlap (see :func:`series_count`).
"""
from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from typing import Any

from tokendyn.surfaces.palette import CLASS_COLOURS, CLASS_ORDER, class_colour

__all__ = ["CLASS_COLOURS", "CLASS_ORDER", "FIG_WIDTH", "class_colour", "ordered_classes", "series_count", "style",
           "subplots", "svg_markup"]

#: The width of a report figure in inches: 10 in at 72 pt/in is 720 pt, 960 CSS px, inside a
#: 1200 px wide page with its margins.
FIG_WIDTH = 10.0

RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text as <text>, measured and rendered by the browser
    "svg.hashsalt": None,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.framealpha": 0.85,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "lines.linewidth": 1.2,
    "path.simplify": True,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Draw inside this: the report's rcParams, on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(RC):
        yield


def subplots(nrows: int = 1, ncols: int = 1, *, height: float = 3.4, width: float = FIG_WIDTH,
             **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` with constrained layout at the report's width (``squeeze`` as given)."""
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)


def ordered_classes(names: Sequence[Any]) -> list[str]:
    """Class names in the palette's order (live, dead, phantom, unknown), others after."""
    names = [str(n) for n in names]
    known = [c for c in CLASS_ORDER if c in names]
    return known + [n for n in names if n not in known]


def _is_reference_line(line: Any, ax: Any) -> bool:
    """An ``axvline``/``axhline`` (a marker, not a series): drawn in axes coordinates on one side."""
    transform = line.get_transform()
    return transform != ax.transData and not transform.contains_branch(ax.transData)


def series_count(ax: Any) -> int:
    """How many data series a panel draws: its lines of two or more points (not axhline/axvline
    markers), its scatters, its bar groups and error-bar groups (one each, with the lines they
    draw), and its labelled fills and spans."""
    import matplotlib.collections as mcoll
    import matplotlib.container as mcont

    n = 0
    owned: set[int] = set()
    for c in ax.containers:
        if isinstance(c, mcont.BarContainer) and getattr(c, "errorbar", None) is not None:
            owned.update(id(a) for a in _container_artists(c.errorbar))  # a bar's own error bars
    for c in ax.containers:
        if id(c) in owned or any(id(a) in owned for a in _container_artists(c)):
            continue
        if isinstance(c, (mcont.BarContainer, mcont.ErrorbarContainer)):
            n += 1
            owned.update(id(a) for a in _container_artists(c))
    for line in ax.lines:
        if id(line) not in owned and len(line.get_xdata()) >= 2 and not _is_reference_line(line, ax):
            n += 1
    for coll in ax.collections:
        if id(coll) in owned:
            continue
        labelled = not str(coll.get_label()).startswith("_")
        if isinstance(coll, mcoll.PathCollection) or labelled:
            n += 1
    n += sum(1 for p in ax.patches if id(p) not in owned and not str(p.get_label()).startswith("_"))
    return n


def _container_artists(container: Any) -> list[Any]:
    """Every artist of a matplotlib container, nested tuples flattened."""
    out: list[Any] = []
    stack = list(container)
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif item is not None:
            out.append(item)
    return out


def tidy_log_axes(fig: Any) -> None:
    """No labels on a log axis's minor ticks (they collide where the range is short); a range of
    under two decades gets majors at 1, 2 and 5 of each decade, labelled plainly (``2e-05``)."""
    import matplotlib.ticker as mticker

    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            axis.set_minor_formatter(mticker.NullFormatter())
            lo, hi = sorted(abs(v) for v in limits)
            if lo > 0 and hi / lo < 100:
                axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.2g}"))


def _mark_panels(fig: Any, prefix: str) -> None:
    for i, ax in enumerate(fig.axes):
        ax.set_gid(f"{prefix}panel-{i}")


_HEADER = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_NAMESPACE = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')  # an HTML parser needs neither
_PANEL = re.compile(r'<g id="([\w-]*?)panel-(\d+)"')


def svg_markup(fig: Any, *, title: str = "", prefix: str = "") -> str:
    """A matplotlib figure as inline SVG markup (the figure is closed): text as ``<text>``, each
    panel a ``<g id="PREFIXpanel-N" class="panel" data-series="K">``, the whole a ``<svg class="figure">`` that scales
    to the page's width. Scatters of many points are embedded as one image each."""
    import matplotlib.pyplot as plt

    _mark_panels(fig, prefix)
    tidy_log_axes(fig)
    counts = [series_count(ax) for ax in fig.axes]
    for ax in fig.axes:
        for coll in ax.collections:
            if len(coll.get_offsets()) > 2000:
                coll.set_rasterized(True)  # many points: one image, the axes and text stay vector
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.06,
                metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = _METADATA.sub("", _HEADER.sub("", buf.getvalue(), count=1), count=1)
    head, rest = text.split(">", 1)
    text = _NAMESPACE.sub("", head) + ">" + rest
    text = _PANEL.sub(lambda m: f'<g id="{m.group(1)}panel-{m.group(2)}" class="panel" '
                                f'data-series="{counts[int(m.group(2))]}"', text)
    text = text.replace("<svg ", '<svg class="figure" role="img" ', 1)
    if title:
        from html import escape

        text = text.replace(">", f"><title>{escape(title)}</title>", 1)
    return text
