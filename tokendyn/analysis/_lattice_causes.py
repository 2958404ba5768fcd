"""Why a freeze onset happened: the schedule, the bf16 lattice, or neither.

The one job of this module is to judge each freeze onset found by
:func:`tokendyn.analysis.lattice.lattice_motion` (and each token's freeze): learning-rate ratios
after it, the typical Adam update over half the bf16 spacing, whether the schedule drove it, and
its cause label (:data:`ONSET_CAUSES`). It does not import :mod:`tokendyn.analysis.lattice`.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from ._frames import decoded
from ._schedule import SCHEDULE_DRIVEN_LR_FRACTION, TYPICAL_ADAM_STEP, schedule_of, update_to_half_spacing
from .base import annotate

__all__ = ["ONSET_CAUSES", "onset_causes"]

#: What ``freeze_onset_cause`` says of an onset: the schedule's (see ``freeze_onset_schedule_driven``),
#: the lattice's (the typical update is below half the bf16 spacing at the typical coordinate),
#: neither (the typical update still crosses half a spacing: the updates themselves stopped), not
#: known (no ``lr`` in the movie, or a small lr in a schedule not known to end at zero), or no onset.
ONSET_CAUSES = ("schedule", "lattice", "other", "unknown", "none")


def _decoded_rows(ds: xr.Dataset, position: int, rows: np.ndarray) -> np.ndarray:
    """float32 values of the selected rows of one stored bf16 frame (one extra read of the movie)."""
    return decoded(np.asarray(ds["W_bits"].isel({fmt.DIM_FRAME: int(position)}).values)[rows])


def onset_causes(ds: xr.Dataset, sub: xr.Dataset, rows: np.ndarray, positions: np.ndarray,
                 masks: list[np.ndarray], onset_frame: np.ndarray, freeze_step: np.ndarray,
                 groups: list[str], thresholds: list[float]) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """What each freeze onset (per group and threshold) and each token's freeze owes to the schedule.

    The learning rate of an onset is that of the first update after the onset frame (the first that
    no longer moved the frozen tokens), over the movie's peak; the onset is schedule-driven when the
    schedule ends at zero and every update after the onset, up to the selection's last frame, had a
    learning rate below :data:`SCHEDULE_DRIVEN_LR_FRACTION` of the peak. The typical coordinate is
    the median ``|x|`` over the group's tokens and coordinates at the onset frame (one extra read of
    that frame); a token's is the median over its coordinates at the selection's last frame, which
    holds its frozen bits (exactly so with ``tolerance=0``).

    Returns
    -------
    tuple of (dict of str to xarray.DataArray, dict of str to Any)
        The variables ``lattice_motion`` adds (``lr_ratio``, ``freeze_onset_*``, ``freeze_lr_ratio``,
        ``freeze_update_ratio``) and the attributes it records (``peak_lr``, ``schedule_ends_at_zero``, ...).
    """
    sched = schedule_of(sub, ds)
    steps = sub[fmt.STEP].values
    last_step = steps[-1]
    full_steps = np.asarray(ds[fmt.STEP].values)
    rel = None
    if "lr" in ds and np.isfinite(sched.peak) and sched.peak > 0:
        rel = np.asarray(ds["lr"].values, np.float64) / sched.peak

    def after(step: float) -> np.ndarray:
        """lr / peak of the movie's updates after ``step``, up to the selection's last frame."""
        if rel is None or not np.isfinite(step):
            return np.zeros(0)
        window = rel[(full_steps > step) & (full_steps <= last_step)]
        return window[np.isfinite(window)]

    shape = onset_frame.shape
    lr_ratio, lr_max, typical = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    driven = np.zeros(shape, bool)
    cause = np.full(shape, "none", dtype="<U8")
    frames_read: dict[int, np.ndarray] = {}
    for (g, k), f in np.ndenumerate(onset_frame):
        if f < 0:
            continue
        if f not in frames_read:
            frames_read[f] = _decoded_rows(ds, positions[f], rows)
        x = np.abs(frames_read[f][masks[g]])
        x = x[np.isfinite(x)]
        typical[g, k] = np.median(x) if x.size else np.nan
        window = after(steps[f])
        if window.size:
            lr_ratio[g, k], lr_max[g, k] = window[0], window.max()
        driven[g, k] = sched.ends_at_zero is True and lr_max[g, k] < SCHEDULE_DRIVEN_LR_FRACTION
        if driven[g, k]:
            cause[g, k] = "schedule"
        elif not np.isfinite(lr_ratio[g, k]) or (sched.ends_at_zero is None
                                                  and lr_max[g, k] < SCHEDULE_DRIVEN_LR_FRACTION):
            cause[g, k] = "unknown"
    peak = sched.peak if np.isfinite(sched.peak) else np.nan
    update = update_to_half_spacing(lr_ratio * peak, typical)
    known = (cause == "none") & (onset_frame >= 0)
    cause[known & (update < 1)] = "lattice"
    cause[known & ~(update < 1)] = "other"

    # per token: the first update after its freeze, and its frozen bits' typical coordinate
    token_lr = np.full(freeze_step.shape, np.nan)
    for s in np.unique(freeze_step[np.isfinite(freeze_step)]):
        window = after(s)
        if window.size:
            token_lr[freeze_step == s] = window[0]
    token_update = np.full(freeze_step.shape, np.nan)
    if np.isfinite(token_lr).any():
        last = np.abs(_decoded_rows(ds, positions[-1], rows)).astype(np.float64)
        last[~np.isfinite(last)] = np.nan
        with warnings.catch_warnings():  # a row of NaN only (a diverged token) has no typical coordinate
            warnings.simplefilter("ignore", RuntimeWarning)
            token_typical = np.nanmedian(last, axis=1)
        token_update = update_to_half_spacing(token_lr * peak, token_typical)

    coords = {"group": groups, "threshold": thresholds}
    dims = ("group", "threshold")

    def grid(values: np.ndarray, long_name: str, units: str) -> xr.DataArray:
        return annotate(xr.DataArray(values, dims=dims, coords=coords), long_name, units)

    assumption = (f"the typical Adam update is lr * {TYPICAL_ADAM_STEP:g} per coordinate "
                  "(Adam's normalized step m / (sqrt(v) + eps) is about 1)")
    frame_lr = sched.relative()
    out = {
        "lr_ratio": annotate(xr.DataArray(frame_lr if frame_lr is not None else np.full(len(steps), np.nan),
                                          dims=(fmt.DIM_FRAME,)),
                             "learning rate of the update that led to the frame, over the peak", "1"),
        "freeze_onset_lr_ratio": grid(
            lr_ratio, "learning rate of the first update after the freeze onset, over the peak learning rate", "1"),
        "freeze_onset_lr_max_ratio": grid(
            lr_max, "largest learning rate of the updates after the freeze onset, over the peak learning rate", "1"),
        "freeze_onset_coordinate": grid(
            typical, "median |coordinate| of the group's tokens at the freeze onset frame", "embedding units"),
        "freeze_onset_update_ratio": grid(
            update, "typical Adam update (lr of the first update after the onset * TYPICAL_ADAM_STEP) over half "
                    "the bf16 spacing at the median |coordinate|", "1"),
        "freeze_onset_schedule_driven": grid(
            driven, "the freeze onset is the schedule's doing: the schedule ends at zero and every update after "
                    f"the onset had a learning rate below {SCHEDULE_DRIVEN_LR_FRACTION:g} of the peak", "1"),
        "freeze_onset_cause": grid(
            cause, "what froze the group: schedule, lattice (typical update below half the bf16 spacing), other "
                   "(it was not), unknown (no learning rate in the movie) or none (no onset)", "1"),
        "freeze_lr_ratio": annotate(xr.DataArray(token_lr, dims=("token",)),
                                    "learning rate of the first update after the token's freeze, over the peak", "1"),
        "freeze_update_ratio": annotate(
            xr.DataArray(token_update, dims=("token",)),
            "typical Adam update after the token's freeze over half the bf16 spacing at its median |coordinate|",
            "1"),
    }
    for name in ("freeze_onset_update_ratio", "freeze_update_ratio"):
        out[name].attrs["assumption"] = assumption
    ends = {True: "yes", False: "no", None: "unknown"}[sched.ends_at_zero]
    attrs = {"peak_lr": peak, "schedule_ends_at_zero": ends, "typical_adam_step": TYPICAL_ADAM_STEP,
             "schedule_driven_lr_fraction": SCHEDULE_DRIVEN_LR_FRACTION, "update_assumption": assumption}
    return out, attrs
