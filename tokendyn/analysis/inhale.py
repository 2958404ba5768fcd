"""The inhale before the sneeze: the cloud's radius contracting, in phases, before it expands."""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _inhale_kernels as K
from . import base

# the phase finding lives in _inhale_phases; its public names are re-exported here
from ._inhale_phases import MAD_TO_SD as MAD_TO_SD
from ._inhale_phases import SPLIT_NOISE as SPLIT_NOISE
from ._inhale_phases import SPLIT_RISE as SPLIT_RISE
from ._inhale_phases import find_inhale
from ._inhale_phases import radius_noise as radius_noise

# the report side lives in _inhale_report; plot_phases (public) is re-exported here
from ._inhale_report import _curves, _events, _figures, _headline, _headline_fields, _summary_lines
from ._inhale_report import plot_phases as plot_phases
from ._schedule import schedule_of
from .base import FrameRange, StoredFrames, TokenSelection, annotate, finish, frame_coords, merge, selection, stream
from .registry import Analysis, add

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


#: A phase is a lattice event when, at its first frame, the fraction of coordinates whose half
#: bf16 spacing the learning rate exceeds rises by at least this much over the frame before.
LATTICE_RISE = 0.05

_CROSSING = ("rows_moved", "rows_predicted", "coords_moved", "coords_predicted")


def _inhale_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, measure: int, update: np.ndarray,
                  predict: bool) -> dict[str, np.ndarray]:
    m = block.shape[0] - lead
    cross = K.crossing_frames(block, lead, rows, update[start:start + m], predict)
    return {"radius": K.radius_frames(block, lead, rows, measure), "crossing": cross}


