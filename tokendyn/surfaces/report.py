"""``tokendyn report``: every applicable analysis of a movie, as one self-contained HTML page
(figures embedded, no server, no network) and ``summary.json`` with the headline numbers."""
from __future__ import annotations

import base64
import functools
import io
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.jsonable import jsonable as _jsonable
from tokendyn.jsonable import number as _number
from tokendyn.surfaces.palette import CLASS_COLOURS, class_colour
from tokendyn.surfaces.player import player_fragment, project_naming
from tokendyn.surfaces.report_tables import config_text, fields_of, headline_rows, movie_rows


def check_output_folder(path: str, what: str) -> None:
    """Refuse an output folder whose name a file holds (before any work is done); ``what`` names it
    in the error (``"report"``)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise TokendynError(f"the {what}'s output is a folder, but a file of that name exists", path)


def make_output_folder(path: str, what: str) -> None:
    """Create an output folder (and its parents), a one-line error naming it where that fails."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise TokendynError(f"cannot create the {what}'s folder ({exc.strerror or exc})", path) from None


def png_data(fig) -> str:
    """A matplotlib figure as base64 PNG for a data URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _move_bar(bar: Any, index: int, done: int, total: int) -> None:
    """Put ``bar`` at analysis ``index`` plus the fraction ``done / total`` of its frames (redrawn
    only as often as the bar's refresh allows)."""
    target = index + done / max(total, 1)
    if target != bar.n:
        bar.update(target - bar.n)


def _run_analyses(ds, tokens, frames, progress: bool) -> dict[str, Any]:
    """Every registered analysis that applies, run as the registry says, by name."""
    from tokendyn.analysis import registry

    jobs: list[tuple[str, Callable[..., Any]]] = []
    for name, spec in registry.analyses().items():
        selected = spec.report_tokens(ds, tokens)
        if spec.applies(ds, selected):
            jobs.append((name, functools.partial(spec.standard_run, ds, selected, frames=frames)))
    results: dict[str, Any] = {}
    bar = None
    if progress:
        from tokendyn.progress import progress_bar

        bar = progress_bar(len(jobs), "report", " analyses",
                           bar_format="{l_bar}{bar}| {n:.1f}/{total} analyses [{elapsed}<{remaining}{postfix}]")
    for index, (name, job) in enumerate(jobs):
        if bar is None:
            results[name] = job(progress=None).load()
            continue
        from tokendyn.progress import kernels_note

        note = kernels_note(registry.get(name).function)
        bar.set_postfix_str(f"{name}: {note}" if note else name)
        # the frames an analysis streams move the bar within its step (cloud_geometry takes
        # seconds on a long movie)
        results[name] = job(progress=functools.partial(_move_bar, bar, index)).load()
        _move_bar(bar, index, 1, 1)
    if bar is not None:
        bar.close()
    return results


class Figure(NamedTuple):
    """One figure of the page: its section id (``fig-ID``), title, short name and inline SVG markup."""

    id: str
    title: str
    markup: str
    short: str = ""
    caption: str = ""


_SHORT = {"loss": "Loss", "radius": "Radius", "comoving": "Co-moving", "hypersphere": "Hypersphere",
          "lattice": "Lattice", "pca": "PCA plane", "geometry": "Geometry"}


def _short_title(fid: str, title: str) -> str:
    return _SHORT.get(fid) or title.split(",")[0].split(":")[0]


def _loss_figure(ds) -> Any:
    """Loss (training, held-out, the unigram baseline) and the learning rate over its peak."""
    from tokendyn.surfaces.figures import subplots

    steps_all = ds[fmt.STEP].values
    has_lr = "lr" in ds and np.isfinite(ds["lr"].values).any()
    fig, axes = subplots(1, 2 if has_lr else 1, height=3.2, squeeze=False,
                         gridspec_kw={"width_ratios": (3, 2)} if has_lr else None)
    ax = axes[0][0]
    if "loss" in ds:
        ax.plot(steps_all, ds["loss"].values, lw=1, color="tab:blue", label="training loss")
    if "heldout_loss" in ds:
        h = ds["heldout_loss"].values
        ok = np.isfinite(h)
        ax.plot(steps_all[ok], h[ok], "o-", ms=3, color="tab:orange", label="held-out loss")
    config = ds.attrs.get("config")
    unigram = config.get("unigram_entropy") if isinstance(config, dict) else None
    if unigram:
        ax.axhline(unigram, color="grey", ls="--", lw=1, label="unigram baseline")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
    if "loss" in ds or "heldout_loss" in ds:
        ax.legend(loc="upper right")
    if has_lr:
        lr = ds["lr"].values.astype(np.float64)
        peak = np.nanmax(lr)
        axes[0][1].plot(steps_all, lr / peak if peak > 0 else lr, lw=1.2, color="black")
        axes[0][1].set(xlabel="step", ylabel="lr / peak lr", title=f"learning rate (peak {peak:.3g})",
                       ylim=(0, 1.05))
    return fig


def _pca_figure(proj) -> Any:
    """A few frames of the player's projection on one pair of axes limits (the plane is fixed)."""
    from tokendyn.surfaces.figures import ordered_classes, subplots

    shown = np.unique(np.linspace(0, len(proj.steps) - 1, min(4, len(proj.steps))).round().astype(int))
    fig, axes = subplots(1, len(shown), height=3.3, squeeze=False, sharex=True, sharey=True)
    explained = np.asarray(getattr(proj, "explained", [np.nan, np.nan]), float)
    xy = proj.xy[shown]
    finite = xy[np.isfinite(xy).all(axis=-1)]
    for ax, f in zip(axes[0], shown):
        for cls in ordered_classes(np.unique(proj.classes)):
            m = proj.classes == cls
            if m.any():
                ax.scatter(proj.xy[f, m, 0], proj.xy[f, m, 1], s=3, color=class_colour(cls), label=cls, lw=0)
        ax.set(title=f"step {proj.steps[f]}", xlabel=_pc_label(1, explained))
    if finite.size:
        lo, hi = finite.min(axis=0), finite.max(axis=0)
        pad = 0.05 * (hi - lo) + 1e-12
        axes[0][0].set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        axes[0][0].set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    axes[0][0].set_ylabel(_pc_label(2, explained))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, markerscale=3, loc="outside right upper", title="class")  # one for every panel
    return fig


