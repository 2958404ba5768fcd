"""The report and compare side of :func:`tokendyn.analysis.lattice.lattice_motion`: its headline,
summary lines, figure, curves, per-token values and events (registered by :mod:`tokendyn.analysis.lattice`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from tokendyn.stats import plus_minus

from .registry import ReportFigure


def _frozen_all(freeze_frame: np.ndarray, n_frames: int) -> np.ndarray:
    """Per frame the fraction of the tokens frozen for good, whatever their class (NaN: never frozen)."""
    return np.searchsorted(np.sort(freeze_frame), np.arange(n_frames), side="right") / freeze_frame.size


def _onset_at(lat: xr.Dataset, group: str, threshold: float) -> dict[str, Any]:
    """One onset and what it owes to the schedule, as numbers (NaN where unknown)."""
    at = {"group": group, "threshold": threshold}
    error = "freeze_onset_all_error" if group == "all" else "freeze_onset_error"
    where = {"threshold": threshold} if group == "all" else {"class": group, "threshold": threshold}
    return {"step": lat.freeze_onset_all.sel(threshold=threshold).item() if group == "all"
            else lat.freeze_onset.sel(**{"class": group}, threshold=threshold).item(),
            "step_error": lat[error].sel(where).item() if error in lat else np.nan,
            "lr_ratio": lat.freeze_onset_lr_ratio.sel(at).item(),
            "update_ratio": lat.freeze_onset_update_ratio.sel(at).item(),
            "schedule_driven": bool(lat.freeze_onset_schedule_driven.sel(at).item()),
            "cause": str(lat.freeze_onset_cause.sel(at).item())}


_VERDICT = {"schedule": "schedule-driven, not a lattice freeze",
            "lattice": "a lattice freeze (the typical update rounds away)",
            "other": "not the lattice (the typical update still crosses half a site)",
            "unknown": "cause unknown (no learning rate in the movie)"}


def _short(cause: str) -> str:
    """The verdict on a cause without its explanation."""
    return _VERDICT.get(cause, cause).split(" (")[0]


def _onset_text(onset: dict[str, Any], threshold: float) -> str:
    """``"freeze onset (90% frozen) at step 297; the next update's lr 0.67% of peak, 0.4 x half the spacing:
    schedule-driven, not a lattice freeze"``."""
    what = f"{threshold * 100:.0f}% frozen"
    if not np.isfinite(onset["step"]):
        return f"never {what}"
    text = f"freeze onset ({what}) at step {plus_minus(onset['step'], onset.get('step_error', np.nan), '.0f')}"
    if np.isfinite(onset["lr_ratio"]):
        text += (f"; the next update's lr {onset['lr_ratio'] * 100:.3g}% of peak, "
                 f"{onset['update_ratio']:.2g} x half the spacing")
    return f"{text}: {_VERDICT.get(onset['cause'], onset['cause'])}"


def _main_threshold(lat: xr.Dataset) -> float:
    """The threshold the summary speaks of for all tokens: 0.9 where computed, else the largest."""
    thresholds = [float(t) for t in lat.threshold.values]
    return 0.9 if 0.9 in thresholds else max(thresholds)


def _headline(lat: xr.Dataset) -> dict[str, Any]:
    thresholds = lat.threshold.values
    has = "freeze_onset_error" in lat  # (older results lack the errors)
    out: dict[str, Any] = {
        str(c): {"frozen_fraction_last": lat.frozen_fraction.sel(**{"class": c}).values[-1],
                 "frozen_fraction_last_error": (lat.frozen_fraction_last_error.sel(**{"class": c}).item()
                                                if has else np.nan),
                 "freeze_onset": {str(t): lat.freeze_onset.sel(**{"class": c}, threshold=t).item()
                                  for t in thresholds},
                 "freeze_onset_error": {str(t): lat.freeze_onset_error.sel(**{"class": c}, threshold=t).item()
                                        if has else np.nan for t in thresholds},
                 **{f"freeze_onset_{key}": {str(t): _onset_at(lat, str(c), t)[key] for t in thresholds}
                    for key in ("lr_ratio", "update_ratio", "schedule_driven", "cause")}}
        for c in lat["class"].values}
    # the cloud as a whole: when it froze and at what learning rate (relative to the peak)
    threshold = _main_threshold(lat)
    onset = _onset_at(lat, "all", threshold)
    frozen = float(np.isfinite(lat.freeze_frame.values).mean())
    out["all"] = {"threshold": threshold, "freeze_onset": onset["step"], "freeze_onset_error": onset["step_error"],
                  "freeze_onset_lr_ratio": onset["lr_ratio"], "freeze_onset_update_ratio": onset["update_ratio"],
                  "freeze_onset_cause": onset["cause"], "frozen_fraction_last": frozen,
                  "frozen_fraction_last_error": float(np.sqrt(frozen * (1 - frozen) / max(lat.freeze_frame.size, 1)))}
    return out