def _update_sums(ds: xr.Dataset, positions: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per selected frame, the summed learning rate of the movie's updates since the selected
    frame before (NaN for the first; NaN everywhere without an ``lr`` scalar), and whether the
    movie has one. A NaN learning rate makes its sum NaN: nothing is predicted to cross there."""
    if "lr" not in ds:
        return np.full(positions.size, np.nan), False
    lr = np.asarray(ds["lr"].values, np.float64)
    out = np.full(positions.size, np.nan)
    if positions.size > 1 and np.all(np.diff(positions) == 1):  # every frame: each frame's own lr
        out[1:] = lr[positions[1:]]
    else:
        for j in range(1, positions.size):
            out[j] = lr[positions[j - 1] + 1:positions[j] + 1].sum()
    return out, True


#: The standard error of a normal's standard deviation estimated as MAD_TO_SD x its MAD, in units of
#: the estimate over sqrt(samples): sqrt(1.3605), the MAD's asymptotic variance (37% efficiency).
MAD_SD_ERROR = 1.1664


def resolution(steps: np.ndarray, frame: int | None) -> float:
    """The standard error of an event found at ``frame``: it happened at one of the updates after
    the frame before, up to ``steps[frame]``, so it is known to the recording interval before it,
    ``delta``; as a standard error, that of a uniform over it, ``delta / sqrt(12)`` (the first
    frame: the interval after it). NaN for no event, or one frame only."""
    if frame is None or steps.size < 2:
        return np.nan
    frame = int(frame)
    delta = steps[frame] - steps[frame - 1] if frame >= 1 else steps[1] - steps[0]
    return float(delta) / np.sqrt(12.0)


def _window(values: np.ndarray, a: int, b: int, how: Callable[[np.ndarray], float]) -> float:
    part = values[a:b + 1]
    part = part[np.isfinite(part)]
    return float(how(part)) if part.size else np.nan


@base.accepts(measure=base.choice(*_MEASURES),
              smooth=base.whole(0, "a whole number of frames (0 or 1: no smoothing)"),
              min_depth=base.number(0, 1, expected="a fraction of the radius from 0 to 1"),
              tol=base.number(0, expected="a finite number >= 0 (a fraction of R(0) per frame)"),
              split=base.number(0, expected="a finite number >= 0 (0: no splitting of a falling run)"),
              min_z=base.number(expected="a finite number (the smallest z-score of a phase)"))
def inhale(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: FrameRange = None,
    measure: str = "mean",
    smooth: int = 1,
    min_depth: float = 0.0,
    tol: float = 0.0,
    split: float = 3.0,
    min_z: float = 3.0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Find the contraction of the cloud's radius before it expands ("the inhale before the sneeze").

    R(t) is the mean distance of the selected tokens from their centroid (``measure="rms"``: RMS;
    ``"origin"``: mean norm about the origin; every radius-like variable names its centre in
    ``attrs["centre"]``). With optional moving-average smoothing of ``smooth`` frames, returns the
    curve ``radius`` and ``radius_smoothed`` (frame; ``smooth`` is at most the number of frames),
    its frame-to-frame noise ``radius_noise`` and the contraction phases (see :func:`find_inhale`
    for ``tol``, ``split``, ``min_depth`` and ``min_z``), as steps: ``phase_start`` (the first
    contracting update), ``phase_bottom``, ``phase_depth`` (relative to R at the frame before the
    start), ``phase_drop``, ``phase_z`` and ``phase_p``; ``n_phases``, ``contraction_start`` (the
    first phase's start), ``minimum_step`` (the global minimum before sustained expansion) and
    ``expansion_step`` (R passes R(0) for good). Events are NaN, and ``n_phases`` 0, when there is
    no inhale.

    Beside each phase, its cause: ``phase_lr_min`` and ``phase_lr_max`` (the learning rate of the
    phase's updates over the movie's peak, from the ``lr`` scalar), and the means over the phase's
    frames of the per-frame ``rows_moved`` and ``coords_moved`` (observed: the fraction of
    selected rows with at least half their coordinates changed since the frame before, and of
    coordinates changed) and ``rows_predicted`` and ``coords_predicted`` (bf16 movies: the
    fraction of rows whose median half bf16 spacing, and of coordinates whose half spacing, at the
    frame before, is below the learning rate summed over the updates since it);
    ``phase_coords_rise`` is the rise of ``coords_predicted`` at the phase's first frame over the
    frame before, and ``phase_cause`` is ``"lattice"`` where it is at least :data:`LATTICE_RISE`
    (the learning rate has just let a binade of coordinates across), ``"learning"`` where it is
    not or the movie is not bf16, and ``"unknown"`` for a bf16 movie without ``lr``. A phase from
    the movie's first update has no rise (NaN): it is ``"learning"`` when that update was predicted
    to move nearly every coordinate (at least ``1 - LATTICE_RISE``; the lattice held nothing back),
    else ``"unknown"``. Every
    variable that depends on R names its centre in ``attrs["centre"]``.
    Frames where W holds a NaN or an infinity (a diverged run) are marked in ``nonfinite_frame``;
    R is not finite there and they take no part in the events.
    """
    sel = selection(ds, tokens, frames, min_frames=2)
    sub, rows, positions = sel
    update, has_lr = _update_sums(ds, positions)
    source = StoredFrames(ds)
    bf16 = source.dtype == np.uint16
    parts = stream(source, positions, _inhale_block, rows, _MEASURES[measure], update, bf16, before=1,
                   progress=progress)
    got = merge(parts, {"radius": "concat", "crossing": "concat"})
    r, crossing = got["radius"], got["crossing"]
    smooth = min(int(smooth), r.size)  # a moving average is at most as wide as the curve
    ev = find_inhale(r, smooth=smooth, min_depth=min_depth, tol=tol, split=split, min_z=min_z)
    steps = sub[fmt.STEP].values.astype(float)
    phases = ev["phases"]
    to_step = lambda i: float(steps[i]) if i is not None else np.nan  # noqa: E731
    step_error = lambda i: resolution(steps, i)  # noqa: E731
    sched = schedule_of(sub, ds)
    relative = sched.relative()
    full_relative = schedule_of(ds).relative()
    full_steps = ds[fmt.STEP].values.astype(float)
    centre = "origin" if measure == "origin" else "centroid of the selected tokens"

    def centred(var: xr.DataArray) -> xr.DataArray:
        var.attrs["centre"] = centre
        return var

    out = xr.Dataset(coords=frame_coords(sub))
    u = "embedding units"
    out["radius"] = centred(annotate(xr.DataArray(r, dims="frame"), f"cloud radius ({measure})", u))
    out["radius_smoothed"] = centred(annotate(xr.DataArray(ev["smoothed"], dims="frame"),
                                              f"cloud radius, moving average over {smooth} frames", u))
    out["radius_noise"] = centred(annotate(xr.DataArray(ev["noise"]),
                                           "frame-to-frame noise of R: 1.4826 MAD(diff(R, 2)) / sqrt(2)", u))
    seconds = int(np.isfinite(np.diff(r, 2)).sum()) if r.size >= 3 else 0
    out["radius_noise_error"] = centred(annotate(
        xr.DataArray(MAD_SD_ERROR * ev["noise"] / np.sqrt(seconds) if seconds else np.nan),
        "standard error of radius_noise (a normal's MAD estimate: 1.166 noise / sqrt(second differences))", u))
    lr_ratio = relative if relative is not None else np.full(r.size, np.nan)
    out["lr_ratio"] = annotate(xr.DataArray(lr_ratio, dims="frame"),
                               "learning rate of the update that led to the frame over the peak", "1")
    names = {"rows_moved": "fraction of rows with at least half their coordinates changed since the frame before",
             "rows_predicted": "fraction of rows whose median half bf16 spacing is below the learning rate",
             "coords_moved": "fraction of coordinates changed since the frame before",
             "coords_predicted": "fraction of coordinates whose half bf16 spacing is below the learning rate"}
    for c, name in enumerate(_CROSSING):
        values = crossing[:, c] if not name.endswith("predicted") or has_lr else np.full(r.size, np.nan)
        out[name] = annotate(xr.DataArray(values, dims="frame"), names[name], "1")
    idx = np.arange(len(phases))

    def per_phase(values: list, long_name: str, units: str, centre_of: bool = True) -> xr.DataArray:
        var = annotate(xr.DataArray(np.asarray(values, dtype=float if values and not isinstance(values[0], str)
                                               else object), dims="phase", coords={"phase": idx}), long_name, units)
        return centred(var) if centre_of else var

    out["phase_start"] = per_phase([to_step(p["start"]) for p in phases],
                                   "step of a contraction phase's first contracting update", "steps")
    out["phase_bottom"] = per_phase([to_step(p["bottom"]) for p in phases], "step a contraction phase bottoms out",
                                    "steps")
    out["phase_start_error"] = per_phase([step_error(p["start"]) for p in phases],
                                         "resolution of phase_start: the recording interval before it / sqrt(12)",
                                         "steps")
    out["phase_bottom_error"] = per_phase([step_error(p["bottom"]) for p in phases],
                                          "resolution of phase_bottom: the recording interval before it / sqrt(12)",
                                          "steps")
    out["phase_depth"] = per_phase([p["depth"] for p in phases],
                                   "relative depth of the phase (fraction of R at the frame before its start)", "1")
    drop_error = [ev["noise"] * np.sqrt(p["bottom"] - p["start"] + 1) for p in phases]
    out["phase_depth_error"] = per_phase(
        [e / abs(ev["smoothed"][p["start"] - 1]) if ev["smoothed"][p["start"] - 1] else np.nan
         for e, p in zip(drop_error, phases)],
        "standard error of phase_depth: phase_drop_error / R at the frame before the start", "1")
    out["phase_drop"] = per_phase([p["drop"] for p in phases], "fall of R over the phase (unsmoothed)", u)
    out["phase_drop_error"] = per_phase(drop_error, "standard error of phase_drop: radius_noise * sqrt(updates)", u)
    out["phase_z"] = per_phase([p["z"] for p in phases],
                               "fall of R over its noise: drop / (radius_noise * sqrt(updates))", "1")
    out["phase_p"] = per_phase([p["p"] for p in phases], "one-sided normal p-value of phase_z (nominal)", "1")
    lr_min, lr_max, means, causes, rises = [], [], {name: [] for name in _CROSSING}, [], []
    for p in phases:
        before, bottom = p["start"] - 1, p["bottom"]
        if full_relative is not None:
            inside = (full_steps > steps[before]) & (full_steps <= steps[bottom])
            window = full_relative[inside]
            lr_min.append(float(window.min()) if window.size else np.nan)
            lr_max.append(float(window.max()) if window.size else np.nan)
        else:
            lr_min.append(np.nan)
            lr_max.append(np.nan)
        for name in _CROSSING:
            means[name].append(_window(out[name].values, p["start"], bottom, np.mean))
        pred = out["coords_predicted"].values
        # a phase from the first update has no update before it to rise over: it is the lattice's
        # only if that first update already left coordinates behind, and "learning" when it let
        # (nearly) every coordinate across, which the lattice did not gate
        rise = float(pred[p["start"]] - pred[before]) if before >= 1 else np.nan
        rises.append(rise)
        if not bf16:
            causes.append("learning")
        elif not has_lr:
            causes.append("unknown")
        elif before < 1:
            causes.append("learning" if pred[p["start"]] >= 1 - LATTICE_RISE else "unknown")
        else:
            causes.append("lattice" if np.isfinite(rise) and rise >= LATTICE_RISE else "learning")
    out["phase_lr_min"] = per_phase(lr_min, "smallest learning rate of the phase's updates over the peak", "1", False)
    out["phase_lr_max"] = per_phase(lr_max, "largest learning rate of the phase's updates over the peak", "1", False)
    for name in _CROSSING:
        out[f"phase_{name}"] = per_phase(means[name], f"{names[name]}, mean over the phase's frames", "1", False)
    out["phase_coords_rise"] = per_phase(rises, "rise of coords_predicted at the phase's first frame over the frame "
                                                "before", "1", False)
    out["phase_cause"] = per_phase(causes, "lattice (the learning rate let a binade of coordinates across at the "
                                           "phase's start), learning, or unknown", "1", False)
    if not phases:
        out["phase_cause"] = out["phase_cause"].astype(object)
    has = bool(phases)
    out["n_phases"] = annotate(xr.DataArray(len(phases)), "number of contraction phases", "1")
    out["contraction_start"] = centred(annotate(xr.DataArray(to_step(phases[0]["start"]) if has else np.nan),
                                                "step of the first contracting update", "steps"))
    out["minimum_step"] = centred(annotate(xr.DataArray(to_step(ev["minimum"]) if has else np.nan),
                                           "step of the global radius minimum before sustained expansion", "steps"))
    out["expansion_step"] = centred(annotate(xr.DataArray(to_step(ev["expansion"])),
                                             "step after which R stays above R(0)", "steps"))
    for var, frame in (("contraction_start", phases[0]["start"] if has else None),
                       ("minimum_step", ev["minimum"] if has else None), ("expansion_step", ev["expansion"])):
        out[f"{var}_error"] = centred(annotate(xr.DataArray(step_error(frame)),
                                               f"resolution of {var}: the recording interval before it / sqrt(12)",
                                               "steps"))
    # R(t) is not finite exactly where a selected token's position is not (a diverged frame)
    return finish(base.mark_nonfinite(out, ~np.isfinite(r)), "inhale", measure=measure, smooth=smooth,
                  min_depth=float(min_depth), tol=float(tol), split=float(split), min_z=float(min_z), centre=centre,
                  bf16=int(bf16), peak_lr=sched.peak)


# the report looks for phases on the unsmoothed R: a burst lasts a few frames, and a phase must
# stand min_z = 3 noise standard deviations out of the frame-to-frame scatter
add(Analysis("inhale", inhale, order=10, applies=functools.partial(base.enough, min_frames=2),
             headline=_headline,
             headline_fields=_headline_fields, summary_lines=_summary_lines, figures=_figures, curves=_curves, events=_events))
