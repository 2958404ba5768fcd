"""Null models with planted ground truth, written as real W-movies.

Each function writes a movie to ``path`` and returns its planted truth, so an analysis can be checked
against what was put in: an isotropic walk on a hypersphere (with an optional outward drift), tokens
that freeze on the bf16 lattice at chosen steps, a cloud whose radius contracts in steps before it
expands, and a global translation of any movie.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from . import format as fmt
from .format import BF16Bits


def _recorder(path: str | os.PathLike, token_class: np.ndarray | None, config: dict, overwrite: bool):
    from tokendyn.recorder import Recorder

    return Recorder(path, token_class=token_class, config=config, overwrite=overwrite,
                    title=f"tokendyn synthetic: {config['model']}", flush_every=50)


def hypersphere_walk(path: str | os.PathLike, *, n_tokens: int = 256, dim: int = 32, frames: int = 200,
                     radius: float = 1.0, step: float = 0.01, outward: float = 0.0, seed: int = 0,
                     overwrite: bool = False) -> dict:
    """Tokens on a sphere of ``radius`` taking isotropic Gaussian steps of RMS length ``step``.

    ``outward`` adds a radial push of ``outward * step`` per step (a fraction of the step length):
    0 is the isotropic null model, 0.05 a drift of 5% of the step. All tokens are class "dead".
    Returns the planted truth: ``{"outward": ..., "step": ..., "dim": ...}``.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_tokens, dim))
    x *= radius / np.linalg.norm(x, axis=1, keepdims=True)
    sigma = step / np.sqrt(dim)
    cls = np.full(n_tokens, fmt.CLASS_DEAD, np.uint8)
    with _recorder(path, cls, {"model": "hypersphere_walk", "outward": outward, "step": step}, overwrite) as rec:
        for t in range(frames):
            rec.capture(t, W=x.astype(np.float32))
            r_hat = x / np.linalg.norm(x, axis=1, keepdims=True)
            x = x + rng.normal(scale=sigma, size=x.shape) + outward * step * r_hat
    return {"outward": outward, "step": step, "dim": dim, "radius": radius}


