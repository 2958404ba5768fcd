"""Displacement in the co-moving frame: token motion with the cloud's own drift taken out."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.stats import bootstrap_mean

from . import _comoving_kernels as K
from . import base
from ._centroids import SharedCentroids
from ._frames import PER_TOKEN_CHOICES, StoredFrames, per_token_array
from ._kernel_base import block_centroids
from ._schedule import schedule_of
from .base import FrameRange, TokenSelection, annotate, class_groups, decoded, finish, frame_coords, merge, selection, stream
from .registry import Analysis, ReportFigure, add

# the streaming pass's fields; the per-(frame, token) part goes to a sink (or is empty)
_MERGE = {"centroid_drift": "concat", "step_stats": "concat", "msd_sums": "sum", "msd_counts": "sum",
          "per_token": "skip", "nonfinite": "concat", "msd_token_sums": "sum", "msd_token_counts": "sum"}
LAG_LIMIT = 2**31  # lags at or beyond this are refused: no movie holds that many frames


def centroid_of(ds: xr.Dataset, reference: TokenSelection = "all", frames: FrameRange = None) -> np.ndarray:
    """Centroid c(t) of the reference tokens, float64 (frame, dim): one pass over the movie."""
    _, rows, positions = selection(ds, reference, frames)
    parts = stream(StoredFrames(ds), positions, _centroid_block, rows)
    return merge(parts, {"centroid": "concat"})["centroid"]


def _centroid_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {"centroid": block_centroids(block[lead:], rows)}


def _tokens_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, ref_rows: np.ndarray,
                  y0: np.ndarray) -> np.ndarray:
    return K.comoving_tokens(block, lead, start, rows, ref_rows, y0)


def _stream_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, centroids: SharedCentroids,
                  groups: np.ndarray, n_groups: int, lags: np.ndarray, y0: np.ndarray, keep: bool) -> dict[str, Any]:
    drift, stats, sums, counts, per, nonfinite, token_sums, token_counts = K.comoving_stream(
        block, lead, start, rows, centroids.of(block, lead, start), groups, n_groups, lags, y0, keep)
    return {"centroid_drift": drift, "step_stats": stats, "msd_sums": sums, "msd_counts": counts, "per_token": per,
            "nonfinite": nonfinite, "msd_token_sums": token_sums, "msd_token_counts": token_counts}


@base.accepts(reference=base.token_rule(), ref_frame=base.whole(expected="a frame index (a whole number)"),
              lags=base.sequence(base.Rule("", lambda lag: base.is_whole(lag, 1) and lag < LAG_LIMIT),
                                 f"None or whole numbers of frames from 1 to {LAG_LIMIT - 1}, e.g. (1,2,4)", none=True),
              per_token=base.choice(*PER_TOKEN_CHOICES))
def comoving_displacement(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: FrameRange = None,
    reference: TokenSelection = "all",
    ref_frame: int = 0,
    lags: Sequence[int] | None = (1, 2, 4, 8, 16),
    per_token: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Token displacement in the frame that moves with the cloud's centroid.

    With c(t) the centroid of the ``reference`` tokens and y_i(t) = x_i(t) - c(t):

    - ``step_displacement(frame, token)`` = ``|y_i(t) - y_i(t-1)|`` (NaN at the first frame);
    - ``displacement_from_ref(frame, token)`` = ``|y_i(t) - y_i(t0)|``, t0 = ``ref_frame``;
    - ``step_displacement_mean/median/max(frame, class)`` over the selected tokens of each class;
    - ``centroid_drift(frame)`` = ``|c(t) - c(t-1)|``;
    - ``msd(lag, class)`` = mean over tokens and t of ``|y_i(t+lag) - y_i(t)|^2`` (lags in frames;
      NaN for a lag as long as the frames analysed);
    - ``lr_ratio(frame)``: the learning rate of the update that led to the frame over the movie's
      peak (NaN without an ``lr`` scalar), so that a displacement can be read against it;
    - ``nonfinite_frame(frame)``: a selected token's co-moving position is NaN or infinite there
      (a diverged run). The per-frame values that need such a position are NaN; the MSD leaves
      out the pairs that hold one.

    A global translation of the whole cloud leaves every co-moving quantity unchanged. Everything is
    computed in one streaming pass holding ``max(lags)`` frames, except with ``per_token="lazy"``:
    then the per-(frame, token) variables are dask arrays that read the movie again when computed
    (memory independent of the number of frames). ``"memory"`` holds them (8 bytes per frame and
    token); ``"auto"`` holds them up to ``tokendyn.analysis._frames.IN_MEMORY_BYTES`` (256 MiB).
    Those two are float32 (rounded once from float64, 6e-8 relative, far finer than a bf16 W's
    2^-8 spacing; half the memory, and fewer fresh pages, measured 0.6 s of a 3 s Duckling II pass on
    the 2-core VM); everything else, the per-class statistics and the MSD included, is float64.
    Units are those of W ("embedding units").
    """
    name = "comoving_displacement"
    sub, rows, positions = selection(ds, tokens, frames, min_frames=2)
    _, ref_rows, _ = selection(ds, reference, frames, what=f"{name}'s reference")
    source = StoredFrames(ds)
    classes = sub[fmt.TOKEN_CLASS].values
    groups, names = class_groups(classes)
    coords = {**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
              fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)}
    requested = np.asarray(sorted(set(int(lag) for lag in (lags if lags is not None else ()))), np.int64)
    # lag 1 gives the step statistics; a lag as long as the selection has no pair (its MSD is NaN)
    all_lags = np.union1d(requested[requested < len(positions)], [1]).astype(np.int64)

    t0 = int(ref_frame)
    base.check_option(ds, name, "ref_frame", ref_frame, -len(positions) <= t0 < len(positions),
                 f"inside the {len(positions)} frames analysed ({-len(positions)} .. {len(positions) - 1})")
    first = source.read(positions[[t0]], np.empty((1,) + source.shape[1:], source.dtype))
    y0 = decoded(first)[0, rows].astype(np.float64) - block_centroids(first, ref_rows)[0]

    # per (frame, token): from the streaming pass below, or lazy (one more read of the movie when computed)
    per, collected = per_token_array(per_token, source, positions, _tokens_block, rows, ref_rows, y0,
                                     tail=(rows.size, 2), dtype=np.float32, field="per_token", before=1)
    # one streaming pass: centroid drift, step statistics per class, MSD sums
    parts = stream(source, positions, _stream_block, rows, SharedCentroids(ref_rows), groups, len(names),
                   all_lags, y0, collected is not None, before=int(all_lags.max()), progress=progress,
                   sink=collected)
    got = merge(parts, _MERGE)
    drift, stats, sums, counts = got["centroid_drift"], got["step_stats"], got["msd_sums"], got["msd_counts"]

    out = xr.Dataset(coords=coords)
    unit = "embedding units"
    out["step_displacement"] = annotate(xr.DataArray(per[..., 0], dims=("frame", "token")),
                                        "co-moving step displacement |y(t) - y(t-1)|", unit)
    out["displacement_from_ref"] = annotate(xr.DataArray(per[..., 1], dims=("frame", "token")),
                                            f"co-moving displacement from frame {t0} |y(t) - y(t0)|", unit)
    out["centroid_drift"] = annotate(xr.DataArray(drift, dims=("frame",)), "centroid drift |c(t) - c(t-1)|", unit)
    for j, stat in enumerate(("mean", "median", "max")):
        out[f"step_displacement_{stat}"] = annotate(
            xr.DataArray(stats[..., j], dims=("frame", "class"), coords={"class": names}),
            f"{stat} co-moving step displacement per class", unit)
    if requested.size:
        with np.errstate(invalid="ignore", divide="ignore"):
            by_lag = dict(zip(all_lags.tolist(), np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)))
        msd = np.stack([by_lag.get(lag, np.full(len(names), np.nan)) for lag in requested.tolist()])
        var = xr.DataArray(msd, dims=("lag", "class"), coords={"lag": requested, "class": names})
        out["msd"] = annotate(var, "co-moving mean squared displacement (over the finite pairs)", "embedding units^2")
    # the last frame per token: held, or one block of the lazy arrays computed (no second pass)
    last = np.asarray(per[-1], np.float64)
    out["step_displacement_last"] = annotate(xr.DataArray(last[:, 0], dims="token"),
                                             "co-moving step displacement at the last frame", unit)
    out["displacement_last"] = annotate(xr.DataArray(last[:, 1], dims="token"),
                                        f"co-moving displacement from frame {t0} at the last frame", unit)
    out["step_displacement_mean_last_error"] = annotate(
        xr.DataArray([bootstrap_mean(last[groups == g, 0]).error for g in range(len(names))], dims="class",
                     coords={"class": names}),
        "standard error of the last frame's mean step displacement (bootstrap over the class's tokens)", unit)
    if requested.size:
        with np.errstate(invalid="ignore", divide="ignore"):
            own = got["msd_token_sums"] / np.where(got["msd_token_counts"] > 0, got["msd_token_counts"], np.nan)
        at = {lag: li for li, lag in enumerate(all_lags.tolist())}
        err = np.array([[bootstrap_mean(own[at[lag], groups == g]).error if lag in at else np.nan for g in range(len(names))]
                        for lag in requested.tolist()])
        out["msd_error"] = annotate(xr.DataArray(err, dims=("lag", "class"), coords={"lag": requested, "class": names}),
                                    "standard error of the MSD (bootstrap over the class's tokens of each token's MSD)",
                                    "embedding units^2")
    relative = schedule_of(sub, ds).relative()
    out["lr_ratio"] = annotate(xr.DataArray(relative if relative is not None else np.full(len(positions), np.nan),
                                            dims="frame"),
                               "learning rate of the update that led to the frame over the movie's peak "
                               "(NaN: no lr in the movie)", "1")
    out = base.mark_nonfinite(out, got["nonfinite"] > 0)
    return finish(out, name, reference=str(reference), ref_frame=t0)


