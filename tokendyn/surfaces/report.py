"""``tokendyn report``: every applicable analysis of a movie, as one self-contained HTML page
(figures embedded, no server, no network) and ``summary.json`` with the headline numbers."""
from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.surfaces.player import CLASS_COLOURS, player_fragment, project


def png_data(fig) -> str:
    """A matplotlib figure as base64 PNG for a data URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _number(v: Any) -> Any:
    """JSON-friendly: numpy scalars to Python, NaN to None."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _move_bar(bar: Any, index: int, done: int, total: int) -> None:
    """Show analysis ``index`` as ``done / total`` of its frames streamed."""
    bar.n = index + done / max(total, 1)
    bar.refresh()


def _run_analyses(ds, tokens, frames, progress: bool) -> dict[str, Any]:
    from tokendyn.analysis import cloud_geometry, comoving_displacement, hypersphere_walk, inhale, lattice_motion
    from tokendyn.analysis.base import token_mask

    classes = ds[fmt.TOKEN_CLASS].values
    selection = "all" if tokens is None else tokens
    jobs: list[tuple[str, Callable[..., Any]]] = [
        ("inhale", lambda progress: inhale(ds, selection, frames=frames, smooth=3, progress=progress)),
        ("comoving", lambda progress: comoving_displacement(ds, selection, frames=frames, lags=(1, 2, 4, 8, 16),
                                                            progress=progress)),
        ("geometry", lambda progress: cloud_geometry(ds, selection, frames=frames, progress=progress)),
    ]
    # the hypersphere test is about dead tokens; without enough of them, use the selection
    walkers = tokens if tokens is not None else ("dead" if (classes == fmt.CLASS_DEAD).sum() >= 2 else "all")
    if int(token_mask(ds, walkers).sum()) >= 2:
        jobs.append(("hypersphere", lambda progress: hypersphere_walk(ds, walkers, frames=frames, progress=progress)))
    if "W_bits" in ds:
        jobs.append(("lattice", lambda progress: lattice_motion(ds, selection, frames=frames, progress=progress)))
    results: dict[str, Any] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="report", unit="analysis", file=sys.stderr,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total} analyses [{elapsed}<{remaining}{postfix}]")
    for index, (name, job) in enumerate(jobs):
        if bar is None:
            results[name] = job(None).load()
            continue
        bar.set_postfix_str(name)
        # the frames an analysis streams move the bar within its step (cloud_geometry takes
        # seconds on a long movie)
        results[name] = job(functools.partial(_move_bar, bar, index)).load()
        _move_bar(bar, index, 1, 1)
    if bar is not None:
        bar.close()
    return results


