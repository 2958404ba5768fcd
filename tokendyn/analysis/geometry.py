"""The shape of the token cloud, frame by frame."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import xarray as xr

from tokendyn import format as fmt

from . import _kernels as K
from ._frames import StoredFrames, acquire_buffer, release_buffer, decoded, stream
from .base import TokenSelection, annotate, frame_coords, selection


def _geometry_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, class_rows: list,
                    quantiles: np.ndarray, k: int, nn_at: np.ndarray, sample: np.ndarray) -> tuple:
    """Per-frame geometry of one block of stored frames (run where the block is read)."""
    block = block[lead:]
    m = block.shape[0]
    cents = K.block_centroids(block, rows)
    cnorm, rmean, rrms = np.empty(m), np.empty(m), np.empty(m)
    rq = np.empty((m, len(quantiles)))
    pv = np.full((m, len(class_rows), k), np.nan)
    nn = []
    scratch = acquire_buffer(max(c.size for c in class_rows) if class_rows else 1, block.shape[2:], np.dtype(np.float64))
    try:
        _frames_geometry(block, rows, class_rows, quantiles, k, cents, cnorm, rmean, rrms, rq, pv, scratch)
    finally:
        release_buffer(scratch)
    for j in range(m):
        if start + j in nn_at:
            s = decoded(block[j:j + 1])[0, sample].astype(np.float64)
            sq = (s ** 2).sum(1)
            dist2 = sq[:, None] + sq[None, :] - 2 * s @ s.T
            np.fill_diagonal(dist2, np.inf)
            nn.append((start + j, np.sqrt(np.maximum(dist2.min(1), 0)).mean()))
    return cnorm, rmean, rrms, rq, pv, nn


def _frames_geometry(block, rows, class_rows, quantiles, k, cents, cnorm, rmean, rrms, rq, pv, scratch) -> None:
    """Fill the per-frame outputs of a block in place (radii, quantiles, principal variances)."""
    m, d = block.shape[0], block.shape[2]
    radii = np.empty((m, rows.size))
    covs = np.empty((m, len(class_rows), d, d))
    for j in range(m):
        radii[j] = K.distances(block[j], rows, cents[j])
        for ci, crows in enumerate(class_rows):
            xc = K.centered(block[j], crows, scratch[: crows.size])  # a pooled buffer: no page faults
            np.matmul(xc.T, xc, out=covs[j, ci])  # BLAS syrk, without the GIL
            covs[j, ci] /= crows.size
    cnorm[:] = np.linalg.norm(cents, axis=1)
    rmean[:] = radii.mean(axis=1)
    rrms[:] = np.sqrt((radii ** 2).mean(axis=1))
    rq[:] = np.quantile(radii, quantiles, axis=1).T
    if class_rows:
        # one call for the whole block: LAPACK runs over the stack without the GIL (one call per
        # matrix held it, so the second kernel thread waited: 2 threads were slower than 1)
        pv[:] = np.linalg.eigvalsh(covs)[..., ::-1][..., :k]


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
    sub, rows, positions = selection(ds, tokens, frames, min_tokens=2)
    n_frames, n, d = len(positions), rows.size, sub.sizes[fmt.DIM_DIM]
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
    class_rows = [rows[classes == code] for code, _ in present]
    parts = stream(StoredFrames(ds), positions, _geometry_block, rows, class_rows, np.asarray(quantiles, float), k,
                   nn_at, rows[sample], progress=progress)
    start = 0
    for c_, m_, s_, q_, p_, nn_part in parts:
        stop = start + len(c_)
        cnorm[start:stop], rmean[start:stop], rrms[start:stop], rq[start:stop], pv[start:stop] = c_, m_, s_, q_, p_
        for t, value in nn_part:
            nn[np.searchsorted(nn_at, t)] = value
        start = stop
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