# --- in the report ------------------------------------------------------------------------------

#: The headline's late window: this fraction of the frames whose update had a learning rate > 0
LATE_FRACTION = 0.1


def late_window(com: xr.Dataset) -> dict[str, Any]:
    """The frames the headline's late displacement is measured over: the last :data:`LATE_FRACTION`
    of the frames (at least one) whose update had a learning rate above 0 (every frame after the
    first where the movie has no ``lr``). A displacement at the last frame of a schedule that ends
    at zero is zero by construction; over this window it says how the tokens still moved while
    they could."""
    n = com.sizes["frame"]
    ratio = com["lr_ratio"].values if "lr_ratio" in com else np.full(n, np.nan)
    has_lr = bool(np.isfinite(ratio).any())
    candidates = np.flatnonzero(np.isfinite(ratio) & (ratio > 0)) if has_lr else np.arange(1, n)
    candidates = candidates[candidates >= 1]  # the first frame has no step
    take = max(1, int(np.ceil(LATE_FRACTION * candidates.size))) if candidates.size else 0
    frames = candidates[-take:] if take else candidates
    steps = com["step"].values
    window = ratio[frames] if has_lr and frames.size else np.array([np.nan])
    basis = (f"the last {LATE_FRACTION:.0%} of the frames with lr > 0" if has_lr
             else f"the last {LATE_FRACTION:.0%} of the frames (no lr in the movie)")
    return {"frames": frames, "basis": basis, "has_lr": has_lr,
            "first_step": float(steps[frames[0]]) if frames.size else np.nan,
            "last_step": float(steps[frames[-1]]) if frames.size else np.nan,
            "lr_ratio_min": float(np.min(window)), "lr_ratio_max": float(np.max(window))}


