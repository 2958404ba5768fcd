"""Dead tokens as a random walk on a hypersphere: is their motion isotropic, or pushed outward?"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy import stats

from tokendyn import format as fmt

from . import _kernels as K
from ._centroids import SharedCentroids
from ._frames import StoredFrames, stream
from .base import TokenSelection, annotate, frame_coords, selection

_BINS = 20_000  # resolution of the streamed radial-fraction histogram used for the KS test


def _walk_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, centre: SharedCentroids,
                sample_rows: np.ndarray, lags: np.ndarray, bins: int) -> tuple:
    origin = centre.rows.size == 0
    cents = np.zeros((0, block.shape[2])) if origin else centre.of(block, lead, start)
    return K.sphere_walk_block(block, lead, start, rows, cents, origin, sample_rows, lags, bins)


def hypersphere_walk(
    ds: xr.Dataset,
    tokens: TokenSelection = "dead",
    *,
    frames: slice | tuple | None = None,
    center: str = "origin",
    alpha: float = 0.01,
    max_lag: int = 32,
    angle_tokens: int = 2048,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Test whether tokens move like an isotropic random walk on a hypersphere.

    For each selected token and step, with ``r_hat = x(t)/|x(t)|`` (about the origin, or the centroid
    of all tokens with ``center="centroid"``) and D = x(t+1) - x(t): radial component a = D.r_hat and
    radial fraction ``rho = a^2/|D|^2``. Under an isotropic step in d dimensions rho ~ Beta(1/2, (d-1)/2)
    (mean 1/d) and a is symmetric about 0.

    Returns per frame ``rho_mean``, ``outward_fraction``, ``radial_mean``, ``radius_drift`` (NaN at the first frame);
    overall ``rho_mean_all`` vs ``rho_expected`` = 1/d, ``ks_statistic``/``ks_pvalue`` (rho against
    the Beta), ``sign_pvalue`` (binomial test of outward vs inward steps), ``t_pvalue`` (one-sample t
    test of a against 0), ``step_correlation`` mean and sd of cos(D_t, D_t+1) against 0 and 1/sqrt(d),
    ``cos_decay(lag)`` = <cos theta(tau)> against ``cos_decay_predicted`` = exp(-(d-1) D tau / r^2)
    with the fitted ``diffusion`` D (the cosine mean over a fixed random sample of ``angle_tokens``
    tokens, drawn with ``seed``; every token when there are fewer); and a verdict: ``isotropic`` (no test
    rejects at ``alpha``) and
    ``outward_excess`` = mean a / RMS ``|D|`` (effect size; 0 under isotropy).
    """
    sub, rows, positions = selection(ds, tokens, frames, min_tokens=1, min_frames=3)
    n, d = rows.size, sub.sizes[fmt.DIM_DIM]
    if center == "origin":
        center_rows = np.empty(0, np.int64)
    elif center == "centroid":
        center_rows = np.arange(ds.sizes[fmt.DIM_TOKEN], dtype=np.int64)
    else:
        raise ValueError("center must be 'origin' or 'centroid'")
    n_frames = len(positions)
    lags = np.unique(np.clip(np.round(np.geomspace(1, max(1, min(max_lag, n_frames - 1)), 12)), 1, None)).astype(np.int64)
    # the angular decay is a mean over tokens: a fixed random sample of angle_tokens estimates it
    sampled = np.sort(np.random.default_rng(seed).choice(n, min(n, angle_tokens), replace=False))

    # one streaming pass; each block carries the max(2, max lag) frames before it
    parts = stream(StoredFrames(ds), positions, _walk_block, rows, SharedCentroids(center_rows), rows[sampled], lags,
                   _BINS, before=int(max(2, lags.max())), progress=progress)
    per = np.concatenate([part[0] for part in parts])
    hist = sum(part[1] for part in parts)
    acc = sum(part[2] for part in parts)
    ang_sum = sum(part[3] for part in parts)
    ang_n = sum(part[4] for part in parts)
    frames_seen = n_frames

    out = xr.Dataset(coords=frame_coords(sub))
    out["rho_mean"] = annotate(xr.DataArray(per[:, 0], dims="frame"),
                               "mean radial fraction of the step arriving at this frame", "1")
    out["outward_fraction"] = annotate(xr.DataArray(per[:, 1], dims="frame"), "fraction of outward steps", "1")
    out["radial_mean"] = annotate(xr.DataArray(per[:, 2], dims="frame"),
                                  "mean radial component of the step", "embedding units")
    out["radius_drift"] = annotate(xr.DataArray(per[:, 3], dims="frame"), "mean change of radius", "embedding units")
    s_a, s_a2, s_len2 = acc[0], acc[1], acc[2]
    n_steps, n_out, n_in = int(acc[3]), int(acc[4]), int(acc[5])
    cos_sum, cos_sq, n_cos = acc[6], acc[7], int(acc[8])
    radius_sum, radius_n = acc[9], frames_seen * n

    n_rho = int(hist.sum())
    beta = stats.beta(0.5, (d - 1) / 2)
    edges = np.arange(1, _BINS + 1) / _BINS
    ecdf = np.cumsum(hist) / max(n_rho, 1)
    ks = float(np.max(np.abs(ecdf - beta.cdf(edges)))) if n_rho else np.nan
    # the histogram resolves the CDF to 1/_BINS; below that the statistic is not resolved
    ks_p = float(stats.kstwo.sf(max(ks - 1.0 / _BINS, 0), n_rho)) if n_rho else np.nan
    mean_a = s_a / max(n_steps, 1)
    var_a = (s_a2 - n_steps * mean_a ** 2) / max(n_steps - 1, 1)
    t_stat = mean_a / np.sqrt(var_a / n_steps) if n_steps > 1 and var_a > 0 else np.nan
    t_p = float(2 * stats.t.sf(abs(t_stat), n_steps - 1)) if np.isfinite(t_stat) else np.nan
    sign_p = float(stats.binomtest(n_out, n_out + n_in, 0.5).pvalue) if n_out + n_in else np.nan
    rho_mean_all = float((hist * (np.arange(_BINS) + 0.5) / _BINS).sum() / max(n_rho, 1))
    cos_mean = cos_sum / max(n_cos, 1)
    cos_sd = float(np.sqrt(max(cos_sq / max(n_cos, 1) - cos_mean ** 2, 0)))
    decay = np.where(ang_n > 0, ang_sum / np.maximum(ang_n, 1), np.nan)
    r_mean = radius_sum / max(radius_n, 1)
    # fit <cos theta(tau)> = exp(-(d-1) D tau / r^2) by least squares on log through the origin
    good = (decay > 0) & np.isfinite(decay)
    slope = float(np.sum(lags[good] * -np.log(decay[good])) / np.sum(lags[good] ** 2)) if good.any() else np.nan
    diffusion = slope * r_mean ** 2 / (d - 1) if np.isfinite(slope) else np.nan
    predicted = np.exp(-(d - 1) * diffusion * lags / r_mean ** 2) if np.isfinite(diffusion) else np.full(lags.size, np.nan)
    rms_len = np.sqrt(s_len2 / max(n_steps, 1))
    pvalues = [p for p in (ks_p, sign_p, t_p) if np.isfinite(p)]
    isotropic = bool(pvalues) and min(pvalues) >= alpha

    scalar = lambda v, name, units: annotate(xr.DataArray(v), name, units)  # noqa: E731
    out["rho_mean_all"] = scalar(rho_mean_all, "mean radial fraction over all steps", "1")
    out["rho_expected"] = scalar(1.0 / d, "radial fraction expected of an isotropic step, 1/d", "1")
    out["ks_statistic"] = scalar(ks, "KS distance of rho from Beta(1/2, (d-1)/2)", "1")
    out["ks_pvalue"] = scalar(ks_p, "KS test p-value of rho against Beta(1/2, (d-1)/2)", "1")
    out["outward_fraction_all"] = scalar(n_out / max(n_out + n_in, 1), "fraction of outward steps", "1")
    out["sign_pvalue"] = scalar(sign_p, "binomial test p-value of outward vs inward steps", "1")
    out["radial_mean_all"] = scalar(mean_a, "mean radial component a", "embedding units")
    out["t_pvalue"] = scalar(t_p, "t test p-value of mean a against 0", "1")
    out["step_correlation_mean"] = scalar(cos_mean, "mean cos(D_t, D_t+1), expected 0", "1")
    out["step_correlation_sd"] = scalar(cos_sd, "sd of cos(D_t, D_t+1)", "1")
    out["step_correlation_sd_expected"] = scalar(1 / np.sqrt(d), "sd expected of independent steps, 1/sqrt(d)", "1")
    out["mean_radius"] = scalar(r_mean, "mean radius", "embedding units")
    out["diffusion"] = scalar(diffusion, "fitted angular diffusion coefficient D", "embedding units^2 per frame")
    out["cos_decay"] = annotate(xr.DataArray(decay, dims="lag", coords={"lag": lags}),
                                "mean cosine between r_hat(t) and r_hat(t+lag)", "1")
    out["cos_decay_predicted"] = annotate(xr.DataArray(predicted, dims="lag", coords={"lag": lags}),
                                          "Brownian motion on a sphere: exp(-(d-1) D lag / r^2)", "1")
    out["rho_histogram"] = annotate(
        xr.DataArray(hist.reshape(200, -1).sum(axis=1), dims="rho_bin",
                     coords={"rho_bin": (np.arange(200) + 0.5) / 200}), "histogram of radial fractions", "count")
    out["isotropic"] = scalar(isotropic, f"consistent with an isotropic walk (no test rejects at alpha={alpha})", "1")
    out["outward_excess"] = scalar(mean_a / rms_len if rms_len > 0 else np.nan,
                                   "outward excess: mean radial component / RMS step length", "1")
    out.attrs.update(analysis="hypersphere_walk", center=center, dim=d, steps_tested=n_steps,
                     tokens=str(tokens))
    return out
