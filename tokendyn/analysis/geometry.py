"""The shape of the token cloud, frame by frame."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.stats import bootstrap_mean

from . import _geometry_kernels as K
from . import base
from ._eigen import top_eigenvalues
from ._frames import acquire_buffer, release_buffer
from .base import FrameRange, StoredFrames, TokenSelection, annotate, decoded, finish, frame_coords, merge, selection, stream
from .registry import Analysis, ReportFigure, add

# The principal variances come from float32 covariances: float64 centred values rounded to float32,
# products summed by BLAS in float32 (syrk at 85 GFLOPS here vs 39 in float64: 1.6 vs 3.4 ms per
# Duckling II frame). Their error, measured on bf16 clouds of 200-50,000 tokens, rotated, with
# condition numbers up to 1e6: the i-th variance is off by at most 3.6e-7 of itself while
# lambda_1 / lambda_i < 4, 5e-7 up to 8, 1.5e-6 up to 16, far more beyond. So where a class's k-th
# variance is below lambda_1 / FLOAT32_SPREAD, that class's frame is done again in float64.
FLOAT32_SPREAD = 4.0

#: The centre each of :func:`cloud_geometry`'s variables is measured from (``attrs["centre"]``);
#: ``nn_distance`` (between tokens) has none.
CENTRES = {"centroid_norm": "origin (the norm of the centroid of the selected tokens)",
           "radius_mean": "centroid of the selected tokens",
           "radius_first": "centroid of the selected tokens",
           "radius_last": "centroid of the selected tokens",
           "radius_mean_first_error": "centroid of the selected tokens",
           "radius_mean_last_error": "centroid of the selected tokens",
           "centroid_norm_last_error": "origin (the norm of the centroid of the selected tokens)",
           "radius_rms": "centroid of the selected tokens",
           "radius_quantile": "centroid of the selected tokens",
           "principal_variance": "centroid of each class's selected tokens"}


def _geometry_block(block: np.ndarray, lead: int, start: int, ordered: np.ndarray, offsets: np.ndarray,
                    extra: np.ndarray, class_rows: list, quantiles: np.ndarray, k: int, nn_at: np.ndarray,
                    sample: np.ndarray, ends: np.ndarray, rows: np.ndarray, unorder: np.ndarray) -> dict[str, Any]:
    """Per-frame geometry of one block of stored frames (run where the block is read); at the frames
    ``ends`` (positions in the selection: the first and the last), each selected token's distance
    from the centroid and its position along the centroid's direction, in the order of ``rows``
    (``unorder`` takes the kernel's order, ``ordered`` then ``extra``, back to it)."""
    block = block[lead:]
    m, d = block.shape[0], block.shape[2]
    n = ordered.size + extra.size
    cents = np.empty((m, d))
    # pooled: no page faults; with k = 0 no principal variances, so no centred positions either
    y = acquire_buffer(m, (ordered.size if k else 0, d), np.dtype(np.float32))
    radii = acquire_buffer(m, (n,), np.dtype(np.float64))
    try:
        K.geometry_frames(block, ordered, offsets, extra, y[:m], radii[:m], cents)
        finite = np.isfinite(cents).all(axis=1)  # every selected value of the frame is finite
        pv = _principal_variances(block, y, offsets, class_rows, k, finite) if k else np.empty((m, len(class_rows), 0))
        rmean = radii[:m].mean(axis=1)
        rrms = np.sqrt((radii[:m] ** 2).mean(axis=1))
        rq = np.quantile(radii[:m], quantiles, axis=1).T
        at_ends = []
        for j in range(m):
            if start + j in ends:
                x = decoded(block[j:j + 1])[0, rows].astype(np.float64)
                norm = np.linalg.norm(cents[j])
                with np.errstate(invalid="ignore", over="ignore"):
                    along = x @ (cents[j] / norm) if norm > 0 else np.full(rows.size, np.nan)
                at_ends.append((start + j, radii[j, unorder].copy(), along))
    finally:
        release_buffer(y)
        release_buffer(radii)
    nn = []
    for j in range(m):
        if start + j in nn_at:
            s = decoded(block[j:j + 1])[0, sample].astype(np.float64)
            sq = (s ** 2).sum(1)
            with np.errstate(invalid="ignore"):  # inf - inf in a diverged frame: NaN, as it should be
                dist2 = sq[:, None] + sq[None, :] - 2 * s @ s.T
            np.fill_diagonal(dist2, np.inf)
            nn.append((start + j, np.sqrt(np.maximum(dist2.min(1), 0)).mean()))
    cnorm = np.linalg.norm(cents, axis=1)
    return {"centroid_norm": cnorm, "radius_mean": rmean, "radius_rms": rrms, "radius_quantile": rq,
            "principal_variance": pv, "nn_distance": nn, "ends": at_ends}


def _principal_variances(block: np.ndarray, y: np.ndarray, offsets: np.ndarray, class_rows: list,
                         k: int, finite: np.ndarray) -> np.ndarray:
    """Top-``k`` principal variances per frame and class, (frames, classes, k): from the float32
    centred values ``y`` where that is accurate enough (see :data:`FLOAT32_SPREAD`), else in
    float64 from the stored frame: also where float32 overflowed on a frame whose values are all
    finite (``finite``; a frame that is not stays NaN)."""
    m, d = block.shape[0], block.shape[2]
    nc = len(class_rows)
    if nc == 0:
        return np.empty((m, 0, k))
    pv = np.empty((m, nc, k))
    product = np.empty((d, d), np.float32)
    for j in range(m):
        for c in range(nc):
            yc = y[j, offsets[c]:offsets[c + 1]]
            np.matmul(yc.T, yc, out=product)  # BLAS syrk, without the GIL
            top_eigenvalues(product, pv[j, c])  # the top k only, in float64, without the GIL
            pv[j, c] /= yc.shape[0]
    overflowed = ~np.isfinite(pv).all(axis=-1) & finite[:, None]  # in float32, not in the stored values
    for j, c in zip(*np.nonzero((pv[..., 0] > FLOAT32_SPREAD * pv[..., -1]) | overflowed)):
        rows = class_rows[c]
        xc = K.centered(block[j], rows, np.empty((rows.size, d)))
        top_eigenvalues(xc.T @ xc / rows.size, pv[j, c])
    return pv


@base.accepts(k=base.whole(0, "a whole number >= 0 (0: no principal variances)"),
              quantiles=base.sequence(base.number(0, 1), "a sequence of numbers from 0 to 1, e.g. (0.1,0.5,0.9)"),
              nn_frames=base.whole(0, "a whole number of frames >= 0"),
              nn_tokens=base.whole(2, "a whole number of tokens >= 2"), seed=base.whole(0))
def cloud_geometry(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: FrameRange = None,
    k: int = 5,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    nn_frames: int = 10,
    nn_tokens: int = 2048,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """The shape of the token cloud, frame by frame: its radii, principal variances and spacing.

    Per frame: ``centroid_norm`` (the centroid's distance from the origin), ``radius_mean``,
    ``radius_rms``, ``radius_quantile`` (about the centroid of the selected tokens), the top-``k``
    principal variances of the cloud per class (``principal_variance(frame, class, component)``,
    each class about its own centroid), and on ``nn_frames`` evenly spaced frames the
    mean nearest-neighbour distance (``nn_distance(nn_frame)``, on at most ``nn_tokens`` tokens).
    One streaming pass. The principal variances come from float32 covariances where those hold
    1e-6 relative (a class whose ``k``-th variance is at least a quarter of its first), else from
    float64 ones (see :data:`FLOAT32_SPREAD`); they are most of the cost, and ``k=0`` leaves them
    out (``principal_variance`` then has no components). Frames where a selected value is NaN or
    infinite (a diverged run) are marked in ``nonfinite_frame``; what they reach there is NaN.
    Each variable measured from a centre names it in ``attrs["centre"]`` (:data:`CENTRES`)."""
    name = "cloud_geometry"
    sub, rows, positions = selection(ds, tokens, frames, min_tokens=2)
    n_frames, n, d = len(positions), rows.size, sub.sizes[fmt.DIM_DIM]
    classes = sub[fmt.TOKEN_CLASS].values
    present = [(code, name) for code, name in enumerate(fmt.TOKEN_CLASSES) if (classes == code).sum() >= 2]
    k = min(int(k), d)
    nn_at = np.unique(np.linspace(0, n_frames - 1, min(nn_frames, n_frames)).astype(int))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, nn_tokens), replace=False))
    class_rows = [rows[classes == code] for code, _ in present]
    ordered = np.concatenate(class_rows) if class_rows else np.empty(0, np.int64)
    offsets = np.cumsum([0] + [c.size for c in class_rows]).astype(np.int64)
    extra = rows[~np.isin(classes, [code for code, _ in present])]
    unorder = np.argsort(np.concatenate([ordered, extra]), kind="stable")  # rows are in increasing order
    ends = np.unique([0, n_frames - 1])
    parts = stream(StoredFrames(ds), positions, _geometry_block, ordered, offsets, extra, class_rows,
                   np.asarray(quantiles, float), k, nn_at, rows[sample], ends, rows, unorder, progress=progress)
    got = merge(parts, {"centroid_norm": "concat", "radius_mean": "concat", "radius_rms": "concat",
                        "radius_quantile": "concat", "principal_variance": "concat",
                        "nn_distance": lambda found: _at_frames(found, nn_at),
                        "ends": lambda found: {t: (r, a) for part in found for t, r, a in part}})
    cnorm, rmean, rrms, rq = got["centroid_norm"], got["radius_mean"], got["radius_rms"], got["radius_quantile"]
    pv, nn = got["principal_variance"], got["nn_distance"]
    steps = sub[fmt.STEP].values
    out = xr.Dataset(coords={**frame_coords(sub), "quantile": list(quantiles),
                             "class": [name for _, name in present], "component": np.arange(k),
                             fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values, fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)})
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
    (r_first, _), (r_last, along_last) = got["ends"][0], got["ends"][n_frames - 1]
    out["radius_first"] = annotate(xr.DataArray(r_first, dims="token"),
                                   "each token's distance from the centroid at the first frame", u)
    out["radius_last"] = annotate(xr.DataArray(r_last, dims="token"),
                                  "each token's distance from the centroid at the last frame", u)
    out["radius_mean_first_error"] = annotate(xr.DataArray(bootstrap_mean(r_first).error),
                                              "standard error of the first frame's mean radius (bootstrap over "
                                              "the tokens)", u)
    out["radius_mean_last_error"] = annotate(xr.DataArray(bootstrap_mean(r_last).error),
                                             "standard error of the last frame's mean radius (bootstrap over "
                                             "the tokens)", u)
    out["centroid_norm_last_error"] = annotate(
        xr.DataArray(bootstrap_mean(along_last).error),
        "standard error of the last frame's centroid norm (bootstrap over the tokens of their position along the "
        "centroid's direction: the delta method)", u)
    for var, centre in CENTRES.items():
        out[var].attrs["centre"] = centre
    # the centroid sums every selected value: it is finite exactly where they all are
    return finish(base.mark_nonfinite(out, ~np.isfinite(cnorm)), name, centre=CENTRES["radius_mean"])