def _late_per_token(com: xr.Dataset, frames: np.ndarray) -> np.ndarray:
    """Each token's mean co-moving step displacement over ``frames`` (NaN where none is finite)."""
    if frames.size == 0:
        return np.full(com.sizes["token"], np.nan)
    per = np.asarray(com.step_displacement.isel(frame=frames).values, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a token with no finite step: NaN
        return np.nanmean(per, axis=0)


def _headline(com: xr.Dataset) -> dict[str, Any]:
    """Per class: the mean step displacement over the late window (:func:`late_window`) with its
    bootstrap error over the class's tokens, and at the last frame; the window and the learning
    rate there; the MSD per lag."""
    error = com.get("step_displacement_mean_last_error")
    window = late_window(com)
    per_token = _late_per_token(com, window["frames"])
    groups, names = class_groups(com[fmt.TOKEN_CLASS].values)
    out: dict[str, Any] = {}
    for c in com["class"].values:
        late = bootstrap_mean(per_token[groups == list(names).index(str(c))] if str(c) in list(names)
                              else np.array([]))
        out[str(c)] = {"late_mean_step_displacement": late.value, "late_mean_step_displacement_error": late.error,
                       "final_mean_step_displacement": com.step_displacement_mean.sel(**{"class": c}).values[-1],
                       "final_mean_step_displacement_error": (error.sel(**{"class": c}).item() if error is not None
                                                              else np.nan)}
    ratio = com["lr_ratio"].values if "lr_ratio" in com else np.array([np.nan])
    out["late_window"] = {"basis": window["basis"], "first_step": window["first_step"],
                          "last_step": window["last_step"], "frames": int(window["frames"].size),
                          "lr_ratio_min": window["lr_ratio_min"], "lr_ratio_max": window["lr_ratio_max"]}
    out["final_lr_ratio"] = float(ratio[-1])
    if "msd" in com:
        for key in ("msd", "msd_error"):
            if key in com:
                out[key] = {str(c): {int(lag): com[key].sel(lag=lag, **{"class": c}).item() for lag in com.lag.values}
                            for c in com[key]["class"].values}
    return out


def _headline_fields(com: xr.Dataset) -> dict[str, tuple]:
    """What each headline number is measured against, its units, and whether the report's main
    table shows it (by flattened key; ``*`` stands for a class)."""
    w = late_window(com)
    lr = (f", lr {w['lr_ratio_min']:.2g}-{w['lr_ratio_max']:.2g} of peak" if w["has_lr"] else "")
    final = com["lr_ratio"].values[-1] if "lr_ratio" in com else np.nan
    final_lr = f" (lr there {final:.2g} of peak)" if np.isfinite(final) else ""
    return {"*.late_mean_step_displacement": (f"mean co-moving step displacement over {w['basis']} (steps "
                                              f"{w['first_step']:.0f}-{w['last_step']:.0f}{lr})", "embedding units", True),
            "*.final_mean_step_displacement": (f"mean co-moving step displacement at the last frame{final_lr}; 0 "
                                               "there is no finding when the schedule ends at 0", "embedding units",
                                               True),
            "late_window.*": ("the late window", ""),
            "late_window.first_step": ("first step of the late window", "steps"),
            "late_window.last_step": ("last step of the late window", "steps"),
            "late_window.frames": ("frames in the late window", "frames"),
            "late_window.lr_ratio_min": ("smallest lr in the late window over the peak", "1"),
            "late_window.lr_ratio_max": ("largest lr in the late window over the peak", "1"),
            "final_lr_ratio": ("lr of the last update over the peak", "1", True),
            "msd.*": ("co-moving mean squared displacement at a lag (frames)", "embedding units^2")}




def _curves(com: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"step_displacement_mean": com.step_displacement_mean}


def _token_values(com: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"displacement": com.displacement_last, "step_displacement": com.step_displacement_last}


def _figures(com: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    from tokendyn.surfaces.figures import ordered_classes, subplots

    fig, (ax, right) = subplots(1, 2, height=3.4, gridspec_kw={"width_ratios": (3, 2)})
    steps = com["step"].values
    window = late_window(com)
    if window["frames"].size:
        ax.axvspan(window["first_step"], window["last_step"], color="0.85", zorder=0,
                   label=f"headline window: {window['basis'].replace('the ', '', 1)}")
    for cls in ordered_classes(com["class"].values):
        y = com.step_displacement_mean.sel(**{"class": cls}).values
        ok = np.isfinite(y) & (y > 0)
        ax.plot(steps[ok], y[ok], lw=1, color=colours.get(cls), label=cls)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="mean step displacement (emb. units)", title="co-moving step displacement per class")
    ax.legend(loc="best")
    if "msd" in com:
        for cls in ordered_classes(com["msd"]["class"].values):
            y = com.msd.sel(**{"class": cls}).values
            err = com.msd_error.sel(**{"class": cls}).values if "msd_error" in com else None
            right.errorbar(com.lag.values, y, yerr=err, marker="o", ms=3, lw=1, capsize=2, color=colours.get(cls),
                           label=cls)
        right.set(xscale="log", yscale="log", xlabel="lag (frames)", ylabel="MSD (emb. units²)",
                  title="co-moving mean squared displacement")
        right.legend(loc="best")
    else:
        right.set_axis_off()
    return [ReportFigure("comoving", "Co-moving displacement per class", fig)]


add(Analysis("comoving", comoving_displacement, order=20, applies=functools.partial(base.enough, min_frames=2),
             headline=_headline, headline_fields=_headline_fields, figures=_figures, curves=_curves, token_values=_token_values))
