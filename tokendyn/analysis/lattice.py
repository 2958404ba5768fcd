"""Motion on the bfloat16 lattice: gas-like hops, freezing, and the cloud's freeze onset."""
from __future__ import annotations

from typing import Callable, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError

from . import _kernels as K
from .base import TokenSelection, annotate, frame_coords, iter_blocks, pairwise_frames, select


def _bits(sub: xr.Dataset) -> da.Array:
    if "W_bits" not in sub:
        dtype = sub["W"].attrs.get("stored_dtype", str(sub["W"].dtype))
        raise AnalysisError(f"lattice_motion needs a bfloat16 W (its raw bits); this movie's W is {dtype}",
                            sub.encoding.get("source"))
    return sub["W_bits"].data.rechunk({1: -1, 2: -1})


def lattice_motion(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: slice | tuple | None = None,
    tolerance: int = 0,
    thresholds: Sequence[float] = (0.5, 0.9, 0.99),
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Lattice-site motion of bf16 tokens, computed on the raw bits.

    A bf16 value with exponent e sits on a lattice of spacing 2^(e-7); bit patterns are mapped to
    integers monotonic in value (+0 = -0), so a difference counts lattice sites moved, across zero.

    Per token and frame (pair t-1 -> t): ``changed`` coordinates, ``sites`` (summed ``|sites moved|``),
    ``moved``, and ``hop`` = 1 for lattice-scale motion (every coordinate within +-1 site), 2 for
    larger motion, 0 for none. Per frame and class: ``temperature`` (mean squared sites per
    coordinate), ``moving_fraction``, ``hop_fraction``, ``frozen_fraction``. Per token:
    ``freeze_step``, the step of the first frame after which its bits never change again (ignoring
    up to ``tolerance`` isolated +-1 hops after it); NaN if it still moves at the end. Per class:
    ``freeze_onset(class, threshold)``, the first step at which the frozen fraction reaches each
    threshold ("fimbulwinter"); NaN if never. Raises :class:`AnalysisError` unless W is bfloat16.
    """
    sub = select(ds, tokens, frames, min_frames=2)
    bits = _bits(sub)
    n_tokens = bits.shape[1]
    steps = sub[fmt.STEP].values
    classes = sub[fmt.TOKEN_CLASS].values
    coords = {**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
              fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)}
    dim = bits.shape[2]

    def kernel(block: np.ndarray) -> np.ndarray:
        changed, total, biggest, squares = K.lattice_steps(block)
        return np.stack([changed, total, biggest, squares], axis=-1).astype(np.float64)

    stacked = pairwise_frames(bits, kernel, out_tail=(n_tokens, 4), dtype=np.float64, fill=0.0)
    changed, sites, biggest, squares = (stacked[..., i] for i in range(4))
    hop = da.where(biggest == 0, 0, da.where(biggest <= 1, 1, 2)).astype(np.int8)

    out = xr.Dataset(coords=coords)
    out["changed"] = annotate(xr.DataArray(changed.astype(np.int32), dims=("frame", "token")),
                              "coordinates that changed since the previous frame", "1")
    out["sites"] = annotate(xr.DataArray(sites.astype(np.int64), dims=("frame", "token")),
                            "lattice sites moved, summed over coordinates", "sites")
    out["moved"] = annotate(xr.DataArray(changed > 0, dims=("frame", "token")), "token moved", "1")
    out["hop"] = annotate(xr.DataArray(hop, dims=("frame", "token")),
                          "0 still, 1 lattice-scale hop (all coordinates within 1 site), 2 larger motion", "1")
    out["hop"].attrs.update(flag_values=[0, 1, 2], flag_meanings="still lattice_hop larger_motion")

    # one streaming pass for the freeze steps: the last untolerated move of each token
    freeze_frame = _freeze_frames(stacked, tolerance, progress)
    n_frames = len(steps)
    freeze_step = np.where(np.isnan(freeze_frame), np.nan, steps[np.nan_to_num(freeze_frame).astype(int)])
    out["freeze_step"] = annotate(xr.DataArray(freeze_step, dims=("token",)),
                                  "step after which the token's bits never change again", "steps")
    out["freeze_frame"] = annotate(xr.DataArray(freeze_frame, dims=("token",)), "frame of freezing", "frames")

    per_class = {}
    names = []
    for code, name in enumerate(fmt.TOKEN_CLASSES):
        mask = classes == code
        if mask.any():
            per_class[name] = mask
            names.append(name)
    cls = xr.Variable("class", names)

    def by_class(values: da.Array, reducer: str) -> xr.DataArray:
        cols = []
        for name in names:
            m = np.flatnonzero(per_class[name])
            part = values[:, m]
            cols.append(getattr(part, reducer)(axis=1))
        return xr.DataArray(da.stack(cols, axis=1), dims=("frame", "class"), coords={"class": cls})

    out["temperature"] = annotate(by_class(squares / dim, "mean"),
                                  "temperature: mean squared lattice sites moved per coordinate", "sites^2")
    out["moving_fraction"] = annotate(by_class((changed > 0).astype(np.float64), "mean"),
                                      "fraction of tokens that moved", "1")
    out["hop_fraction"] = annotate(by_class((hop == 1).astype(np.float64), "mean"),
                                   "fraction of tokens making a lattice-scale hop", "1")
    frames_idx = np.arange(n_frames)
    frozen = np.stack([
        (np.nan_to_num(freeze_frame[per_class[name]], nan=np.inf)[None, :] <= frames_idx[:, None]).mean(axis=1)
        for name in names], axis=1)
    out["frozen_fraction"] = annotate(xr.DataArray(frozen, dims=("frame", "class"), coords={"class": cls}),
                                      "fraction of tokens frozen for good", "1")
    onset = np.full((len(names), len(thresholds)), np.nan)
    for j, name in enumerate(names):
        for k, threshold in enumerate(thresholds):
            hit = np.flatnonzero(frozen[:, j] >= threshold)
            if hit.size:
                onset[j, k] = steps[hit[0]]
    out["freeze_onset"] = annotate(
        xr.DataArray(onset, dims=("class", "threshold"), coords={"class": cls, "threshold": list(thresholds)}),
        "fimbulwinter: first step at which the frozen fraction reaches the threshold", "steps")
    out.attrs.update(analysis="lattice_motion", tolerance=tolerance)
    return out


def _freeze_frames(stacked: da.Array, tolerance: int, progress) -> np.ndarray:
    """Frame at which each token takes its final bits, allowing ``tolerance`` later +-1 hops."""
    n_tokens = stacked.shape[1]
    # recent[i] holds the frames of the token's last tolerance+1 moves and whether each was a +-1 hop
    depth = tolerance + 1
    last_frames = np.full((n_tokens, depth), -1, np.int64)
    last_small = np.zeros((n_tokens, depth), bool)
    for start, block in iter_blocks(stacked, progress):
        for t in range(block.shape[0]):
            moved = block[t, :, 0] > 0
            if not moved.any():
                continue
            small = (block[t, :, 2] <= 1) & (block[t, :, 0] <= 1)  # one coordinate, one site: isolated hop
            idx = np.flatnonzero(moved)
            last_frames[idx, 1:] = last_frames[idx, :-1]
            last_small[idx, 1:] = last_small[idx, :-1]
            last_frames[idx, 0] = start + t
            last_small[idx, 0] = small[idx]
    n_frames = stacked.shape[0]
    freeze = np.zeros(n_tokens)
    for i in range(n_tokens):
        frame = 0
        tolerated = 0
        for j in range(depth):
            f = last_frames[i, j]
            if f < 0:
                break
            if last_small[i, j] and tolerated < tolerance:
                tolerated += 1
                continue
            frame = f
            break
        freeze[i] = frame
    # a token whose final bits only appear at the last frame has not been seen to freeze
    freeze[freeze == n_frames - 1] = np.nan
    return freeze
