"""The inhale before the sneeze: the cloud's radius contracting, in phases, before it expands."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _kernels as K
from ._frames import StoredFrames, stream
from .base import TokenSelection, annotate, frame_coords, select, selection

_MEASURES = {"mean": 0, "rms": 1, "origin": 2}


def radius_curve(ds: xr.Dataset, tokens: TokenSelection = "all", frames: slice | tuple | None = None,
                 measure: str = "mean", progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """R(t): mean (or RMS) distance of the tokens from their centroid, or mean norm ("origin").

    One pass over the movie; each block of frames is reduced where it is read (a dask task, or a
    worker of a cluster), so only R(t) travels back."""
    if measure not in _MEASURES:
        raise ValueError("measure must be 'mean', 'rms' or 'origin'")
    _, rows, positions = selection(ds, tokens, frames)
    source = StoredFrames(ds)
    parts = stream(source, positions, _radius_block, rows, _MEASURES[measure], progress=progress)
    return np.concatenate(parts)


def _radius_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, measure: int) -> np.ndarray:
    return K.radius_frames(block, lead, rows, measure)


def _smooth(r: np.ndarray, width: int) -> np.ndarray:
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
    """
    rs = _smooth(r, smooth)
    n = rs.size
    r0 = rs[0]
    above = rs > r0
    expansion = None
    if above[-1]:
        below = np.flatnonzero(~above)
        expansion = int(below[-1] + 1) if below.size else 0
    end = expansion if expansion is not None else n
    falling = np.diff(rs[:end]) < -tol * abs(r0)
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
    minimum = int(np.argmin(rs[:end])) if end > 0 else None
    return {"phases": phases, "minimum": minimum, "expansion": expansion, "smoothed": rs}


def inhale(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: slice | tuple | None = None,
    measure: str = "mean",
    smooth: int = 1,
    min_depth: float = 1e-3,
    tol: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Find the contraction of the cloud's radius before it expands ("the inhale before the sneeze").

    R(t) is the mean distance of the selected tokens from their centroid (``measure="rms"``: RMS;
    ``"origin"``: mean norm). With optional moving-average smoothing of ``smooth`` frames, returns
    the curve ``radius`` and ``radius_smoothed`` (frame) and the events, as steps: ``phase_start``,
    ``phase_bottom``, ``phase_depth`` (phase; depth relative to R at the phase start),
    ``n_phases``, ``contraction_start`` (the first phase's start), ``minimum_step`` (the global
    minimum before sustained expansion) and ``expansion_step`` (R passes R(0) for good). Events are
    NaN, and ``n_phases`` 0, when there is no inhale.
    """
    sub = select(ds, tokens, frames, min_frames=2)
    r = radius_curve(ds, tokens, frames, measure, progress)
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
    out.attrs.update(analysis="inhale", measure=measure, smooth=smooth, min_depth=min_depth)
    return out