def _pc_label(k: int, explained: np.ndarray) -> str:
    share = explained[k - 1] if explained.size >= k else np.nan
    return f"PC {k} ({share:.0%} of variance)" if np.isfinite(share) else f"PC {k}"


def _figures(ds, results: dict[str, Any], proj) -> list[Figure]:
    """Every figure that applies, as inline SVG: the loss, each analysis's own figures (from the
    registry), the cloud in the player's plane."""
    from tokendyn.analysis import registry
    from tokendyn.surfaces.figures import style, svg_markup

    made: list[tuple[str, str, Any, str]] = []
    with style():
        if "loss" in ds or "lr" in ds:
            made.append(("loss", "Loss and learning rate", _loss_figure(ds), ""))
        for name, result in results.items():
            spec = registry.get(name)
            if spec.figures is not None:
                made.extend((fid, title, fig, _CAPTIONS.get(fid, "")) for fid, title, fig in
                            spec.figures(result, CLASS_COLOURS))
        made.append(("pca", "The cloud in a fixed PCA plane", _pca_figure(proj),
                     "The same plane and the same axes limits at every step shown (fitted on the frames the "
                     "player shows)."))
        return [Figure(fid, title, svg_markup(fig, title=title, prefix=f"{fid}-"), _short_title(fid, title), caption)
                for fid, title, fig, caption in made]


_CAPTIONS = {
    "radius": "R(t) is the mean distance of the tokens from their centroid, over its value at the first frame; "
              "the detected contraction phases are shaded (purple: the lattice let coordinates across, red: "
              "learning).",
    "lattice": "Temperature is the mean over the tokens of each token's squared lattice sites moved per "
               "coordinate. A coordinate that crosses or touches zero moves up to ~3e4 sites of the ever finer "
               "lattice near zero for a tiny step in value, so a few such rows dominate the mean from frame to "
               "frame; the median over the tokens (its band: ± its standard error) is robust to them.",
    "comoving": "The shaded window is what the headline's late displacement is measured over: the last 10% of "
                "the frames whose update had a learning rate above 0.",
}


