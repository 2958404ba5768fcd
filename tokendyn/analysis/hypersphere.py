"""Dead tokens as a random walk on a hypersphere: is their motion isotropic, or pushed outward?"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError

from . import _hypersphere_kernels as K
from . import base
from ._centroids import SharedCentroids
from .base import FrameRange, StoredFrames, TokenSelection, annotate, finish, frame_coords, merge, selection, stream
from .registry import Analysis, ReportFigure, add

_BINS = 20_000  # resolution of the streamed radial-fraction histogram used for the KS test
# the sums the kernel accumulates over a block's steps, in the order of its ``acc`` array
_SUMS = ("radial_sum", "radial_sq_sum", "step_sq_sum", "steps", "outward_steps", "inward_steps",
         "cos_sum", "cos_sq_sum", "cosines", "radius_sum", "radii")
_MERGE = {"per_frame": "concat", "rho_histogram": "sum", **dict.fromkeys(_SUMS, "sum"),
          "angle_sum": "sum", "angle_pairs": "sum", "nonfinite": "concat"}


def _walk_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, centre: SharedCentroids,
                sample_rows: np.ndarray, lags: np.ndarray, bins: int) -> dict[str, Any]:
    origin = centre.rows.size == 0
    cents = np.zeros((0, block.shape[2])) if origin else centre.of(block, lead, start)
    per, hist, acc, ang_sum, ang_n, nonfinite = K.sphere_walk_block(block, lead, start, rows, cents, origin,
                                                                    sample_rows, lags, bins)
    return {"per_frame": per, "rho_histogram": hist, **dict(zip(_SUMS, acc)), "angle_sum": ang_sum,
            "angle_pairs": ang_n, "nonfinite": nonfinite}


@base.accepts(center=base.choice("origin", "centroid"),
              alpha=base.number(0, 1, open_low=True, open_high=True, expected="a number between 0 and 1"),
              max_lag=base.whole(1, "a whole number of frames >= 1"), angle_tokens=base.whole(1),
              seed=base.whole(0))
def hypersphere_walk(
    ds: xr.Dataset,
    tokens: TokenSelection = "dead",
    *,
    frames: FrameRange = None,
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

    Frames where a position is NaN or infinite (a diverged run) are marked in
    ``nonfinite_frame``; the steps from and to such a position take no part in any statistic.
    """
    name = "hypersphere_walk"
    sub, rows, positions = selection(ds, tokens, frames, min_tokens=1, min_frames=3)
    n, d = rows.size, sub.sizes[fmt.DIM_DIM]
    if d < 2:
        raise AnalysisError(f"{name} needs W of 2 or more dimensions (a sphere in {d} has no directions to walk)")
    if center == "origin":
        center_rows = np.empty(0, np.int64)
    else:
        center_rows = np.arange(ds.sizes[fmt.DIM_TOKEN], dtype=np.int64)
    n_frames = len(positions)
    lags = np.unique(np.clip(np.round(np.geomspace(1, max(1, min(max_lag, n_frames - 1)), 12)), 1, None)).astype(np.int64)
    # the angular decay is a mean over tokens: a fixed random sample of angle_tokens estimates it
    sampled = np.sort(np.random.default_rng(seed).choice(n, min(n, angle_tokens), replace=False))

    # one streaming pass; each block carries the max(2, max lag) frames before it
    parts = stream(StoredFrames(ds), positions, _walk_block, rows, SharedCentroids(center_rows), rows[sampled], lags,
                   _BINS, before=int(max(2, lags.max())), progress=progress)
    got = merge(parts, _MERGE)
    per, hist = got["per_frame"], got["rho_histogram"]
    ang_sum, ang_n = got["angle_sum"], got["angle_pairs"]

    out = xr.Dataset(coords=frame_coords(sub))
    out["rho_mean"] = annotate(xr.DataArray(per[:, 0], dims="frame"),
                               "mean radial fraction of the step arriving at this frame", "1")
    out["outward_fraction"] = annotate(xr.DataArray(per[:, 1], dims="frame"), "fraction of outward steps", "1")
    out["radial_mean"] = annotate(xr.DataArray(per[:, 2], dims="frame"),
                                  "mean radial component of the step", "embedding units")
    out["radius_drift"] = annotate(xr.DataArray(per[:, 3], dims="frame"), "mean change of radius", "embedding units")
    s_a, s_a2, s_len2 = got["radial_sum"], got["radial_sq_sum"], got["step_sq_sum"]
    n_steps, n_out, n_in = int(got["steps"]), int(got["outward_steps"]), int(got["inward_steps"])
    cos_sum, cos_sq, n_cos = got["cos_sum"], got["cos_sq_sum"], int(got["cosines"])
    radius_sum, radius_n = got["radius_sum"], int(got["radii"])

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
    r_mean = radius_sum / radius_n if radius_n else np.nan
    # fit <cos theta(tau)> = exp(-(d-1) D tau / r^2) by least squares on log through the origin
    good = (decay > 0) & np.isfinite(decay)
    slope = float(np.sum(lags[good] * -np.log(decay[good])) / np.sum(lags[good] ** 2)) if good.any() else np.nan
    diffusion = slope * r_mean ** 2 / (d - 1) if np.isfinite(slope) and np.isfinite(r_mean) else np.nan
    predicted = np.exp(-(d - 1) * diffusion * lags / r_mean ** 2) if np.isfinite(diffusion) and r_mean > 0 \
        else np.full(lags.size, np.nan)
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
    out = base.mark_nonfinite(out, got["nonfinite"] > 0)
    return finish(out, name, center=center, dim=d, steps_tested=n_steps, tokens=str(tokens))