def _headline_fields(lat: xr.Dataset) -> dict[str, tuple]:
    """What each headline number is measured against, its units, and whether the report's main
    table shows it (by flattened key; ``*`` stands for a class or a threshold)."""
    t = _main_threshold(lat)
    return {"*.frozen_fraction_last": ("fraction of the tokens frozen for good at the last frame", "1", True),
            "*.freeze_onset.0.5": ("step at which half of the class is frozen for good", "steps", True),
            "*.freeze_onset_lr_ratio.0.5": ("lr of the first update after half the class froze, over the peak lr",
                                            "1", True),
            "*.freeze_onset.*": ("step at which this frozen fraction is reached (fimbulwinter onset)", "steps"),
            "*.freeze_onset_lr_ratio.*": ("lr of the first update after the onset, over the peak lr", "1"),
            "*.freeze_onset_update_ratio.*": ("typical Adam update at the onset over half the bf16 spacing", "1"),
            "*.freeze_onset_schedule_driven.*": ("the schedule stopped the tokens (lr < 10% of peak after it)", ""),
            "*.freeze_onset_cause.*": ("what froze the tokens", ""),
            "all.threshold": ("the frozen fraction the cloud's onset is taken at", "1"),
            "all.freeze_onset": (f"step at which {t:.0%} of all tokens are frozen for good", "steps", True),
            "all.freeze_onset_lr_ratio": (f"lr at which the cloud froze ({t:.0%} frozen), over the peak lr", "1",
                                          True),
            "all.freeze_onset_update_ratio": ("typical Adam update at the cloud's onset over half the bf16 spacing",
                                              "1"),
            "all.freeze_onset_cause": ("what froze the cloud", "", True)}




def _summary_lines(lat: xr.Dataset) -> list[tuple[str, str]]:
    threshold = _main_threshold(lat)
    frozen_all = float(np.isfinite(lat.freeze_frame.values).mean())
    tokens = lat.freeze_frame.size
    lines = [("lattice (all)", f"{_percent(frozen_all, np.sqrt(frozen_all * (1 - frozen_all) / tokens))} frozen at "
                               "the end, " + _onset_text(_onset_at(lat, "all", threshold), threshold))]
    for cls in lat["class"].values:
        frozen = float(lat.frozen_fraction.sel(**{"class": cls}).values[-1])
        error = float(lat.frozen_fraction_last_error.sel(**{"class": cls})) if "frozen_fraction_last_error" in lat \
            else np.nan
        onset = _onset_at(lat, str(cls), 0.5)
        when = (f"half frozen at step {plus_minus(onset['step'], onset['step_error'], '.0f')}"
                if np.isfinite(onset["step"]) else "never half frozen")
        if np.isfinite(onset["step"]) and onset["cause"] != "lattice":
            when += f" ({_short(onset['cause'])})"
        temp = float(lat.temperature.sel(**{"class": cls}).values[-1])
        if "temperature_median" in lat:  # the median is robust to the few coordinates crossing zero
            median = float(lat.temperature_median.sel(**{"class": cls}).values[-1])
            median_error = float(lat.temperature_median_error.sel(**{"class": cls}).values[-1])
            temperature = (f"final temperature median {plus_minus(median, median_error, '.3g')} sites^2 "
                           f"(mean {temp:.3g})")
        else:
            temperature = f"final temperature {temp:.3g} sites^2"
        lines.append((f"lattice ({cls:7s})", f"{_percent(frozen, error)} frozen at the end, {when}; {temperature}"))
    return lines


def _percent(fraction: float, error: float) -> str:
    """``"42 ± 3%"``: a fraction and its error in percent (``"0%"`` where the error is 0)."""
    return plus_minus(fraction * 100, error * 100, ".0f") + "%"


def _curves(lat: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"temperature": lat.temperature, "frozen_fraction": lat.frozen_fraction}


