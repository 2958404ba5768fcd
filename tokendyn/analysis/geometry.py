"""The shape of the token cloud, frame by frame."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from .base import TokenSelection, annotate, frame_coords, iter_blocks, matrix, select


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
    for start, block in iter_blocks(w, progress):
        for j in range(block.shape[0]):
            t = start + j
            x = block[j].astype(np.float64)
            c = x.mean(0)
            y = x - c
            r = np.linalg.norm(y, axis=1)
            cnorm[t] = np.linalg.norm(c)
            rmean[t] = r.mean()
            rrms[t] = np.sqrt((r ** 2).mean())
            rq[t] = np.quantile(r, quantiles)
            for ci, (code, _) in enumerate(present):
                part = x[classes == code]
                cov = np.cov(part, rowvar=False, bias=True)
                pv[t, ci] = np.sort(np.linalg.eigvalsh(np.atleast_2d(cov)))[::-1][:k]
            if t in nn_at:
                s = x[sample]
                sq = (s ** 2).sum(1)
                dist2 = sq[:, None] + sq[None, :] - 2 * s @ s.T
                np.fill_diagonal(dist2, np.inf)
                nn[np.searchsorted(nn_at, t)] = np.sqrt(np.maximum(dist2.min(1), 0)).mean()
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
