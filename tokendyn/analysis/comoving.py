"""Displacement in the co-moving frame: token motion with the cloud's own drift taken out."""
from __future__ import annotations

from typing import Callable, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _kernels as K
from .base import (TokenSelection, annotate, frame_coords, iter_blocks, matrix, pairwise_frames,
                   per_class_frame_stat, select)


def centroid_of(ds: xr.Dataset, reference: TokenSelection = "all", frames=None) -> da.Array:
    """Lazy centroid c(t) of the reference tokens, float64 (frame, dim)."""
    w = matrix(select(ds, reference, frames))
    return w.map_blocks(K.centroid, drop_axis=1, dtype=np.float64, meta=np.empty((0, 0), np.float64))


def comoving_displacement(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: slice | tuple | None = None,
    reference: TokenSelection = "all",
    ref_frame: int = 0,
    lags: Sequence[int] | None = (1, 2, 4, 8, 16),
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Token displacement in the frame that moves with the cloud's centroid.

    With c(t) the centroid of the ``reference`` tokens and y_i(t) = x_i(t) - c(t):

    - ``step_displacement(frame, token)`` = ``|y_i(t) - y_i(t-1)|`` (NaN at the first frame);
    - ``displacement_from_ref(frame, token)`` = ``|y_i(t) - y_i(t0)|``, t0 = ``ref_frame``;
    - ``step_displacement_mean/median/max(frame, class)`` over the selected tokens of each class;
    - ``centroid_drift(frame)`` = ``|c(t) - c(t-1)|``;
    - ``msd(lag, class)`` = mean over tokens and t of ``|y_i(t+lag) - y_i(t)|^2`` (lags in frames).

    A global translation of the whole cloud leaves every co-moving quantity unchanged. Per-frame
    variables are lazy (one read of the movie when computed); ``msd`` is computed here in one
    streaming pass holding ``max(lags)`` frames. Units are those of W ("embedding units").
    """
    sub = select(ds, tokens, frames, min_frames=2)
    w = matrix(sub)
    c = centroid_of(ds, reference, frames).rechunk({0: w.chunks[0]})
    n_tokens = w.shape[1]
    classes = sub[fmt.TOKEN_CLASS].values
    coords = {**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
              fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)}

    step = pairwise_frames(w, lambda xb, cb: K.comoving_step(xb, cb[:, 0, :]), out_tail=(n_tokens,),
                           dtype=np.float64, others=[c[:, None, :]])
    t0 = int(ref_frame)
    x0 = np.asarray(w[t0].compute(), np.float64)
    c0 = np.asarray(c[t0].compute(), np.float64)
    y0 = x0 - c0
    from_ref = da.map_blocks(lambda xb, cb: K.comoving_from_ref(xb, cb[:, 0, :], y0), w, c[:, None, :],
                             drop_axis=2, dtype=np.float64, meta=np.empty((0, 0), np.float64))
    dc = da.sqrt((da.diff(c, axis=0) ** 2).sum(axis=1))
    drift = da.concatenate([da.full((1,), np.nan), dc]).rechunk(w.chunks[0][0])

    out = xr.Dataset(coords=coords)
    unit = "embedding units"
    out["step_displacement"] = annotate(xr.DataArray(step, dims=("frame", "token")),
                                        "co-moving step displacement |y(t) - y(t-1)|", unit)
    out["displacement_from_ref"] = annotate(xr.DataArray(from_ref, dims=("frame", "token")),
                                            f"co-moving displacement from frame {t0} |y(t) - y(t0)|", unit)
    out["centroid_drift"] = annotate(xr.DataArray(drift, dims=("frame",)), "centroid drift |c(t) - c(t-1)|", unit)
    for stat in ("mean", "median", "max"):
        out[f"step_displacement_{stat}"] = annotate(
            per_class_frame_stat(out["step_displacement"], classes, stat),
            f"{stat} co-moving step displacement per class", unit)
    if lags:
        out = out.merge(_msd(w, c, classes, lags, progress))
    out.attrs.update(analysis="comoving_displacement", reference=str(reference), ref_frame=t0)
    return out


def _msd(w: da.Array, c: da.Array, classes: np.ndarray, lags: Sequence[int],
         progress: Callable[[int, int], None] | None) -> xr.Dataset:
    lags_arr = np.asarray(sorted(set(int(lag) for lag in lags)), np.int64)
    if lags_arr.min() < 1:
        raise ValueError("MSD lags must be >= 1 frame")
    size = int(lags_arr.max())
    n, d = w.shape[1], w.shape[2]
    ring = np.zeros((size, n, d))
    sums = np.zeros((lags_arr.size, 3))
    counts = np.zeros((lags_arr.size, 3), np.int64)
    groups = classes.astype(np.int64)
    filled = 0
    head = 0
    both = da.concatenate([w.astype(np.float64), c[:, None, :]], axis=1)  # one pass reads both
    for _, block in iter_blocks(both, progress):
        for t in range(block.shape[0]):
            y = block[t, :n] - block[t, n]
            K.msd_accumulate(ring, filled, head, y, lags_arr, sums, counts, groups)
            ring[head] = y
            head = (head + 1) % size
            filled = min(filled + 1, size)
    present = [i for i in range(3) if (groups == i).any()]
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[:, present]
    var = xr.DataArray(msd, dims=("lag", "class"),
                       coords={"lag": lags_arr, "class": [fmt.TOKEN_CLASSES[i] for i in present]})
    return xr.Dataset({"msd": annotate(var, "co-moving mean squared displacement", "embedding units^2")})
