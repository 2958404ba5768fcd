"""Displacement in the co-moving frame: token motion with the cloud's own drift taken out."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _kernels as K
from ._centroids import SharedCentroids
from ._frames import StoredFrames, decoded, per_token_array, stream
from .base import TokenSelection, annotate, class_groups, frame_coords, selection


def centroid_of(ds: xr.Dataset, reference: TokenSelection = "all", frames=None) -> np.ndarray:
    """Centroid c(t) of the reference tokens, float64 (frame, dim): one pass over the movie."""
    _, rows, positions = selection(ds, reference, frames)
    parts = stream(StoredFrames(ds), positions, _centroid_block, rows)
    return np.concatenate(parts)


def _centroid_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray) -> np.ndarray:
    return K.block_centroids(block[lead:], rows)


def _tokens_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, ref_rows: np.ndarray,
                  y0: np.ndarray) -> np.ndarray:
    return K.comoving_tokens(block, lead, start, rows, ref_rows, y0)


def _stream_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, centroids: SharedCentroids,
                  groups: np.ndarray, n_groups: int, lags: np.ndarray, y0: np.ndarray, keep: bool) -> tuple:
    return K.comoving_stream(block, lead, start, rows, centroids.of(block, lead, start), groups, n_groups, lags,
                             y0, keep)


def comoving_displacement(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: slice | tuple | None = None,
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
    - ``msd(lag, class)`` = mean over tokens and t of ``|y_i(t+lag) - y_i(t)|^2`` (lags in frames).

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
    sub, rows, positions = selection(ds, tokens, frames, min_frames=2)
    _, ref_rows, _ = selection(ds, reference, frames)
    source = StoredFrames(ds)
    classes = sub[fmt.TOKEN_CLASS].values
    groups, names = class_groups(classes)
    coords = {**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
              fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)}
    requested = sorted(set(int(lag) for lag in (lags or ())))
    if requested and requested[0] < 1:
        raise ValueError("MSD lags must be >= 1 frame")
    all_lags = np.asarray(sorted(set(requested) | {1}), np.int64)  # lag 1 gives the step statistics

    t0 = int(ref_frame)
    if not -len(positions) <= t0 < len(positions):
        raise ValueError(f"ref_frame {ref_frame} is outside the {len(positions)} frames analysed")
    first = source.read(positions[[t0]], np.empty((1,) + source.shape[1:], source.dtype))
    y0 = decoded(first)[0, rows].astype(np.float64) - K.block_centroids(first, ref_rows)[0]

    # per (frame, token): from the streaming pass below, or lazy (one more read of the movie when computed)
    per, collected = per_token_array(per_token, source, positions, _tokens_block, rows, ref_rows, y0,
                                     tail=(rows.size, 2), dtype=np.float32, index=4, before=1)
    # one streaming pass: centroid drift, step statistics per class, MSD sums
    parts = stream(source, positions, _stream_block, rows, SharedCentroids(ref_rows), groups, len(names),
                   all_lags, y0, collected is not None, before=int(all_lags.max()), progress=progress,
                   sink=collected)
    drift = np.concatenate([p[0] for p in parts])
    stats = np.concatenate([p[1] for p in parts])
    sums = sum(p[2] for p in parts)
    counts = sum(p[3] for p in parts)

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
    if requested:
        keep = np.isin(all_lags, requested)
        with np.errstate(invalid="ignore", divide="ignore"):
            msd = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[keep]
        var = xr.DataArray(msd, dims=("lag", "class"), coords={"lag": all_lags[keep], "class": names})
        out["msd"] = annotate(var, "co-moving mean squared displacement", "embedding units^2")
    out.attrs.update(analysis="comoving_displacement", reference=str(reference), ref_frame=t0)
    return out
