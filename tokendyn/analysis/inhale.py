"""The inhale before the sneeze: the cloud's radius contracting, in phases, before it expands."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _inhale_kernels as K
from . import base
from .base import FrameRange, StoredFrames, TokenSelection, annotate, finish, frame_coords, merge, select, selection, stream
from .registry import Analysis, ReportFigure, add

_MEASURES = {"mean": 0, "rms": 1, "origin": 2}


def radius_curve(ds: xr.Dataset, tokens: TokenSelection = "all", frames: FrameRange = None,
                 measure: str = "mean", progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """R(t): mean (or RMS) distance of the tokens from their centroid, or mean norm ("origin").

    One pass over the movie; each block of frames is reduced where it is read (a dask task, or a
    worker of a cluster), so only R(t) travels back."""
    base.check_choice(ds, "radius_curve", "measure", measure, tuple(_MEASURES))
    _, rows, positions = selection(ds, tokens, frames)
    source = StoredFrames(ds)
    parts = stream(source, positions, _radius_block, rows, _MEASURES[measure], progress=progress)
    return merge(parts, {"radius": "concat"})["radius"]


def _radius_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, measure: int) -> dict[str, np.ndarray]:
    return {"radius": K.radius_frames(block, lead, rows, measure)}


def _smooth(r: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` frames (at most the curve's length), the ends held; a window
    that holds a NaN is NaN."""
    width = min(int(width), r.size)
    if width <= 1:
        return r.copy()
    pad = width // 2
    padded = np.pad(r, pad, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")[: r.size]


def find_inhale(r: np.ndarray, *, smooth: int = 1, min_depth: float = 1e-3, tol: float = 0.0) -> dict[str, Any]:
    """Events of a radius curve (frame indices): contraction phases before sustained expansion.

    A contraction phase is a maximal run of frames where the smoothed radius falls by more than
    ``tol`` (relative to R(0)) per frame, kept when it falls by at least ``min_depth`` of its value at
    the phase start. Expansion begins at the first frame after which R stays above R(0) for good.
    Frames where R is NaN or infinite (a diverged run) are in no phase and are not the minimum;
    "for good" is over the frames where R is finite. With R(0) not finite there are no events.
    """
    rs = _smooth(np.asarray(r, float), smooth)
    n = rs.size
    finite = np.isfinite(rs)
    if n == 0 or not finite[0]:
        return {"phases": [], "minimum": None, "expansion": None, "smoothed": rs}
    r0 = rs[0]
    above = rs > r0
    expansion = None
    last = np.flatnonzero(finite)[-1]
    if above[last]:
        below = np.flatnonzero(finite & ~above)
        expansion = int(below[-1] + 1) if below.size else 0
    end = expansion if expansion is not None else n
    with np.errstate(invalid="ignore", over="ignore"):
        falling = np.diff(rs[:end]) < -tol * abs(r0)  # False where either frame is not finite
    phases = []
    t = 0
    while t < falling.size:
        if falling[t]:
            s = t
            while t < falling.size and falling[t]:
                t += 1
            start, bottom = s, t
            depth = (rs[start] - rs[bottom]) / rs[start] if rs[start] else 0.0
            if depth >= min_depth:
                phases.append({"start": start, "bottom": bottom, "depth": float(depth)})
        else:
            t += 1
    minimum = int(np.nanargmin(np.where(finite[:end], rs[:end], np.nan))) if finite[:end].any() else None
    return {"phases": phases, "minimum": minimum, "expansion": expansion, "smoothed": rs}


@base.accepts(measure=base.choice(*_MEASURES),
              smooth=base.whole(0, "a whole number of frames (0 or 1: no smoothing)"),
              min_depth=base.number(0, 1, expected="a fraction of the radius from 0 to 1"),
              tol=base.number(0, expected="a finite number >= 0 (a fraction of R(0) per frame)"))
def inhale(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: FrameRange = None,
    measure: str = "mean",
    smooth: int = 1,
    min_depth: float = 1e-3,
    tol: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Find the contraction of the cloud's radius before it expands ("the inhale before the sneeze").

    R(t) is the mean distance of the selected tokens from their centroid (``measure="rms"``: RMS;
    ``"origin"``: mean norm). With optional moving-average smoothing of ``smooth`` frames, returns
    the curve ``radius`` and ``radius_smoothed`` (frame; ``smooth`` is at most the number of frames)
    and the events, as steps: ``phase_start``,
    ``phase_bottom``, ``phase_depth`` (phase; depth relative to R at the phase start),
    ``n_phases``, ``contraction_start`` (the first phase's start), ``minimum_step`` (the global
    minimum before sustained expansion) and ``expansion_step`` (R passes R(0) for good). Events are
    NaN, and ``n_phases`` 0, when there is no inhale. Frames where W holds a NaN or an infinity
    (a diverged run) are marked in ``nonfinite_frame``; R is not finite there and they take no part in
    the events (see :func:`find_inhale`).
    """
    sub = select(ds, tokens, frames, min_frames=2)
    r = radius_curve(ds, tokens, frames, measure, progress)
    smooth = min(int(smooth), r.size)  # a moving average is at most as wide as the curve
    ev = find_inhale(r, smooth=smooth, min_depth=min_depth, tol=tol)
    steps = sub[fmt.STEP].values.astype(float)
    phases = ev["phases"]
    to_step = lambda i: float(steps[i]) if i is not None else np.nan  # noqa: E731
    out = xr.Dataset(coords=frame_coords(sub))
    out["radius"] = annotate(xr.DataArray(r, dims="frame"), f"cloud radius ({measure})", "embedding units")
    out["radius_smoothed"] = annotate(xr.DataArray(ev["smoothed"], dims="frame"),
                                      f"cloud radius, moving average over {smooth} frames", "embedding units")
    idx = np.arange(len(phases))
    out["phase_start"] = annotate(xr.DataArray([to_step(p["start"]) for p in phases], dims="phase",
                                               coords={"phase": idx}), "step a contraction phase starts", "steps")
    out["phase_bottom"] = annotate(xr.DataArray([to_step(p["bottom"]) for p in phases], dims="phase",
                                                coords={"phase": idx}), "step a contraction phase bottoms out", "steps")
    out["phase_depth"] = annotate(xr.DataArray([p["depth"] for p in phases], dims="phase", coords={"phase": idx}),
                                  "relative depth of the phase (fraction of R at its start)", "1")
    has = bool(phases)
    out["n_phases"] = annotate(xr.DataArray(len(phases)), "number of contraction phases", "1")
    out["contraction_start"] = annotate(xr.DataArray(to_step(phases[0]["start"]) if has else np.nan),
                                        "step the contraction starts", "steps")
    out["minimum_step"] = annotate(xr.DataArray(to_step(ev["minimum"]) if has else np.nan),
                                   "step of the global radius minimum before sustained expansion", "steps")
    out["expansion_step"] = annotate(xr.DataArray(to_step(ev["expansion"])),
                                     "step after which R stays above R(0)", "steps")
    # R(t) is not finite exactly where a selected token's position is not (a diverged frame)
    return finish(base.mark_nonfinite(out, ~np.isfinite(r)), "inhale", measure=measure, smooth=smooth,
                  min_depth=float(min_depth))


# --- in the report and the train summary --------------------------------------------------------

def _headline(inh: xr.Dataset) -> dict[str, Any]:
    return {"n_phases": int(inh.n_phases),
            "phases": [{"start": s, "bottom": b, "depth": d} for s, b, d in
                       zip(inh.phase_start.values, inh.phase_bottom.values, inh.phase_depth.values)],
            "contraction_start": inh.contraction_start.item(),
            "minimum_step": inh.minimum_step.item(),
            "expansion_step": inh.expansion_step.item()}


def _summary_lines(ev: xr.Dataset) -> list[tuple[str, str]]:
    if not int(ev.n_phases):
        return [("inhale", "no contraction of the radius before it expands")]
    phases = ", ".join(f"{int(s)}->{int(b)} ({d * 100:.2f}%)" for s, b, d in
                       zip(ev.phase_start.values, ev.phase_bottom.values, ev.phase_depth.values))
    return [("inhale", f"{int(ev.n_phases)} contraction phase(s) at steps {phases}; "
                       f"expansion from step {ev.expansion_step.item():.0f}")]


def _figures(inh: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    import matplotlib.pyplot as plt

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
    return [ReportFigure("radius", "Cloud radius and the inhale", fig)]


# the report smooths R(t) over 3 frames (the planted inhale's phases, found within 3 frames)
add(Analysis("inhale", inhale, order=10, applies=functools.partial(base.enough, min_frames=2), run_options={"smooth": 3},
             headline=_headline, summary_lines=_summary_lines, figures=_figures))