def _figures(ds, results: dict[str, Any], proj) -> list[tuple[str, str, str]]:
    """(id, title, base64 PNG) for every figure that applies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

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

    inh = results["inhale"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(inh["step"].values, inh.radius.values, lw=1, label="R(t)")
    ax.plot(inh["step"].values, inh.radius_smoothed.values, lw=1, alpha=0.7, label="smoothed")
    for s, b in zip(inh.phase_start.values, inh.phase_bottom.values):
        ax.axvspan(s, b, color="tab:red", alpha=0.15)
    if np.isfinite(inh.expansion_step.item()):
        ax.axvline(inh.expansion_step.item(), color="tab:green", ls="--", lw=1, label="expansion")
    ax.set(xlabel="step", ylabel="mean radius (embedding units)",
           title=f"{int(inh.n_phases)} contraction phase(s) (shaded)")
    ax.legend(fontsize=8)
    figs.append(("radius", "Cloud radius and the inhale", png_data(fig)))

    com = results["comoving"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for cls in com["class"].values:
        y = com.step_displacement_mean.sel(**{"class": cls}).values
        ok = np.isfinite(y) & (y > 0)
        ax.plot(com["step"].values[ok], y[ok], lw=1, color=CLASS_COLOURS.get(str(cls)), label=str(cls))
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="mean step displacement (embedding units)", title="co-moving frame")
    ax.legend(fontsize=8)
    figs.append(("comoving", "Co-moving displacement per class", png_data(fig)))

    if "hypersphere" in results:
        h = results["hypersphere"]
        d = int(h.attrs["dim"])
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        counts = h.rho_histogram.values.astype(float)
        centres = h.rho_bin.values
        width = centres[1] - centres[0]
        total = counts.sum()
        if total > 0:
            axes[0].bar(centres, counts / (total * width), width=width, alpha=0.6, label="observed")
        grid = np.linspace(1e-3, 1, 400)
        axes[0].plot(grid, stats.beta(0.5, (d - 1) / 2).pdf(grid), "k-", lw=1, label=f"Beta(1/2, {(d - 1) / 2:g})")
        axes[0].set(xlabel="radial fraction rho", ylabel="density", yscale="log", ylim=(1e-3, None),
                    title=("isotropic" if bool(h.isotropic) else "NOT isotropic")
                    + f": KS p {float(h.ks_pvalue):.2g}, sign p {float(h.sign_pvalue):.2g}")
        axes[0].legend(fontsize=8)
        axes[1].plot(h.lag.values, h.cos_decay.values, "o", ms=3, label="observed")
        axes[1].plot(h.lag.values, h.cos_decay_predicted.values, "-", label="Brownian on a sphere (fitted D)")
        axes[1].set(xlabel="lag (frames)", ylabel="mean cos angle", title="angular decay")
        axes[1].legend(fontsize=8)
        figs.append(("hypersphere", "Hypersphere random-walk test", png_data(fig)))

    if "lattice" in results:
        lat = results["lattice"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for cls in lat["class"].values:
            colour = CLASS_COLOURS.get(str(cls))
            t = lat.temperature.sel(**{"class": cls}).values
            ok = np.isfinite(t) & (t > 0)
            axes[0].plot(lat["step"].values[ok], t[ok], lw=1, color=colour, label=str(cls))
            axes[1].plot(lat["step"].values, lat.frozen_fraction.sel(**{"class": cls}).values, lw=1, color=colour,
                         label=str(cls))
            onset = lat.freeze_onset.sel(**{"class": cls}, threshold=0.5).item()
            if np.isfinite(onset):
                axes[1].axvline(onset, color=colour, ls=":", lw=1)
        axes[0].set(xlabel="step", ylabel="temperature (sites^2 per coordinate)", yscale="log")
        axes[1].set(xlabel="step", ylabel="frozen fraction", ylim=(0, 1.02),
                    title="dotted: half frozen (fimbulwinter onset)")
        axes[0].legend(fontsize=8)
        figs.append(("lattice", "bf16 lattice motion and freezing", png_data(fig)))

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
    out: dict[str, Any] = {"movie": meta["path"], "frames": meta["frames"], "steps": meta["steps"],
                           "tokens": meta["tokens"], "tokens_per_class": meta["tokens_per_class"],
                           "dim": meta["dim"], "dtype": meta["dtype"]}
    if "loss" in ds:
        loss = ds["loss"].values
        finite = loss[np.isfinite(loss)]
        if finite.size:
            out["loss_first"], out["loss_last"] = float(finite[0]), float(finite[-1])
    inh = results["inhale"]
    out["inhale"] = {"n_phases": int(inh.n_phases),
                     "phases": [{"start": _number(s), "bottom": _number(b), "depth": _number(d)} for s, b, d in
                                zip(inh.phase_start.values, inh.phase_bottom.values, inh.phase_depth.values)],
                     "contraction_start": _number(inh.contraction_start.item()),
                     "minimum_step": _number(inh.minimum_step.item()),
                     "expansion_step": _number(inh.expansion_step.item())}
    com = results["comoving"]
    out["comoving"] = {str(c): {"final_mean_step_displacement": _number(
        com.step_displacement_mean.sel(**{"class": c}).values[-1])} for c in com["class"].values}
    if "msd" in com:
        out["comoving"]["msd"] = {str(c): {int(lag): _number(com.msd.sel(lag=lag, **{"class": c}).item())
                                           for lag in com.lag.values} for c in com.msd["class"].values}
    geo = results["geometry"]
    out["geometry"] = {"radius_mean_first": _number(geo.radius_mean.values[0]),
                       "radius_mean_last": _number(geo.radius_mean.values[-1]),
                       "centroid_norm_last": _number(geo.centroid_norm.values[-1])}
    if "hypersphere" in results:
        h = results["hypersphere"]
        out["hypersphere"] = {k: _number(h[k].item()) for k in (
            "isotropic", "outward_excess", "rho_mean_all", "rho_expected", "ks_pvalue", "sign_pvalue", "t_pvalue",
            "outward_fraction_all", "step_correlation_mean", "diffusion")}
        out["hypersphere"]["tokens"] = h.attrs.get("tokens")
    if "lattice" in results:
        lat = results["lattice"]
        out["lattice"] = {str(c): {
            "frozen_fraction_last": _number(lat.frozen_fraction.sel(**{"class": c}).values[-1]),
            "freeze_onset": {str(t): _number(lat.freeze_onset.sel(**{"class": c}, threshold=t).item())
                             for t in lat.threshold.values}} for c in lat["class"].values}
    return out


def write_report(movie: str | os.PathLike, output: str | os.PathLike | None = None, *, tokens: Any = None,
                 frames: slice | None = None, progress: bool = True, player_frames: int = 60) -> dict[str, str]:
    """Run every applicable analysis on ``movie``; write ``index.html`` and ``summary.json`` into
    ``output`` (default: ``MOVIE.report/``). Returns the two paths."""
    from tokendyn.sources.dataset import open_movie
    from tokendyn.tools.inspect import info

    movie = os.fspath(movie)
    out_dir = os.fspath(output) if output else os.path.splitext(movie)[0] + ".report"
    os.makedirs(out_dir, exist_ok=True)
    ds = open_movie(movie)
    meta = info(movie)
    results = _run_analyses(ds, tokens, frames, progress)
    proj = project(ds, tokens=tokens or "all", frames=frames, max_frames=player_frames)
    figures = _figures(ds, results, proj)
    summary = _summary(meta, ds, results)
    summary_path = os.path.join(out_dir, "summary.json")
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=_number)
    config = ds.attrs.get("config", {})
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in (config.items() if isinstance(config, dict) else []))
    info_rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(meta[k]))}</td></tr>" for k in
                        ("frames", "steps", "tokens", "tokens_per_class", "dim", "dtype", "matrices", "bytes_on_disk"))
    body = "\n".join(f'<section id="fig-{fid}"><h2>{html.escape(title)}</h2>'
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
<section id="info"><h2>Movie</h2><table>{info_rows}</table></section>
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
