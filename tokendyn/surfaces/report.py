"""``tokendyn report``: every applicable analysis of a movie, as one self-contained HTML page
(figures embedded, no server, no network) and ``summary.json`` with the headline numbers."""
from __future__ import annotations

import base64
import functools
import html
import io
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.jsonable import jsonable as _jsonable
from tokendyn.jsonable import number as _number
from tokendyn.surfaces.player import CLASS_COLOURS, player_fragment, project_naming


def _nonfinite_note(proj) -> str:
    """A marked paragraph naming the shown frames whose W is not finite (a diverged run), or nothing."""
    bad = np.flatnonzero(~proj.finite)
    if bad.size == 0:
        return ""
    return (f'<p class="nonfinite" style="color:#b00"><b>{bad.size} of {len(proj.finite)} frames shown hold NaN or '
            f"infinite values in W</b> (from step {int(proj.steps[bad[0]])}: the run diverged?). They are left out "
            "of the PCA fit, drawn empty in the player and marked in its label.</p>")


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
    """Show analysis ``index`` as ``done / total`` of its frames streamed."""
    bar.n = index + done / max(total, 1)
    bar.refresh()


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
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="report", unit="analysis", file=sys.stderr,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total} analyses [{elapsed}<{remaining}{postfix}]")
    for index, (name, job) in enumerate(jobs):
        if bar is None:
            results[name] = job(progress=None).load()
            continue
        bar.set_postfix_str(name)
        # the frames an analysis streams move the bar within its step (cloud_geometry takes
        # seconds on a long movie)
        results[name] = job(progress=functools.partial(_move_bar, bar, index)).load()
        _move_bar(bar, index, 1, 1)
    if bar is not None:
        bar.close()
    return results


def _figures(ds, results: dict[str, Any], proj) -> list[tuple[str, str, str]]:
    """(id, title, base64 PNG) for every figure that applies: the loss, each analysis's own
    figures (from the registry), the cloud in the player's plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokendyn.analysis import registry

    figs = []
    steps_all = ds[fmt.STEP].values
    if "loss" in ds or "lr" in ds:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        if "loss" in ds:
            ax.plot(steps_all, ds["loss"].values, lw=1, label="training loss")
        if "heldout_loss" in ds:
            h = ds["heldout_loss"].values
            ok = np.isfinite(h)
            ax.plot(steps_all[ok], h[ok], "o-", ms=3, label="held-out loss")
        unigram = ds.attrs.get("config", {}).get("unigram_entropy") if isinstance(ds.attrs.get("config"), dict) else None
        if unigram:
            ax.axhline(unigram, color="grey", ls="--", lw=1, label="unigram baseline")
        ax.set(xlabel="step", ylabel="loss (nats/token)")
        ax.legend(loc="upper right", fontsize=8)
        if "lr" in ds:
            ax2 = ax.twinx()
            ax2.plot(steps_all, ds["lr"].values, color="tab:orange", lw=1)
            ax2.set_ylabel("learning rate", color="tab:orange")
        figs.append(("loss", "Loss and learning rate", png_data(fig)))

    for name, result in results.items():
        spec = registry.get(name)
        if spec.figures is not None:
            figs.extend((fid, title, png_data(fig)) for fid, title, fig in spec.figures(result, CLASS_COLOURS))

    # a few frames of the player's projection (one read, one PCA fit for the page)
    shown = np.unique(np.linspace(0, len(proj.steps) - 1, min(4, len(proj.steps))).round().astype(int))
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), squeeze=False)
    for ax, f in zip(axes[0], shown):
        for cls in ("live", "dead", "phantom"):
            m = proj.classes == cls
            if m.any():
                ax.scatter(proj.xy[f, m, 0], proj.xy[f, m, 1], s=3, color=CLASS_COLOURS[cls], label=cls)
        ax.set(title=f"step {proj.steps[f]}", xlabel="PC 1")
    axes[0][0].set_ylabel("PC 2")
    axes[0][0].legend(fontsize=7, markerscale=3)
    figs.append(("pca", "The cloud in a fixed PCA plane", png_data(fig)))
    return figs


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


def write_report(movie: str | os.PathLike, output: str | os.PathLike | None = None, *, tokens: Any = None,
                 frames: slice | None = None, progress: bool = True, player_frames: int = 60) -> dict[str, str]:
    """Run every applicable analysis on ``movie``; write ``index.html`` and ``summary.json`` into
    ``output`` (default: ``MOVIE.report/``). Returns the two paths."""
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
    config = ds.attrs.get("config", {})
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in (config.items() if isinstance(config, dict) else []))
    info_rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(meta[k]))}</td></tr>" for k in
                        ("frames", "steps", "tokens", "tokens_per_class", "dim", "dtype", "matrices", "bytes_on_disk"))
    body = "\n".join(f'<section id="fig-{html.escape(fid)}"><h2>{html.escape(title)}</h2>'
                     f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'
                     for fid, title, png in figures)
    headline = html.escape(json.dumps(summary, indent=2, default=_number))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tokendyn report: {html.escape(os.path.basename(movie))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}} img{{max-width:100%}}
table{{border-collapse:collapse;font-size:85%}} th,td{{border:1px solid #ddd;padding:2px 6px;text-align:left}}
pre{{background:#f6f6f6;padding:.5em;font-size:80%;overflow:auto}}</style></head>
<body>
<h1>tokendyn report: {html.escape(os.path.basename(movie))}</h1>
<section id="info"><h2>Movie</h2><table>{info_rows}</table>{_nonfinite_note(proj)}</section>
{body}
<section id="player"><h2>The cloud over time</h2>{player_fragment(proj, trace=[], size=480)}</section>
<section id="summary"><h2>Headline numbers (summary.json)</h2><pre>{headline}</pre></section>
<section id="config"><h2>Run configuration</h2><table>{rows or "<tr><td>none recorded</td></tr>"}</table></section>
</body></html>
"""
    html_path = os.path.join(out_dir, "index.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(page)
    return {"html": html_path, "summary": summary_path}