def lattice_freeze(path: str | os.PathLike, *, n_tokens: int = 128, dim: int = 16, frames: int = 120,
                   freeze_steps: Sequence[float] | None = None, hop_probability: float = 0.3,
                   big_moves_until: int = 10, seed: int = 0, overwrite: bool = False) -> dict:
    """A bf16 movie whose tokens hop on the lattice until a planted freeze step, then never move.

    Before ``big_moves_until`` tokens also make moves of several lattice sites (the gas); after it
    each moving token hops +-1 site on a random subset of coordinates every frame (and at least one,
    so a token that has not frozen moves at every frame). ``freeze_steps[i]`` is the step at which
    token i takes its final position (NaN: it never freezes). Steps equal frame numbers.
    Returns ``{"freeze_step": array}``; the first half are "live", the rest "dead".
    """
    rng = np.random.default_rng(seed)
    if freeze_steps is None:
        freeze = rng.integers(big_moves_until + 1, frames - 1, n_tokens).astype(float)
        freeze[rng.random(n_tokens) < 0.1] = np.nan
    else:
        freeze = np.asarray(freeze_steps, float)
    bits = fmt.float32_to_bf16_bits(rng.normal(0, 0.02, (n_tokens, dim)).astype(np.float32))
    ordered = np.where(bits & 0x8000, -(bits & 0x7FFF).astype(np.int64), (bits & 0x7FFF).astype(np.int64))
    cls = np.where(np.arange(n_tokens) < n_tokens // 2, fmt.CLASS_LIVE, fmt.CLASS_DEAD).astype(np.uint8)

    def to_bits(o: np.ndarray) -> np.ndarray:
        return np.where(o < 0, 0x8000 | (-o), o).astype(np.uint16)

    with _recorder(path, cls, {"model": "lattice_freeze"}, overwrite) as rec:
        rec.capture(0, W=BF16Bits(to_bits(ordered)))
        for t in range(1, frames):
            moving = np.isnan(freeze) | (t <= freeze)
            hops = rng.random((n_tokens, dim)) < hop_probability
            hops[np.arange(n_tokens), rng.integers(0, dim, n_tokens)] = True
            size = rng.integers(2, 6, (n_tokens, dim)) if t <= big_moves_until else 1
            delta = np.where(hops, rng.choice([-1, 1], (n_tokens, dim)) * size, 0)
            ordered = ordered + np.where(moving[:, None], delta, 0)
            rec.capture(t, W=BF16Bits(to_bits(ordered)))
    return {"freeze_step": freeze}


def inhale_cloud(path: str | os.PathLike, *, n_tokens: int = 256, dim: int = 32, frames: int = 300,
                 radius: float = 1.0, phases: Sequence[tuple[int, int, float]] = ((40, 60, 0.05), (90, 110, 0.05)),
                 expand_from: int = 150, expand_rate: float = 0.01, noise: float = 0.0, seed: int = 0,
                 overwrite: bool = False) -> dict:
    """A cloud whose mean radius (about its centroid) contracts in planted phases, then expands.

    ``phases`` are ``(start, end, depth)``: between steps start and end the radius falls linearly by
    ``depth`` (relative to its value at ``start``); it is flat between phases, and from
    ``expand_from`` it grows by ``expand_rate`` of ``radius`` per step. ``noise`` adds relative
    step noise to each token's radius. Returns the planted radius curve and phases.
    """
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_tokens, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u -= u.mean(0)  # centroid exactly 0 at every frame
    centre = rng.normal(0, 0.5, dim)
    r = planted_radius(frames, radius, phases, expand_from, expand_rate)
    scale = r / np.linalg.norm(u, axis=1).mean()
    with _recorder(path, None, {"model": "inhale_cloud"}, overwrite) as rec:
        for t in range(frames):
            jitter = 1 + noise * rng.normal(size=(n_tokens, 1)) if noise else 1.0
            rec.capture(t, W=(centre + scale[t] * u * jitter).astype(np.float32))
    return {"radius": r, "phases": list(phases), "expand_from": expand_from}


def planted_radius(frames: int, radius: float, phases: Sequence[tuple[int, int, float]],
                   expand_from: int, expand_rate: float) -> np.ndarray:
    """The radius curve of :func:`inhale_cloud`: flat, a linear fall by ``depth`` in each phase,
    flat between phases, and a linear rise after ``expand_from``."""
    t = np.arange(frames, dtype=float)
    r = np.full(frames, radius, dtype=float)
    level = radius
    for start, end, depth in sorted(phases):
        bottom = level * (1 - depth)
        inside = (t > start) & (t <= end)
        r[inside] = level - (level - bottom) * (t[inside] - start) / (end - start)
        r[t > end] = bottom
        level = bottom
    rising = t > expand_from
    r[rising] = r[rising] + expand_rate * radius * (t[rising] - expand_from)
    return r


def translated(src: str | os.PathLike, dst: str | os.PathLike, *, drift: float = 0.5, seed: int = 0,
               overwrite: bool = False) -> np.ndarray:
    """Copy a float movie adding one translation vector per frame to every token (a random walk of
    step ``drift``); returns the translations, shape (frames, dim)."""
    from tokendyn.sources.dataset import open_movie

    ds = open_movie(src)
    rng = np.random.default_rng(seed)
    n, _, d = ds.W.shape
    shifts = np.cumsum(rng.normal(0, drift, (n, d)), axis=0)
    with _recorder(dst, ds.token_class.values, {"model": "translated", "drift": drift}, overwrite) as rec:
        for t in range(n):
            rec.capture(int(ds.step.values[t]), W=(ds.W[t].values.astype(np.float64) + shifts[t]).astype(np.float32))
    return shifts
