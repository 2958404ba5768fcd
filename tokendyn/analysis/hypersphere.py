"""Dead tokens as a random walk on a hypersphere: is their motion isotropic, or pushed outward?"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError
from tokendyn.stats import block_average

from . import _hypersphere_kernels as K
from . import base
from ._centroids import SharedCentroids
from ._hypersphere_report import _curves, _figures, _headline, _headline_fields, _summary_lines, _token_values
from ._hypersphere_stats import (  # noqa: F401 (public here)
    beta_edges,
    cauchy_combination,
    ks_bins,
    ks_from_histogram,
    sign_test,
    step_correlation_test,
    walk_statistics,
)
from .base import FrameRange, StoredFrames, TokenSelection, annotate, finish, frame_coords, merge, selection, stream
from .registry import Analysis, add

CENTERS = ("centroid", "origin")  # both are tested in every pass; the ``center`` option picks the verdict's
TESTS = ("ks", "sign", "t", "step_correlation")  # the tests the verdict combines, in ``pvalue_by_center``
COMBINATION = "Cauchy combination (ACAT) of the KS, sign (mid-p), t and step-correlation p-values"
_COARSE = 200  # equal bins of rho in the histogram the report shows
# the sums the kernel accumulates over a block's steps, in the order of its ``acc`` array
_SUMS = ("radial_sum", "radial_sq_sum", "step_sq_sum", "steps", "outward_steps", "inward_steps",
         "cos_sum", "cos_sq_sum", "cosines", "radius_sum", "radii", "rho_sum", "rhos")
_FIELDS = ("per_frame", "rho_histogram", "rho_coarse", *_SUMS, "angle_sum", "angle_pairs", "nonfinite", "per_token")


def _sum64(values: Sequence[np.ndarray]) -> np.ndarray:
    """The blocks' int32 histograms added into int64 (a block's counts fit in 32 bits, a movie's may not)."""
    total = np.zeros(values[0].shape, np.int64)
    for v in values:
        total += v
    return total


_MERGE = {**{f"{c}:{f}": ("concat" if f in ("per_frame", "nonfinite") else _sum64 if f == "rho_histogram" else "sum")
             for c in CENTERS for f in _FIELDS},
          "centroid_per_frame": "concat"}


