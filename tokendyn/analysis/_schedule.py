"""The run's learning-rate schedule as the analyses see it, and the bf16 lattice it acts on.

Two questions the lattice and inhale analyses must answer before a freeze or a contraction counts
as a finding: was the learning rate still large enough to move a row across half a bf16 spacing,
and was the schedule itself ending at zero? The movie answers both: ``lr(frame)`` is the learning
rate of the update that produced each frame (0 at frame 0, before any update), and the
``config`` attribute a tokendyn trainer writes names the schedule and its floor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

# Adam's normalized step m / (sqrt(v) + eps) has magnitude about 1 per coordinate (at most
# (1 - beta1) / sqrt(1 - beta2) in a single step); the update of a coordinate is about lr * 1.
TYPICAL_ADAM_STEP = 1.0

#: A freeze onset or contraction where the learning rate is below this fraction of its peak, in a
#: schedule that decays to zero, is the schedule's doing, not the lattice's.
SCHEDULE_DRIVEN_LR_FRACTION = 0.1


@dataclass(frozen=True)
class Schedule:
    """The learning rate per selected frame and what the run's config says of its schedule.

    Attributes
    ----------
    lr : numpy.ndarray or None
        float64 learning rate of the update that led to each selected frame, or None when the
        movie has no ``lr`` scalar.
    peak : float
        The largest finite learning rate of the whole movie (NaN when unknown).
    ends_at_zero : bool or None
        True when the schedule decays to exactly zero (``min_lr_ratio == 0`` and not constant, or
        the movie's last recorded lr is 0 after a positive peak); None when neither the config nor
        the scalar tells.
    """

    lr: np.ndarray | None
    peak: float
    ends_at_zero: bool | None

    def relative(self) -> np.ndarray | None:
        """``lr / peak`` per selected frame (None without an ``lr`` scalar)."""
        if self.lr is None or not np.isfinite(self.peak) or self.peak <= 0:
            return None
        return self.lr / self.peak


def schedule_of(sub: xr.Dataset, full: xr.Dataset | None = None) -> Schedule:
    """The learning rates of the frames of ``sub`` and the schedule of the movie ``full``.

    Parameters
    ----------
    sub : xarray.Dataset
        The selected frames (a cut of an opened movie).
    full : xarray.Dataset, optional
        The whole movie, for the peak and the schedule's end; defaults to ``sub``.
    """
    full = sub if full is None else full
    lr = np.asarray(sub["lr"].values, np.float64) if "lr" in sub else None
    peak = float("nan")
    last = float("nan")
    if "lr" in full:
        every = np.asarray(full["lr"].values, np.float64)
        finite = every[np.isfinite(every)]
        if finite.size:
            peak = float(finite.max())
            last = float(finite[-1])
    ends_at_zero: bool | None = None
    config = full.attrs.get("config")
    if isinstance(config, dict) and "min_lr_ratio" in config:
        try:
            ends_at_zero = float(config["min_lr_ratio"]) == 0.0 and config.get("schedule") != "constant"
        except (TypeError, ValueError):
            ends_at_zero = None
    if ends_at_zero is None and np.isfinite(peak) and peak > 0 and np.isfinite(last):
        ends_at_zero = last == 0.0
    return Schedule(lr=lr, peak=peak, ends_at_zero=ends_at_zero)


def bf16_half_spacing(values: np.ndarray) -> np.ndarray:
    """Half the bfloat16 lattice spacing at each value, float64.

    A bf16 value ``x`` with binary exponent ``e`` (``2**e <= |x| < 2**(e+1)``) has neighbours
    ``2**(e-7)`` apart; an update smaller than half that is rounded away (round to nearest). Zero
    and subnormals sit on the finest spacing, ``2**-133``. NaN stays NaN.
    """
    x = np.abs(np.asarray(values, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log2(x))
    exponent = np.where(np.isfinite(exponent), np.maximum(exponent, -126.0), -126.0)
    half = np.ldexp(1.0, (exponent - 8).astype(np.int64))
    return np.where(np.isnan(x), np.nan, half)


def update_to_half_spacing(lr: np.ndarray | float, values: np.ndarray) -> np.ndarray:
    """The typical Adam update ``lr * TYPICAL_ADAM_STEP`` over half the bf16 spacing at ``values``.

    Above 1 a coordinate of that size moves to a neighbouring site each step; below 1 round to
    nearest throws the update away and the coordinate stays put.
    """
    return np.asarray(lr, np.float64) * TYPICAL_ADAM_STEP / bf16_half_spacing(values)
