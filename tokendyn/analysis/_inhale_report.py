"""The report and compare side of :func:`tokendyn.analysis.inhale.inhale`: its headline, summary
line, figure, curves and events, and :func:`plot_phases` (registered by :mod:`tokendyn.analysis.inhale`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from tokendyn.stats import plus_minus

from .registry import ReportFigure

_PHASE_FIELDS = {"start": "phase_start", "start_error": "phase_start_error", "bottom": "phase_bottom",
                 "bottom_error": "phase_bottom_error", "depth": "phase_depth", "depth_error": "phase_depth_error",
                 "drop": "phase_drop", "drop_error": "phase_drop_error",
                 "z": "phase_z", "p": "phase_p", "lr_min": "phase_lr_min", "lr_max": "phase_lr_max",
                 "rows_moved": "phase_rows_moved", "rows_predicted": "phase_rows_predicted",
                 "coords_moved": "phase_coords_moved", "coords_predicted": "phase_coords_predicted",
                 "coords_rise": "phase_coords_rise", "cause": "phase_cause"}


def _phase_rows(inh: xr.Dataset) -> list[dict[str, Any]]:
    """The phases with their cause columns, one dict per phase (older results: what they hold)."""
    fields = {key: name for key, name in _PHASE_FIELDS.items() if name in inh}
    return [{key: (str(inh[name].values[i]) if key == "cause" else float(inh[name].values[i]))
             for key, name in fields.items()} for i in range(int(inh.n_phases))]


def _headline(inh: xr.Dataset) -> dict[str, Any]:
    value = lambda name: float(inh[name]) if name in inh else np.nan  # noqa: E731 (older results lack some)
    return {"n_phases": int(inh.n_phases),
            "phases": _phase_rows(inh),
            "radius_noise": value("radius_noise"), "radius_noise_error": value("radius_noise_error"),
            "centre": inh.attrs.get("centre", "centroid of the selected tokens"),
            "contraction_start": inh.contraction_start.item(), "contraction_start_error": value("contraction_start_error"),
            "minimum_step": inh.minimum_step.item(), "minimum_step_error": value("minimum_step_error"),
            "expansion_step": inh.expansion_step.item(), "expansion_step_error": value("expansion_step_error")}


def _headline_fields(inh: xr.Dataset) -> dict[str, tuple]:
    """What each headline number is measured against, its units, and whether the report's main
    table shows it (by flattened key; ``*`` one part)."""
    centre = inh.attrs.get("centre", "the centroid")
    return {"n_phases": ("contraction phases of R (mean distance from the " + centre + ") before it expands", "",
                         True),
            "contraction_start": ("step of the first contracting update", "steps", True),
            "minimum_step": ("step of R's minimum before sustained expansion", "steps", True),
            "expansion_step": ("step after which R stays above R(0)", "steps", True),
            "radius_noise": ("frame-to-frame noise of R (robust, from second differences)", "embedding units"),
            "centre": ("the centre R is measured from", ""),
            "phases.*.start": ("step of the phase's first contracting update", "steps"),
            "phases.*.bottom": ("step the phase bottoms out", "steps"),
            "phases.*.depth": ("fall of R over the phase, relative to R before it", "1", True),
            "phases.*.drop": ("fall of R over the phase", "embedding units"),
            "phases.*.z": ("fall of R over its noise", "1"),
            "phases.*.p": ("one-sided normal p-value of z (nominal)", "1 (p-value)"),
            "phases.*.lr_min": ("smallest lr of the phase's updates over the peak", "1"),
            "phases.*.lr_max": ("largest lr of the phase's updates over the peak", "1"),
            "phases.*.cause": ("lattice (the lr let a binade of coordinates across) or learning", "", True),
            "phases.*": ("", "1")}




def _curves(inh: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"radius": inh.radius}


def _events(inh: xr.Dataset) -> dict[str, Any]:
    """Whether the cloud inhaled, in how many phases, when the first began and bottomed out, and
    when R passed R(0) for good (NaN: it did not)."""
    n = int(inh.n_phases)
    return {"inhale": n > 0, "phases": n,
            "first_phase_start": float(inh.phase_start.values[0]) if n else np.nan,
            "first_phase_bottom": float(inh.phase_bottom.values[0]) if n else np.nan,
            "expansion_step": float(inh.expansion_step.item())}


def _percent(x: float) -> str:
    return f"{x * 100:.0f}%" if np.isfinite(x) else "n/a"


def _phase_text(p: dict[str, Any]) -> str:
    """One phase with its cause columns, for the train summary."""
    depth = (plus_minus(p["depth"] * 100, p["depth_error"] * 100) if "depth_error" in p
             else f"{p['depth'] * 100:.3g}")
    text = f"{p['start']:.0f}->{p['bottom']:.0f} ({depth}%, z {p['z']:.3g}"
    if np.isfinite(p.get("lr_min", np.nan)):
        text += f", lr {p['lr_min']:.2g}-{p['lr_max']:.2g} of peak"
    if np.isfinite(p.get("coords_predicted", np.nan)):
        rise = (f"{p['coords_rise'] * 100:+.0f} pts at its start" if np.isfinite(p.get("coords_rise", np.nan))
                else "from the first update")
        text += (f", coords predicted to cross {rise}, "
                 f"{_percent(p['coords_predicted'])} over it ({_percent(p['coords_moved'])} moved)")
    elif np.isfinite(p.get("coords_moved", np.nan)):
        text += f", coords moved {_percent(p['coords_moved'])}"
    return text + (f": {p['cause']})" if "cause" in p else ")")


def _summary_lines(ev: xr.Dataset) -> list[tuple[str, str]]:
    if not int(ev.n_phases):
        return [("inhale", "no contraction of the radius before it expands")]
    phases = "; ".join(_phase_text(p) for p in _phase_rows(ev))
    error = float(ev.expansion_step_error) if "expansion_step_error" in ev else np.nan
    return [("inhale", f"{int(ev.n_phases)} contraction phase(s) at steps {phases}; "
                       f"expansion from step {plus_minus(ev.expansion_step.item(), error, '.0f')}")]


def _figures(inh: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    from tokendyn.surfaces.figures import subplots

    fig, axes = subplots(2, 2, height=5.2, sharex="col", gridspec_kw={"height_ratios": (3, 2)})
    plot_phases(inh, axes[0, 0], axes[1, 0])
    plot_phases(inh, axes[0, 1], axes[1, 1], zoom=True)
    n = int(inh.n_phases)
    axes[0, 0].set_title(f"whole run: {n} contraction phase{'s' if n != 1 else ''} shaded" if n else
                         "whole run: no contraction phase")
    axes[0, 1].set_title("around the phases and the expansion")
    return [ReportFigure("radius", "Cloud radius, the inhale's phases and their cause", fig)]


PHASE_COLOURS = {"lattice": "tab:purple", "learning": "tab:red", "unknown": "tab:grey"}


def plot_phases(inh: xr.Dataset, ax: Any, low: Any, *, zoom: bool = False, label: str = "R(t) / R(0)",
                relative: bool = True) -> None:
    """Draw an :func:`~tokendyn.analysis.inhale.inhale` result on two matplotlib axes.

    Parameters
    ----------
    inh : xarray.Dataset
        The result of :func:`~tokendyn.analysis.inhale.inhale`.
    ax, low : matplotlib.axes.Axes
        ``ax``: R(t) (over R(0) with ``relative``), the phases shaded (purple: lattice, red:
        learning, grey: unknown) and numbered; ``low``: the learning rate over its peak and the
        fractions of coordinates moved and predicted to cross half a bf16 spacing.
    zoom : bool
        Show only the frames around the phases and the expansion.
    label : str
        The legend label of R(t).
    relative : bool
        Plot R(t) / R(0), so that a contraction of a fraction of a percent shows at any radius.
    """
    step = inh["step"].values
    phases = _phase_rows(inh)
    r = inh.radius.values.astype(np.float64)
    finite = r[np.isfinite(r)]
    r0 = float(finite[0]) if relative and finite.size and finite[0] != 0 else 1.0
    if r0 == 1.0 and relative and label == "R(t) / R(0)":
        label = "R(t)"
    ax.plot(step, r / r0, lw=1, marker="." if zoom else None, ms=3, color="tab:blue", label=label)
    if "radius_smoothed" in inh and int(inh.attrs.get("smooth", 1)) > 1:
        ax.plot(step, inh.radius_smoothed.values / r0, lw=1, alpha=0.7, color="tab:cyan", label="smoothed")
    shown: set[str] = set()
    for i, p in enumerate(phases, 1):
        cause = p.get("cause", "learning")
        colour = PHASE_COLOURS.get(cause, "tab:red")
        ax.axvspan(p["start"] - 1, p["bottom"], color=colour, alpha=0.18,
                   label=f"phase ({cause})" if cause not in shown else "_nolegend_")
        shown.add(cause)
        if zoom:
            ax.annotate(str(i), (p["start"] - 1, 0.98), xycoords=("data", "axes fraction"), va="top", fontsize=7)
    expansion = inh.expansion_step.item()
    if np.isfinite(expansion):
        ax.axvline(expansion, color="tab:green", ls="--", lw=1, label="expansion (R > R(0) for good)")
    ax.set(ylabel="R / R(0)" if r0 != 1.0 else "radius (embedding units)")
    ax.legend(loc="best")
    if "lr_ratio" in inh:
        low.plot(step, inh.lr_ratio.values, color="k", lw=1, label="lr / peak lr")
    for name, style in (("coords_moved", "-"), ("coords_predicted", "--")):
        if name in inh and np.isfinite(inh[name].values).any():
            low.plot(step, inh[name].values, ls=style, lw=1, label=name.replace("_", " "))
    low.set(xlabel="step", ylabel="fraction", ylim=(-0.02, 1.05))
    low.legend(loc="best")
    if zoom and step.size:
        marks = [p["start"] - 1 for p in phases] + [p["bottom"] for p in phases]
        marks += [expansion] if np.isfinite(expansion) else []
        lo, hi = (min(marks), max(marks)) if marks else (step[0], step[-1])
        pad = max(3.0, 0.2 * (hi - lo))
        ax.set_xlim(max(lo - pad, step[0]), min(hi + pad, step[-1]))
        inside = (step >= ax.get_xlim()[0]) & (step <= ax.get_xlim()[1]) & np.isfinite(r)
        if inside.any():
            shown_r = r[inside] / r0
            margin = 0.1 * (shown_r.max() - shown_r.min()) or 0.01 * abs(shown_r.max()) or 1.0
            ax.set_ylim(shown_r.min() - margin, shown_r.max() + margin)
