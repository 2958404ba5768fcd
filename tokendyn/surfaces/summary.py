"""A short text summary of a movie: what happened to the token cloud, per class."""
from __future__ import annotations

import os

import numpy as np

from tokendyn import format as fmt
from tokendyn.tools.inspect import info


def movie_summary(path: str | os.PathLike) -> str:
    """Headline numbers of a movie, computed from its first and last frames and its scalars."""
    from tokendyn.sources.dataset import open_movie

    ds = open_movie(path)
    meta = info(path)
    first = ds.W.isel(frame=0).values.astype(np.float64)
    last = ds.W.isel(frame=-1).values.astype(np.float64)
    classes = ds.token_class.values
    lines = [f"movie summary: {meta['frames']} frames, steps {meta['steps'][0]}..{meta['steps'][1]}, "
             f"{meta['tokens']} tokens x {meta['dim']} dims ({meta['dtype']}), "
             f"{meta['bytes_on_disk'] / 2**20:.1f} MiB on disk"]
    c0, c1 = first.mean(0), last.mean(0)
    lines.append(f"  cloud centroid drift      {np.linalg.norm(c1 - c0):.4g}")
    r0 = np.linalg.norm(first - c0, axis=1).mean()
    r1 = np.linalg.norm(last - c1, axis=1).mean()
    lines.append(f"  mean radius               {r0:.4g} -> {r1:.4g} ({(r1 / r0 - 1) * 100:+.1f}%)")
    for code, name in enumerate(fmt.TOKEN_CLASSES):
        mask = classes == code
        if not mask.any():
            continue
        moved = np.linalg.norm((last[mask] - c1) - (first[mask] - c0), axis=1)
        lines.append(f"  {name:8s} {int(mask.sum()):6d} tokens  co-moving displacement mean {moved.mean():.4g}, "
                     f"median {np.median(moved):.4g}")
    if "loss" in ds:
        loss = ds.loss.values
        finite = loss[np.isfinite(loss)]
        if finite.size:
            lines.append(f"  loss                      {finite[0]:.3f} -> {finite[-1]:.3f}")
    lines += _analysis_lines(ds, classes)
    return "\n".join(lines)


def _analysis_lines(ds, classes: np.ndarray) -> list[str]:
    from tokendyn.analysis import hypersphere_walk, inhale, lattice_motion

    lines = []
    ev = inhale(ds, smooth=3)
    if int(ev.n_phases):
        phases = ", ".join(f"{int(s)}->{int(b)} ({d * 100:.2f}%)" for s, b, d in
                           zip(ev.phase_start.values, ev.phase_bottom.values, ev.phase_depth.values))
        lines.append(f"  inhale                    {int(ev.n_phases)} contraction phase(s) at steps {phases}; "
                     f"expansion from step {ev.expansion_step.item():.0f}")
    else:
        lines.append("  inhale                    no contraction of the radius before it expands")
    for name in ("dead", "phantom"):
        if (classes == fmt.class_code(name)).sum() >= 2 and ds.sizes["frame"] >= 3:
            h = hypersphere_walk(ds, name)
            verdict = "isotropic" if bool(h.isotropic) else "NOT isotropic"
            lines.append(f"  hypersphere walk ({name:7s}) {verdict}: outward excess {float(h.outward_excess):+.3f}, "
                         f"rho {float(h.rho_mean_all):.4f} vs 1/d {float(h.rho_expected):.4f}, "
                         f"sign p {float(h.sign_pvalue):.2g}, KS p {float(h.ks_pvalue):.2g}")
    if "W_bits" in ds:
        lat = lattice_motion(ds)
        for cls in lat["class"].values:
            frozen = float(lat.frozen_fraction.sel(**{"class": cls}).values[-1])
            onset = lat.freeze_onset.sel(**{"class": cls}, threshold=0.5).item()
            when = f"half frozen at step {onset:.0f}" if np.isfinite(onset) else "never half frozen"
            temp = float(lat.temperature.sel(**{"class": cls}).values[-1])
            lines.append(f"  lattice ({cls:7s})         {frozen * 100:.0f}% frozen at the end, {when}; "
                         f"final temperature {temp:.3g} sites^2")
    return lines