def _summary(meta: dict, ds, results: dict[str, Any]) -> dict[str, Any]:
    from tokendyn.analysis import registry

    out: dict[str, Any] = {"movie": meta["path"], "frames": meta["frames"], "steps": meta["steps"],
                           "tokens": meta["tokens"], "tokens_per_class": meta["tokens_per_class"],
                           "dim": meta["dim"], "dtype": meta["dtype"]}
    if "loss" in ds:
        loss = ds["loss"].values
        finite = loss[np.isfinite(loss)]
        if finite.size:
            out["loss_first"], out["loss_last"] = float(finite[0]), float(finite[-1])
    for name, result in results.items():
        spec = registry.get(name)
        if spec.headline is not None:
            out[name] = _jsonable(spec.headline(result))
    return out


# --- the headline table ---------------------------------------------------------------------------

def _environment() -> Any:
    """The Jinja2 environment of the report and the compare pages: templates from the package,
    every value autoescaped (only our own SVG and the player's fragment are marked safe)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("tokendyn.surfaces", "templates"),
                             autoescape=jinja2.select_autoescape(["html"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.filters["class_colour"] = class_colour
    return env


def render(template: str, **context: Any) -> str:
    """A page from one of the package's templates (autoescaped)."""
    return _environment().get_template(template).render(**context)


def write_report(movie: str | os.PathLike, output: str | os.PathLike | None = None, *, tokens: Any = None,
                 frames: slice | None = None, progress: bool = True, player_frames: int = 60) -> dict[str, str]:
    """Run every applicable analysis on ``movie``; write ``index.html`` and ``summary.json`` into
    ``output`` (default: ``MOVIE.report/``). Returns the two paths."""
    from markupsafe import Markup

    from tokendyn.analysis import registry
    from tokendyn.sources.dataset import open_movie
    from tokendyn.tools.inspect import info

    movie = os.fspath(movie)
    out_dir = os.fspath(output) if output else os.path.splitext(movie)[0] + ".report"
    check_output_folder(out_dir, "report")
    ds = open_movie(movie)
    meta = info(movie)
    results = _run_analyses(ds, tokens, frames, progress)
    proj = project_naming(movie, ds, tokens=tokens or "all", frames=frames, max_frames=player_frames)
    figures = _figures(ds, results, proj)
    summary = _summary(meta, ds, results)
    make_output_folder(out_dir, "report")
    summary_path = os.path.join(out_dir, "summary.json")
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=_number)
    tables: list[tuple[str, list[list[str]]]] = []
    main: list[list[str]] = []
    if "loss_first" in summary:
        loss = [["loss first", "", f"{summary['loss_first']:.4g}", "nats/token", "training loss, first recorded step"],
                ["loss last", "", f"{summary['loss_last']:.4g}", "nats/token", "training loss, last recorded step"]]
        main += [["loss", *row] for row in loss]
    for name, result in results.items():
        if name in summary:
            rows = headline_rows(summary[name], fields_of(registry.get(name), result))
            chosen = [row for primary, row in rows if primary] or [row for _, row in rows[:3]]
            main += [[name, *row] for row in chosen]
            tables.append((name, [row for _, row in rows]))
    config = ds.attrs.get("config", {})
    config_rows = [[str(k), config_text(v)] for k, v in (config.items() if isinstance(config, dict) else [])]
    bad = np.flatnonzero(~proj.finite)
    nonfinite = ({"bad": int(bad.size), "shown": len(proj.finite), "step": int(proj.steps[bad[0]])}
                 if bad.size else None)
    name = os.path.basename(movie)
    lead = (f"{meta['frames']} frames of a {meta['tokens']} x {meta['dim']} {meta['dtype']} token-embedding matrix; "
            f"{len(results)} analyses. Figures are inline SVG: their text is text, and the page needs no network.")
    page = render("report.html", name=name, lead=lead, movie_rows=movie_rows(meta), headline_main=main,
                  headline_tables=tables,
                  figures=[f._replace(markup=Markup(f.markup)) for f in figures], nonfinite=nonfinite,
                  player=Markup(player_fragment(proj, trace=[], size=480)), config_rows=config_rows)
    html_path = os.path.join(out_dir, "index.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(page)
    return {"html": html_path, "summary": summary_path}