def _at_frames(found: list[list[tuple[int, float]]], nn_at: np.ndarray) -> np.ndarray:
    """The blocks' ``(frame, value)`` pairs as one array over the frames ``nn_at``."""
    nn = np.empty(nn_at.size)
    for part in found:
        for t, value in part:
            nn[np.searchsorted(nn_at, t)] = value
    return nn


# --- in the report ------------------------------------------------------------------------------

def _headline(geo: xr.Dataset) -> dict[str, Any]:
    error = lambda name: geo[name].item() if name in geo else np.nan  # noqa: E731 (older results lack them)
    return {"radius_mean_first": geo.radius_mean.values[0], "radius_mean_first_error": error("radius_mean_first_error"),
            "radius_mean_last": geo.radius_mean.values[-1], "radius_mean_last_error": error("radius_mean_last_error"),
            "centroid_norm_last": geo.centroid_norm.values[-1],
            "centroid_norm_last_error": error("centroid_norm_last_error")}


def _headline_fields(geo: xr.Dataset) -> dict[str, tuple]:
    """What each headline number is measured against, its units, and whether the report's main
    table shows it."""
    return {"radius_mean_first": ("mean distance of the tokens from their centroid, first frame", "embedding units",
                                  True),
            "radius_mean_last": ("mean distance of the tokens from their centroid, last frame", "embedding units",
                                 True),
            "centroid_norm_last": ("distance of the centroid from the origin, last frame", "embedding units", True)}