# --- in the report and the train summary --------------------------------------------------------

def _applies(ds: xr.Dataset, tokens: TokenSelection) -> bool:
    """A walk needs two tokens, three frames (two steps) and two dimensions."""
    return base.enough(ds, tokens, min_tokens=2, min_frames=3) and ds.sizes[fmt.DIM_DIM] >= 2


def _report_tokens(ds: xr.Dataset, tokens: TokenSelection) -> TokenSelection:
    """The test is about dead tokens; without enough of them, the selection."""
    if tokens is not None:
        return tokens
    return "dead" if (ds[fmt.TOKEN_CLASS].values == fmt.CLASS_DEAD).sum() >= 2 else "all"


def _summary_tokens(ds: xr.Dataset) -> Sequence[TokenSelection]:
    return ("dead", "phantom")


_HEADLINE = ("isotropic", "outward_excess", "rho_mean_all", "rho_expected", "ks_pvalue", "sign_pvalue", "t_pvalue",
             "outward_fraction_all", "step_correlation_mean", "diffusion")


def _headline(h: xr.Dataset) -> dict[str, Any]:
    return {**{k: h[k].item() for k in _HEADLINE}, "tokens": h.attrs.get("tokens")}


def _summary_lines(h: xr.Dataset) -> list[tuple[str, str]]:
    verdict = "isotropic" if bool(h.isotropic) else "NOT isotropic"
    return [(f"hypersphere walk ({h.attrs['tokens']:7s})",
             f"{verdict}: outward excess {float(h.outward_excess):+.3f}, "
             f"rho {float(h.rho_mean_all):.4f} vs 1/d {float(h.rho_expected):.4f}, "
             f"sign p {float(h.sign_pvalue):.2g}, KS p {float(h.ks_pvalue):.2g}")]


def _figures(h: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    import matplotlib.pyplot as plt

    d = int(h.attrs["dim"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    counts = h.rho_histogram.values.astype(float)
    centres = h.rho_bin.values
    width = centres[1] - centres[0]
    total = counts.sum()
    if total > 0:
        axes[0].bar(centres, counts / (total * width), width=width, alpha=0.6, label="observed")
    grid = np.linspace(1e-3, 1, 400)
    axes[0].plot(grid, stats.beta(0.5, (d - 1) / 2).pdf(grid), "k-", lw=1, label=f"Beta(1/2, {(d - 1) / 2:g})")
    axes[0].set(xlabel="radial fraction rho", ylabel="density", yscale="log", ylim=(1e-3, None),
                title=("isotropic" if bool(h.isotropic) else "NOT isotropic")
                + f": KS p {float(h.ks_pvalue):.2g}, sign p {float(h.sign_pvalue):.2g}")
    axes[0].legend(fontsize=8)
    axes[1].plot(h.lag.values, h.cos_decay.values, "o", ms=3, label="observed")
    axes[1].plot(h.lag.values, h.cos_decay_predicted.values, "-", label="Brownian on a sphere (fitted D)")
    axes[1].set(xlabel="lag (frames)", ylabel="mean cos angle", title="angular decay")
    axes[1].legend(fontsize=8)
    return [ReportFigure("hypersphere", "Hypersphere random-walk test", fig)]


add(Analysis("hypersphere", hypersphere_walk, order=40, applies=_applies, report_tokens=_report_tokens,
             summary_tokens=_summary_tokens, headline=_headline, summary_lines=_summary_lines, figures=_figures))