def _token_values(lat: xr.Dataset) -> dict[str, xr.DataArray]:
    """Each token's freeze step (a token never seen to freeze: the last step + 1, so that a rank test
    takes it as the latest) and whether it froze (0/1)."""
    steps = lat["step"].values
    never = float(steps[-1]) + 1
    frozen = np.isfinite(lat.freeze_frame.values)
    step = xr.DataArray(np.where(frozen, lat.freeze_step.values, never), dims="token",
                        coords=lat.freeze_step.coords)
    step.attrs.update(long_name="step after which the token's bits never change again (never frozen: the last "
                                "step + 1)", units="steps", never_frozen=never,
                      note=f"a token never seen to freeze is coded as the last step + 1 ({never:g}), later than any "
                           "freeze")
    flag = xr.DataArray(frozen.astype(np.float64), dims="token", coords=lat.freeze_step.coords)
    flag.attrs.update(long_name="frozen for good by the last frame (1) or not (0)", units="1")
    return {"freeze_step": step, "frozen": flag}


def _events(lat: xr.Dataset) -> dict[str, Any]:
    """Whether the selected tokens (all classes) were ever half frozen, and the step (the result's
    onset at threshold 0.5 where it has one, else from the tokens' freeze frames)."""
    if 0.5 in [float(t) for t in lat.threshold.values]:
        step = float(lat.freeze_onset_all.sel(threshold=0.5).item())
    else:
        reached = np.flatnonzero(_frozen_all(lat.freeze_frame.values, lat["step"].size) >= 0.5)
        step = float(lat["step"].values[reached[0]]) if reached.size else np.nan
    return {"half_frozen": bool(np.isfinite(step)), "freeze_onset_half": step}


def _figures(lat: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    from tokendyn.surfaces.figures import ordered_classes, subplots

    fig, axes = subplots(1, 2, height=3.6)
    steps = lat["step"].values
    has_median = "temperature_median" in lat
    for cls in ordered_classes(lat["class"].values):
        colour = colours.get(cls)
        t = lat.temperature.sel(**{"class": cls}).values
        ok = np.isfinite(t) & (t > 0)
        axes[0].plot(steps[ok], t[ok], lw=0.7, ls=":" if has_median else "-", color=colour,
                     label=f"{cls} mean" if has_median else cls)
        if has_median:
            m = lat.temperature_median.sel(**{"class": cls}).values
            e = lat.temperature_median_error.sel(**{"class": cls}).values
            ok = np.isfinite(m) & (m > 0)
            axes[0].plot(steps[ok], m[ok], lw=1.4, color=colour, label=f"{cls} median")
            band = ok & np.isfinite(e)
            axes[0].fill_between(steps[band], np.maximum(m[band] - e[band], m[band] / 10), m[band] + e[band],
                                 color=colour, alpha=0.2, lw=0)
        axes[1].plot(steps, lat.frozen_fraction.sel(**{"class": cls}).values, lw=1.2, color=colour, label=cls)
        onset = lat.freeze_onset.sel(**{"class": cls}, threshold=0.5).item() \
            if 0.5 in [float(t) for t in lat.threshold.values] else np.nan
        if np.isfinite(onset):
            axes[1].axvline(onset, color=colour, ls=":", lw=1)
    axes[1].plot(steps, _frozen_all(lat.freeze_frame.values, steps.size), lw=1.2, ls="--", color="black",
                 label="all classes")
    if np.isfinite(lat.lr_ratio.values).any():
        axes[1].plot(steps, lat.lr_ratio.values, lw=1, color="grey", alpha=0.8, label="lr / peak lr")
    threshold = _main_threshold(lat)
    onset = _onset_at(lat, "all", threshold)
    title = "frozen for good (dotted: half of a class)"
    if np.isfinite(onset["step"]):
        axes[1].axvline(onset["step"], color="black", ls="--", lw=0.8)
        lr = f", lr {onset['lr_ratio']:.2g} of peak" if np.isfinite(onset["lr_ratio"]) else ""
        title = f"{threshold:.0%} frozen at step {onset['step']:.0f}{lr}: {_short(onset['cause'])}"
    axes[0].set(xlabel="step", ylabel="temperature (sites² per coordinate)", yscale="log",
                title="lattice temperature: mean (dotted) and median ± s.e." if has_median else "lattice temperature")
    axes[1].set(xlabel="step", ylabel="fraction of tokens / of peak lr", ylim=(0, 1.02))
    axes[1].set_title(title, fontsize=8.5)
    axes[0].legend(loc="upper right", ncols=3, fontsize=7)
    axes[1].legend(loc="center right")
    return [ReportFigure("lattice", "bf16 lattice motion and freezing", fig)]