def _curves(geo: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"radius_mean": geo.radius_mean, "centroid_norm": geo.centroid_norm}


def _token_values(geo: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"radius": geo.radius_last}


def _figures(geo: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    """Radius quantiles about the centroid and the centroid's norm; each class's top and last
    principal variance, per step."""
    from tokendyn.surfaces.figures import ordered_classes, subplots

    fig, (a, b) = subplots(1, 2, height=3.4)
    steps = geo["step"].values
    greys = ("0.65", "0.45", "0.25")
    for i, q in enumerate(geo["quantile"].values):
        a.plot(steps, geo.radius_quantile.sel(quantile=q).values, lw=1, color=greys[i % 3], label=f"radius quantile {q:g}")
    a.plot(steps, geo.radius_mean.values, lw=1.4, color="black", label="radius mean")
    a.plot(steps, geo.centroid_norm.values, lw=1.2, ls="--", color="tab:purple", label="|centroid|")
    a.set(xlabel="step", ylabel="distance (embedding units)", title="radius about the centroid, and its norm")
    a.legend(loc="best")
    for cls in ordered_classes(geo["class"].values):
        pv = geo.principal_variance.sel({"class": cls})
        if pv.isnull().all():
            continue
        colour = colours.get(cls)
        b.plot(steps, pv.isel(component=0).values, lw=1.2, color=colour, label=f"{cls}, PC 1")
        b.plot(steps, pv.isel(component=-1).values, lw=1, ls=":", color=colour, label=f"{cls}, PC {pv['component'].size}")
    b.set(xlabel="step", ylabel="principal variance (emb. units²)", yscale="log", title="principal variances per class")
    b.legend(loc="best", ncols=2)
    return [ReportFigure("geometry", "Cloud geometry: radius and principal variances", fig)]


add(Analysis("geometry", cloud_geometry, order=30, applies=functools.partial(base.enough, min_tokens=2),
             headline=_headline, headline_fields=_headline_fields, curves=_curves, token_values=_token_values, figures=_figures))
