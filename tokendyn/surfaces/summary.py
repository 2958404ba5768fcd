"""A short text summary of a movie: what happened to the token cloud, per class."""
from __future__ import annotations

import os

import numpy as np

from tokendyn import format as fmt
from tokendyn.stats import Estimate, bootstrap_mean
from tokendyn.tools.inspect import info


def movie_summary(path: str | os.PathLike) -> str:
    """Headline numbers of a movie, computed from its first and last frames and its scalars, each
    with its bootstrap standard error over the tokens."""
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
    drift = _centroid_drift(first, last)
    lines.append(f"  cloud centroid drift      {format(drift, '')}")
    r0 = bootstrap_mean(np.linalg.norm(first - c0, axis=1))
    r1 = bootstrap_mean(np.linalg.norm(last - c1, axis=1))
    lines.append(f"  mean radius (centroid)    {format(r0, '')} -> {format(r1, '')} "
                 f"({(r1.value / r0.value - 1) * 100:+.1f}%)")
    for code, name in enumerate(fmt.TOKEN_CLASSES):
        mask = classes == code
        if not mask.any():
            continue
        moved = np.linalg.norm((last[mask] - c1) - (first[mask] - c0), axis=1)
        lines.append(f"  {name:8s} {int(mask.sum()):6d} tokens ({mask.mean():6.1%})  co-moving displacement mean "
                     f"{format(bootstrap_mean(moved), '')} (first to last frame)")
    if "loss" in ds:
        loss = ds.loss.values
        finite = loss[np.isfinite(loss)]
        if finite.size:
            lines.append(f"  loss                      {finite[0]:.3f} -> {finite[-1]:.3f}")
    lr_line = _lr_line(ds)
    if lr_line:
        lines.append(lr_line)
    lines += _analysis_lines(ds)
    return "\n".join(lines)


def _lr_line(ds) -> str:
    """The learning rate's peak and its last value relative to it: what every "final" number of a
    run is measured against (a displacement at the end of a schedule that ends at 0 is 0)."""
    if "lr" not in ds:
        return ""
    lr = np.asarray(ds.lr.values, np.float64)
    finite = lr[np.isfinite(lr)]
    if not finite.size or finite.max() <= 0:
        return ""
    peak, last = float(finite.max()), float(finite[-1])
    return f"  learning rate             peak {peak:.3g}, last {last:.3g} ({last / peak:.1%} of peak)"


def _centroid_drift(first: np.ndarray, last: np.ndarray) -> Estimate:
    """How far the centroid moved from the first frame to the last, with the bootstrap error over
    the tokens of their moves along the drift's direction (the delta-method error of the norm, as
    ``cloud_geometry`` gives the centroid's norm)."""
    drift = last.mean(0) - first.mean(0)
    norm = float(np.linalg.norm(drift))
    along = (last - first) @ (drift / norm) if norm > 0 else np.zeros(first.shape[0])
    return bootstrap_mean(along)  # its mean is the drift's norm


def _analysis_lines(ds) -> list[str]:
    """The registered analyses' lines: each run as the registry says, on each of its selections."""
    from tokendyn.analysis import registry

    lines = []
    for spec in registry.analyses().values():
        if spec.summary_lines is None:
            continue
        for tokens in spec.summary_tokens(ds):
            if spec.applies(ds, tokens):
                lines += [f"  {label:<25} {text}" for label, text in spec.summary_lines(spec.standard_run(ds, tokens))]
    return lines
