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
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 5), sharex="col", gridspec_kw={"height_ratios": (3, 2)})
    plot_phases(inh, axes[0, 0], axes[1, 0])
    plot_phases(inh, axes[0, 1], axes[1, 1], zoom=True)
    axes[0, 0].set_title("whole run")
    axes[0, 1].set_title("around the phases")
    fig.tight_layout()
    return [ReportFigure("radius", "Cloud radius, the inhale's phases and their cause", fig)]


def plot_phases(inh: xr.Dataset, ax: Any, low: Any, *, zoom: bool = False, label: str = "R(t)") -> None:
    """Draw an :func:`~tokendyn.analysis.inhale.inhale` result on two matplotlib axes.

    Parameters
    ----------
    inh : xarray.Dataset
        The result of :func:`~tokendyn.analysis.inhale.inhale`.
    ax, low : matplotlib.axes.Axes
        ``ax``: R(t), the phases shaded (purple: lattice, red: learning) and numbered, with their
        z-score and cause listed; ``low``: the learning rate over its peak and the fractions of
        coordinates moved and predicted to cross half a bf16 spacing.
    zoom : bool
        Show only the frames around the phases and the expansion.
    label : str
        The legend label of R(t).
    """
    step = inh["step"].values
    phases = _phase_rows(inh)
    ax.plot(step, inh.radius.values, lw=1, marker="." if zoom else None, ms=3, label=label)
    if "radius_smoothed" in inh and int(inh.attrs.get("smooth", 1)) > 1:
        ax.plot(step, inh.radius_smoothed.values, lw=1, alpha=0.7, label="smoothed")
    lines = []
    for i, p in enumerate(phases, 1):
        colour = "tab:purple" if p.get("cause") == "lattice" else "tab:red"
        ax.axvspan(p["start"] - 1, p["bottom"], color=colour, alpha=0.15)
        ax.annotate(str(i), (p["start"] - 1, 0.98), xycoords=("data", "axes fraction"), va="top", fontsize=7)
        lines.append(f"{i}: {p['start']:.0f}-{p['bottom']:.0f}, z {p['z']:.3g}, {p.get('cause', '')}")
    if lines:
        ax.text(0.01, 0.02, "\n".join(lines), transform=ax.transAxes, fontsize=7, va="bottom")
    expansion = inh.expansion_step.item()
    if np.isfinite(expansion):
        ax.axvline(expansion, color="tab:green", ls="--", lw=1, label="expansion")
    ax.set(ylabel="radius (embedding units)")
    ax.legend(fontsize=7, loc="upper right")
    if "lr_ratio" in inh:
        low.plot(step, inh.lr_ratio.values, color="k", lw=1, label="lr / peak")
    for name, style in (("coords_moved", "-"), ("coords_predicted", "--")):
        if name in inh and np.isfinite(inh[name].values).any():
            low.plot(step, inh[name].values, ls=style, lw=1, label=name.replace("_", " "))
    low.set(xlabel="step", ylabel="fraction", ylim=(-0.02, 1.05))
    low.legend(fontsize=7, loc="lower right")
    if zoom and step.size:
        marks = [p["start"] - 1 for p in phases] + [p["bottom"] for p in phases]
        marks += [expansion] if np.isfinite(expansion) else []
        lo, hi = (min(marks), max(marks)) if marks else (step[0], step[-1])
        pad = max(3.0, 0.2 * (hi - lo))
        ax.set_xlim(max(lo - pad, step[0]), min(hi + pad, step[-1]))
        inside = (step >= ax.get_xlim()[0]) & (step <= ax.get_xlim()[1]) & np.isfinite(inh.radius.values)
        if inside.any():
            r = inh.radius.values[inside]
            margin = 0.1 * (r.max() - r.min()) or 0.01 * abs(r.max()) or 1.0
            ax.set_ylim(r.min() - margin, r.max() + margin)

