"""The shape of the token cloud, frame by frame."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from .base import TokenSelection, annotate, frame_coords, matrix, reduce_blocks, select


def _geometry_block(block: np.ndarray, start: int, masks: list, quantiles, k: int, nn_at: np.ndarray,
                    sample: np.ndarray) -> tuple:
    """Per-frame geometry of one block of frames (run where the block is read)."""
    m = block.shape[0]
    cnorm, rmean, rrms = np.empty(m), np.empty(m), np.empty(m)
    rq = np.empty((m, len(quantiles)))
    pv = np.full((m, len(masks), k), np.nan)
    nn = []
    for j in range(m):
        x = block[j].astype(np.float64)
        c = x.mean(0)
        r = np.linalg.norm(x - c, axis=1)
        cnorm[j], rmean[j], rrms[j] = np.linalg.norm(c), r.mean(), np.sqrt((r ** 2).mean())
        rq[j] = np.quantile(r, quantiles)
        for ci, mask in enumerate(masks):
            cov = np.cov(x[mask], rowvar=False, bias=True)
            pv[j, ci] = np.sort(np.linalg.eigvalsh(np.atleast_2d(cov)))[::-1][:k]
        if start + j in nn_at:
            s = x[sample]
            sq = (s ** 2).sum(1)
            dist2 = sq[:, None] + sq[None, :] - 2 * s @ s.T
            np.fill_diagonal(dist2, np.inf)
            nn.append((start + j, np.sqrt(np.maximum(dist2.min(1), 0)).mean()))
    return cnorm, rmean, rrms, rq, pv, nn


def cloud_geometry(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: slice | tuple | None = None,
    k: int = 5,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    nn_frames: int = 10,
    nn_tokens: int = 2048,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Per frame: ``centroid_norm``, ``radius_mean``, ``radius_rms``, ``radius_quantile`` (about the
    centroid of the selection), the top-``k`` principal variances of the cloud per class
    (``principal_variance(frame, class, component)``), and on ``nn_frames`` evenly spaced frames the
    mean nearest-neighbour distance (``nn_distance(nn_frame)``, on at most ``nn_tokens`` tokens).
    One streaming pass."""
    sub = select(ds, tokens, frames, min_tokens=2)
    w = matrix(sub)
    n_frames, n, d = w.shape
    classes = sub[fmt.TOKEN_CLASS].values
    present = [(code, name) for code, name in enumerate(fmt.TOKEN_CLASSES) if (classes == code).sum() >= 2]
    k = min(k, d)
    cnorm = np.empty(n_frames)
    rmean = np.empty(n_frames)
    rrms = np.empty(n_frames)
    rq = np.empty((n_frames, len(quantiles)))
    pv = np.full((n_frames, len(present), k), np.nan)
    nn_at = np.unique(np.linspace(0, n_frames - 1, min(nn_frames, n_frames)).astype(int))
    nn = np.empty(nn_at.size)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, nn_tokens), replace=False))
    masks = [classes == code for code, _ in present]
    for start, (c_, m_, s_, q_, p_, nn_part) in zip(
            np.cumsum((0,) + w.chunks[0]),
            reduce_blocks(w, _geometry_block, masks, quantiles, k, nn_at, sample, progress=progress)):
        stop = start + len(c_)
        cnorm[start:stop], rmean[start:stop], rrms[start:stop], rq[start:stop], pv[start:stop] = c_, m_, s_, q_, p_
        for t, value in nn_part:
            nn[np.searchsorted(nn_at, t)] = value
    steps = sub[fmt.STEP].values
    out = xr.Dataset(coords={**frame_coords(sub), "quantile": list(quantiles),
                             "class": [name for _, name in present], "component": np.arange(k)})
    u = "embedding units"
    out["centroid_norm"] = annotate(xr.DataArray(cnorm, dims="frame"), "norm of the centroid", u)
    out["radius_mean"] = annotate(xr.DataArray(rmean, dims="frame"), "mean distance from the centroid", u)
    out["radius_rms"] = annotate(xr.DataArray(rrms, dims="frame"), "RMS distance from the centroid", u)
    out["radius_quantile"] = annotate(xr.DataArray(rq, dims=("frame", "quantile")),
                                      "quantiles of the distance from the centroid", u)
    out["principal_variance"] = annotate(xr.DataArray(pv, dims=("frame", "class", "component")),
                                         "top principal variances of each class's cloud", u + "^2")
    out["nn_distance"] = annotate(xr.DataArray(nn, dims="nn_frame",
                                               coords={"nn_frame": nn_at, "nn_step": ("nn_frame", steps[nn_at])}),
                                  f"mean nearest-neighbour distance ({sample.size} tokens)", u)
    out.attrs.update(analysis="cloud_geometry")
    return out
