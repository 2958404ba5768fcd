"""The report and compare side of :func:`tokendyn.analysis.hypersphere.hypersphere_walk`: its
headline, summary lines, figure, curves and per-token values (registered by
:mod:`tokendyn.analysis.hypersphere`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from tokendyn.stats import plus_minus

from .registry import ReportFigure


def _curves(h: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"rho_mean": h.rho_mean, "outward_fraction": h.outward_fraction}


def _token_values(h: xr.Dataset) -> dict[str, xr.DataArray]:
    return {"outward_excess": h.outward_excess_token, "rho_mean": h.rho_mean_token}


_HEADLINE = ("isotropic", "combined_pvalue", "outward_excess", "outward_excess_error", "rho_mean_all",
             "rho_mean_all_error", "rho_expected", "ks_pvalue", "ks_pvalue_error", "sign_pvalue", "t_pvalue",
             "step_correlation_pvalue", "outward_fraction_all", "outward_fraction_all_error", "radial_mean_all",
             "radial_mean_all_error", "step_correlation_mean", "step_correlation_mean_error", "diffusion",
             "diffusion_error", "centers_agree", "centroid_step_ratio", "centroid_step_ratio_error")


def _headline(h: xr.Dataset) -> dict[str, Any]:
    """The verdict's centre's numbers, and the verdict and outward excess about each centre."""
    out: dict[str, Any] = {k: h[k].item() for k in _HEADLINE if k in h}  # (older results lack the errors)
    for c in h.center.values.tolist():
        for key in ("isotropic", "combined_pvalue", "outward_excess", "outward_excess_error"):
            out[f"{key}_{c}"] = h[f"{key}_by_center"].sel(center=c).item()
    return {**out, "center": h.attrs.get("center"), "tokens": h.attrs.get("tokens")}


def _headline_fields(h: xr.Dataset) -> dict[str, tuple]:
    """What each headline number is measured against, its units, and whether the report's main
    table shows it."""
    c = h.attrs.get("center", "centroid")
    d = h.attrs.get("dim")
    return {"isotropic": (f"the {h.attrs.get('tokens', '')} tokens' steps are isotropic about the {c} (the verdict)",
                          "", True),
            "combined_pvalue": ("combined p-value of the isotropy tests", "1 (p-value)", True),
            "outward_excess": (f"excess of outward over inward steps about the {c} (0: isotropic)", "1", True),
            "rho_mean_all": (f"mean radial fraction of the steps (isotropic: 1/d = {float(h.rho_expected):.4g})"
                             if "rho_expected" in h else "mean radial fraction of the steps", "1", True),
            "rho_expected": (f"the isotropic expectation 1/d (d = {d})", "1"),
            "centers_agree": ("the verdicts about the centroid and the origin agree", "", True),
            "centroid_step_ratio": ("the centroid's RMS step over the tokens'", "1"),
            "diffusion": ("angular diffusion coefficient on the sphere", "1 / frame"),
            "center": ("the centre of the verdict", ""), "tokens": ("the tokens tested", "")}




def _p(value: float) -> str:
    """A p-value as shown: two digits, or ``< 1e-16`` where double precision has lost it."""
    return f"{value:.2g}" if not value < 1e-16 else "< 1e-16"


def _about(h: xr.Dataset, c: str) -> str:
    verdict = "isotropic" if bool(h.isotropic_by_center.sel(center=c)) else "NOT isotropic"
    excess = float(h.outward_excess_by_center.sel(center=c))
    return (f"{verdict} about the {c} (p {_p(float(h.combined_pvalue_by_center.sel(center=c)))}), outward excess "
            f"{'+' if excess >= 0 else ''}{plus_minus(excess, float(h.outward_excess_error_by_center.sel(center=c)))}")


def _centres_line(h: xr.Dataset) -> str:
    """The other centre's verdict, whether the two agree, and how far the centroid moves."""
    other = [c for c in h.center.values.tolist() if c != h.attrs["center"]][0]
    agree = "the centres agree" if bool(h.centers_agree) else "the centres DISAGREE"
    return (f"{_about(h, other)}; {agree}; the centroid's RMS step is "
            f"{float(h.centroid_step_ratio):.2f} x the tokens'")


def _summary_lines(h: xr.Dataset) -> list[tuple[str, str]]:
    label = f"hypersphere walk ({h.attrs['tokens']:7s})"
    rho = plus_minus(float(h.rho_mean_all), float(h.rho_mean_all_error) if "rho_mean_all_error" in h else np.nan)
    return [(label, f"{_about(h, h.attrs['center'])} (the verdict); rho {rho} vs 1/d "
                    f"{float(h.rho_expected):.4f}, KS p {_p(float(h.ks_pvalue))}, sign p {_p(float(h.sign_pvalue))}, "
                    f"step-correlation p {_p(float(h.step_correlation_pvalue))}"),
            ("", _centres_line(h))]


def _figures(h: xr.Dataset, colours: Mapping[str, str]) -> list[ReportFigure]:
    from tokendyn.surfaces.figures import subplots

    d = int(h.attrs["dim"])
    fig, axes = subplots(1, 3, height=3.4)
    tokens = str(h.attrs.get("tokens", ""))
    counts = h.rho_histogram.values.astype(float)
    centres = h.rho_bin.values
    width = centres[1] - centres[0]
    total = counts.sum()
    if total > 0:
        axes[0].bar(centres, counts / (total * width), width=width, alpha=0.6, color=colours.get(tokens, "C0"),
                    label=f"observed ({tokens})" if tokens else "observed")
    grid = np.linspace(1e-3, 1, 400)
    axes[0].plot(grid, stats.beta(0.5, (d - 1) / 2).pdf(grid), "k-", lw=1, label=f"isotropic: Beta(1/2, {(d - 1) / 2:g})")
    axes[0].set(xlabel="radial fraction rho of a step", ylabel="density", yscale="log", ylim=(1e-3, None),
                title=("isotropic" if bool(h.isotropic) else "NOT isotropic")
                + f" about the {h.attrs['center']}: p {_p(float(h.combined_pvalue))}")
    axes[0].legend(loc="upper right")
    centers = h.center.values.tolist()
    excess = h.outward_excess_by_center.values
    error = h.outward_excess_error_by_center.values
    axes[1].bar(centers, excess, yerr=2 * error, capsize=4,
                color=["tab:green" if bool(v) else "tab:red" for v in h.isotropic_by_center.values])
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set(xlabel="centre", ylabel="outward excess (± 2 s.e.)",
                title="each centre: " + ("agree" if bool(h.centers_agree) else "DISAGREE") + " (green: isotropic)")
    axes[2].plot(h.lag.values, h.cos_decay.values, "o", ms=3, label="observed")
    axes[2].plot(h.lag.values, h.cos_decay_predicted.values, "-", label="Brownian on a sphere")
    axes[2].set(xlabel="lag (frames)", ylabel="mean cos of the angle", title=f"angular decay about the {h.attrs['center']}")
    axes[2].legend(loc="upper right")
    return [ReportFigure("hypersphere", "Hypersphere random-walk test", fig)]