def _walk_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, centre: SharedCentroids, main: str,
                sample_rows: np.ndarray, lags: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    cents = centre.of(block, lead, start)  # the centroid of all tokens in every frame of the block
    out: dict[str, Any] = {}
    for name in CENTERS:
        origin = name == "origin"
        # the angular decay is the verdict's centre's only: the other pass samples no token
        sample = sample_rows if name == main else sample_rows[:0]
        fields = K.sphere_walk_block(block, lead, start, rows, np.zeros((0, block.shape[2])) if origin else cents, origin, sample,
                                     lags, edges, _COARSE)
        per, hist, coarse, acc, ang_sum, ang_n, nonfinite, per_token = fields
        values = {"per_frame": per, "rho_histogram": hist, "rho_coarse": coarse, **dict(zip(_SUMS, acc)),
                  "angle_sum": ang_sum, "angle_pairs": ang_n, "nonfinite": nonfinite, "per_token": per_token}
        out.update({f"{name}:{k}": v for k, v in values.items()})
    frames = block.shape[0] - lead
    own = cents[lead:]
    steps = np.full(frames, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged frame's centroid: NaN, not a warning
        if lead:
            steps[:] = np.linalg.norm(own - cents[lead - 1:-1], axis=1)
        elif frames > 1:
            steps[1:] = np.linalg.norm(np.diff(own, axis=0), axis=1)
        distance = np.linalg.norm(own, axis=1)
    steps[~np.isfinite(steps)] = np.nan
    distance[~np.isfinite(distance)] = np.nan
    out["centroid_per_frame"] = np.column_stack([steps, distance])
    return out


@base.accepts(center=base.choice("origin", "centroid"),
              alpha=base.number(0, 1, open_low=True, open_high=True, expected="a number between 0 and 1"),
              max_lag=base.whole(1, "a whole number of frames >= 1"), angle_tokens=base.whole(1),
              seed=base.whole(0))
def hypersphere_walk(
    ds: xr.Dataset,
    tokens: TokenSelection = "dead",
    *,
    frames: FrameRange = None,
    center: str = "centroid",
    alpha: float = 0.01,
    max_lag: int = 32,
    angle_tokens: int = 2048,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Test whether tokens move like an isotropic random walk on a hypersphere, about the cloud's centroid and the origin.

    For each selected token and step, with ``r_hat = x(t)/|x(t)|`` and D = x(t+1) - x(t): radial
    component a = D.r_hat and radial fraction ``rho = a^2/|D|^2``. Under an isotropic step in d
    dimensions rho ~ Beta(1/2, (d-1)/2) (mean 1/d) and a is symmetric about 0. Positions are taken
    about both centres in the same pass, the centroid of all tokens (the shell the tokens sit on)
    and the origin (where a translation of the whole cloud shows as outward motion); ``center``
    (default ``"centroid"``) picks the one the unsuffixed variables and the verdict are about.

    Four tests, each with its p-value: ``ks_pvalue`` (two-sided KS of rho against the Beta law,
    from an equal-probability histogram whose binning moves D by at most ``ks_statistic_error``
    and the p-value by at most ``ks_pvalue_error``), ``sign_pvalue`` (exact binomial test of
    outward vs inward steps), ``t_pvalue`` (one-sample t test of a against 0) and
    ``step_correlation_pvalue`` (self-normalised z test of the mean of cos(D_t, D_t+1) against 0).
    The verdict ``isotropic`` is ``combined_pvalue >= alpha``, the Cauchy combination of the four
    (the sign test as its mid-p): its size is alpha, measured on null walks
    (``tests/test_hypersphere_calibration.py``). ``outward_excess`` = mean a / RMS ``|D|`` (0
    under isotropy) with its standard error ``outward_excess_error``.

    ``*_by_center`` repeat the verdict, the combined and the four p-values (``pvalue_by_center``)
    and the outward excess about each centre; ``centers_agree`` says whether the two verdicts do.
    ``centroid_step``/``centroid_distance`` are the centroid's step and distance from the origin
    per frame, ``centroid_step_ratio`` its RMS step over the tokens' RMS step (about the origin).

    Also per frame ``rho_mean``, ``outward_fraction``, ``radial_mean``, ``radius_drift`` (NaN at the
    first frame), ``step_correlation`` mean and sd against 0 and 1/sqrt(d), and ``cos_decay(lag)``
    = <cos theta(tau)> against ``cos_decay_predicted`` = exp(-(d-1) D tau / r^2) with the fitted
    ``diffusion`` D (the cosine mean over a fixed random sample of ``angle_tokens`` tokens, drawn
    with ``seed``; every token when there are fewer), about ``center``.

    Frames where a position is NaN or infinite (a diverged run) are marked in
    ``nonfinite_frame``; the steps from and to such a position take no part in any statistic
    (about the centroid, one such token makes the whole frame's centroid undefined).
    """
    name = "hypersphere_walk"
    sub, rows, positions = selection(ds, tokens, frames, min_tokens=1, min_frames=3)
    n, d = rows.size, sub.sizes[fmt.DIM_DIM]
    if d < 2:
        raise AnalysisError(f"{name} needs W of 2 or more dimensions (a sphere in {d} has no directions to walk)")
    center_rows = np.arange(ds.sizes[fmt.DIM_TOKEN], dtype=np.int64)
    n_frames = len(positions)
    lags = np.unique(np.clip(np.round(np.geomspace(1, max(1, min(max_lag, n_frames - 1)), 12)), 1, None)).astype(np.int64)
    # the angular decay is a mean over tokens: a fixed random sample of angle_tokens estimates it
    sampled = np.sort(np.random.default_rng(seed).choice(n, min(n, angle_tokens), replace=False))
    edges = beta_edges(d, ks_bins(n * (n_frames - 1)))

    # one streaming pass; each block carries the max(2, max lag) frames before it
    parts = stream(StoredFrames(ds), positions, _walk_block, rows, SharedCentroids(center_rows), center,
                   rows[sampled], lags, edges, before=int(max(2, lags.max())), progress=progress)
    got = merge(parts, _MERGE)
    tested = {c: walk_statistics({k: got[f"{c}:{k}"] for k in _SUMS}, got[f"{c}:rho_histogram"], d) for c in CENTERS}
    for c in CENTERS:
        tested[c]["isotropic"] = bool(np.isfinite(tested[c]["combined_pvalue"])
                                      and tested[c]["combined_pvalue"] >= alpha)
    main = tested[center]
    g = {k.split(":", 1)[1]: v for k, v in got.items() if k.startswith(f"{center}:")}
    per = g["per_frame"]
    ang_sum, ang_n = g["angle_sum"], g["angle_pairs"]
    coarse = g["rho_coarse"]

    out = xr.Dataset(coords={**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
                             fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, sub[fmt.TOKEN_CLASS].values)})
    out["rho_mean"] = annotate(xr.DataArray(per[:, 0], dims="frame"),
                               "mean radial fraction of the step arriving at this frame", "1")
    out["outward_fraction"] = annotate(xr.DataArray(per[:, 1], dims="frame"), "fraction of outward steps", "1")
    out["radial_mean"] = annotate(xr.DataArray(per[:, 2], dims="frame"),
                                  "mean radial component of the step", "embedding units")
    out["radius_drift"] = annotate(xr.DataArray(per[:, 3], dims="frame"), "mean change of radius", "embedding units")
    cpf = got["centroid_per_frame"]
    out["centroid_step"] = annotate(xr.DataArray(cpf[:, 0], dims="frame"),
                                    "length of the step of the centroid of all tokens arriving at this frame",
                                    "embedding units")
    out["centroid_distance"] = annotate(xr.DataArray(cpf[:, 1], dims="frame"),
                                        "distance of the centroid of all tokens from the origin", "embedding units")

    decay = np.where(ang_n > 0, ang_sum / np.maximum(ang_n, 1), np.nan)
    radius_n = int(g["radii"])
    r_mean = g["radius_sum"] / radius_n if radius_n else np.nan
    # fit <cos theta(tau)> = exp(-(d-1) D tau / r^2) by least squares on log through the origin
    good = (decay > 0) & np.isfinite(decay)
    slope = float(np.sum(lags[good] * -np.log(decay[good])) / np.sum(lags[good] ** 2)) if good.any() else np.nan
    diffusion = slope * r_mean ** 2 / (d - 1) if np.isfinite(slope) and np.isfinite(r_mean) else np.nan
    predicted = np.exp(-(d - 1) * diffusion * lags / r_mean ** 2) if np.isfinite(diffusion) and r_mean > 0 \
        else np.full(lags.size, np.nan)
    csteps = cpf[:, 0][np.isfinite(cpf[:, 0])]
    centroid_rms = float(np.sqrt(np.mean(csteps ** 2))) if csteps.size else np.nan
    token_rms = tested["origin"]["step_rms"]
    diffusion_error = _slope_error(lags[good], -np.log(decay[good]), slope) * r_mean ** 2 / (d - 1) \
        if np.isfinite(diffusion) else np.nan
    # the RMS step's error from the blocked error of the mean squared step: d sqrt(m) = dm / (2 sqrt(m))
    square_error = block_average(csteps ** 2).error
    ratio_error = square_error / (2 * centroid_rms) / token_rms if centroid_rms > 0 and token_rms > 0 else np.nan
    by_token = _per_token(g["per_token"])

    scalar = lambda v, name, units: annotate(xr.DataArray(v), name, units)  # noqa: E731
    out["rho_mean_all"] = scalar(main["rho_mean_all"], "mean radial fraction over all steps", "1")
    # the time averages' standard errors: Flyvbjerg-Petersen blocking of the per-frame means
    for var, series, long_name in (("rho_mean_all", per[:, 0], "mean radial fraction"),
                                   ("outward_fraction_all", per[:, 1], "fraction of outward steps"),
                                   ("radial_mean_all", per[:, 2], "mean radial component")):
        out[f"{var}_error"] = scalar(block_average(series).error,
                                     f"standard error of the {long_name} (blocking of its per-frame means)",
                                     "embedding units" if var == "radial_mean_all" else "1")
    out["rho_expected"] = scalar(1.0 / d, "radial fraction expected of an isotropic step, 1/d", "1")
    out["ks_statistic"] = scalar(main["ks_statistic"], "KS distance of rho from Beta(1/2, (d-1)/2)", "1")
    out["ks_statistic_error"] = scalar(main["ks_statistic_error"],
                                       "bound on the KS distance's binning error (half a bin, 1/(2 bins))", "1")
    out["ks_pvalue"] = scalar(main["ks_pvalue"], "KS test p-value of rho against Beta(1/2, (d-1)/2)", "1")
    out["ks_pvalue_error"] = scalar(main["ks_pvalue_error"],
                                    "bound on |ks_pvalue - exact KS p-value| from the binning", "1")
    out["outward_fraction_all"] = scalar(main["outward_fraction_all"], "fraction of outward steps", "1")
    out["sign_pvalue"] = scalar(main["sign_pvalue"], "binomial test p-value of outward vs inward steps", "1")
    out["radial_mean_all"] = scalar(main["radial_mean_all"], "mean radial component a", "embedding units")
    out["t_pvalue"] = scalar(main["t_pvalue"], "t test p-value of mean a against 0", "1")
    out["step_correlation_mean"] = scalar(main["step_correlation_mean"], "mean cos(D_t, D_t+1), expected 0", "1")
    out["step_correlation_sd"] = scalar(main["step_correlation_sd"], "sd of cos(D_t, D_t+1)", "1")
    out["step_correlation_sd_expected"] = scalar(1 / np.sqrt(d), "sd expected of independent steps, 1/sqrt(d)", "1")
    out["step_correlation_z"] = scalar(main["step_correlation_z"],
                                       "z statistic of the step correlation, sum cos / sqrt(sum cos^2)", "1")
    out["step_correlation_pvalue"] = scalar(main["step_correlation_pvalue"],
                                            "two-sided p-value of the step correlation against 0", "1")
    out["step_correlation_mean_error"] = scalar(
        float(np.sqrt(g["cos_sq_sum"]) / g["cosines"]) if g["cosines"] else np.nan,
        "standard error of the mean step correlation, sqrt(sum cos^2) / cosines", "1")
    out["mean_radius"] = scalar(r_mean, "mean radius", "embedding units")
    out["diffusion"] = scalar(diffusion, "fitted angular diffusion coefficient D", "embedding units^2 per frame")
    out["diffusion_error"] = scalar(diffusion_error, "least-squares standard error of the fitted D (the lags' "
                                    "cosines are correlated: a lower bound)", "embedding units^2 per frame")
    out["outward_excess_token"] = annotate(
        xr.DataArray(by_token["outward_excess"], dims=fmt.DIM_TOKEN),
        "each token's outward excess: its mean radial step component / its RMS step length", "1")
    out["rho_mean_token"] = annotate(xr.DataArray(by_token["rho_mean"], dims=fmt.DIM_TOKEN),
                                     "each token's mean radial fraction of its steps", "1")
    out["cos_decay"] = annotate(xr.DataArray(decay, dims="lag", coords={"lag": lags}),
                                "mean cosine between r_hat(t) and r_hat(t+lag)", "1")
    out["cos_decay_predicted"] = annotate(xr.DataArray(predicted, dims="lag", coords={"lag": lags}),
                                          "Brownian motion on a sphere: exp(-(d-1) D lag / r^2)", "1")
    out["rho_histogram"] = annotate(
        xr.DataArray(coarse, dims="rho_bin", coords={"rho_bin": (np.arange(_COARSE) + 0.5) / _COARSE}),
        "histogram of radial fractions", "count")
    out["combined_pvalue"] = scalar(main["combined_pvalue"], f"combined p-value of the four tests ({COMBINATION})", "1")
    out["isotropic"] = scalar(main["isotropic"], f"consistent with an isotropic walk about the {center} "
                              f"(combined p-value >= alpha={alpha})", "1")
    out["outward_excess"] = scalar(main["outward_excess"],
                                   "outward excess: mean radial component / RMS step length", "1")
    out["outward_excess_error"] = scalar(main["outward_excess_error"], "standard error of the outward excess", "1")
    out["step_rms"] = scalar(main["step_rms"], "RMS step length of the tokens", "embedding units")
    out["centroid_step_rms"] = scalar(centroid_rms, "RMS step of the centroid of all tokens", "embedding units")
    out["centroid_step_ratio"] = scalar(centroid_rms / token_rms if token_rms > 0 else np.nan,
                                        "RMS step of the centroid / RMS step of the tokens about the origin", "1")
    out["centroid_step_ratio_error"] = scalar(ratio_error, "standard error of the centroid step ratio (blocking "
                                              "of the centroid's squared steps)", "1")

    by = {"center": list(CENTERS)}
    per_center = lambda key: [tested[c][key] for c in CENTERS]  # noqa: E731
    out["isotropic_by_center"] = annotate(xr.DataArray(per_center("isotropic"), dims="center", coords=by),
                                          f"consistent with an isotropic walk about each centre (alpha={alpha})", "1")
    out["combined_pvalue_by_center"] = annotate(xr.DataArray(per_center("combined_pvalue"), dims="center", coords=by),
                                                "combined p-value of the four tests about each centre", "1")
    pkeys = ("ks_pvalue", "sign_pvalue", "t_pvalue", "step_correlation_pvalue")
    out["pvalue_by_center"] = annotate(
        xr.DataArray([[tested[c][k] for k in pkeys] for c in CENTERS], dims=("center", "test"),
                     coords={**by, "test": list(TESTS)}), "p-value of each test about each centre", "1")
    for key, long_name in (("outward_excess", "outward excess about each centre"),
                           ("outward_excess_error", "standard error of the outward excess about each centre"),
                           ("rho_mean_all", "mean radial fraction about each centre"),
                           ("outward_fraction_all", "fraction of outward steps about each centre")):
        out[f"{key}_by_center"] = annotate(xr.DataArray(per_center(key), dims="center", coords=by), long_name, "1")
    out["step_rms_by_center"] = annotate(xr.DataArray(per_center("step_rms"), dims="center", coords=by),
                                         "RMS step length of the tokens about each centre", "embedding units")
    agree = tested["centroid"]["isotropic"] == tested["origin"]["isotropic"]
    out["centers_agree"] = scalar(agree, "the verdicts about the centroid and the origin agree", "1")
    out = base.mark_nonfinite(out, g["nonfinite"] > 0)
    return finish(out, name, center=center, alpha=alpha, combination=COMBINATION, dim=d,
                  steps_tested=main["steps"], ks_bins=edges.size + 1, tokens=_describe(ds, tokens))


def _describe(ds: xr.Dataset, tokens: TokenSelection) -> str:
    """A token selection in words for the result's ``tokens`` attribute (a mask: its classes, or its size)."""
    if not isinstance(tokens, np.ndarray) or tokens.dtype != bool:
        return str(tokens)
    classes = np.unique(ds[fmt.TOKEN_CLASS].values[tokens])
    whole = all(np.array_equal(tokens & (ds[fmt.TOKEN_CLASS].values == c), ds[fmt.TOKEN_CLASS].values == c)
                for c in classes)
    return "+".join(fmt.TOKEN_CLASSES[int(c)] for c in classes) if whole and classes.size else f"{int(tokens.sum())} tokens"


def _per_token(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Each token's outward excess and mean radial fraction from its sums (``(tokens, 5)``: sum a,
    sum |D|^2, steps, sum rho, radial fractions; see ``sphere_walk_block``); NaN without steps."""
    a_sum, dd_sum, steps, rho_sum, rhos = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(dd_sum / steps)
        excess = np.where((steps > 0) & (rms > 0), a_sum / steps / rms, np.nan)
        rho = np.where(rhos > 0, rho_sum / rhos, np.nan)
    return {"outward_excess": excess, "rho_mean": rho}


def _slope_error(x: np.ndarray, y: np.ndarray, slope: float) -> float:
    """The least-squares standard error of a fit ``y = slope x`` through the origin (NaN under 2 points)."""
    if x.size < 2 or not np.isfinite(slope):
        return np.nan
    residual = y - slope * x
    return float(np.sqrt(np.sum(residual ** 2) / (x.size - 1) / np.sum(x ** 2)))


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


def _compare_tokens(ds: xr.Dataset) -> TokenSelection:
    """The non-live tokens (dead and phantom together, as a mask), so that ``tokendyn compare`` can
    set the two classes against each other token by token from one run; where they are too few for
    the walk (see :func:`_applies`), the report's tokens."""
    mask = ds[fmt.TOKEN_CLASS].values != fmt.CLASS_LIVE
    return mask if _applies(ds, mask) else _report_tokens(ds, None)


add(Analysis("hypersphere", hypersphere_walk, order=40, applies=_applies, report_tokens=_report_tokens,
             summary_tokens=_summary_tokens, headline=_headline,
             headline_fields=_headline_fields, summary_lines=_summary_lines, figures=_figures,
             compare_tokens=_compare_tokens, curves=_curves, token_values=_token_values))
