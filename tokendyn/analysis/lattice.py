"""Motion on the bfloat16 lattice: gas-like hops, freezing, and the cloud's freeze onset."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError
from tokendyn.stats.bootstrap import RESAMPLES, SEED

from . import _lattice_kernels as K
from . import base
from ._frames import PER_TOKEN_CHOICES, StoredFrames, per_token_array
from ._lattice_causes import ONSET_CAUSES, onset_causes
from ._lattice_report import _curves, _events, _figures, _frozen_all, _headline, _headline_fields, _summary_lines, _token_values
from .base import FrameRange, TokenSelection, annotate, class_groups, finish, frame_coords, merge, selection, stream
from .registry import Analysis, add

__all__ = ["ONSET_CAUSES", "lattice_motion"]  # ONSET_CAUSES lives in _lattice_causes, re-exported here


def _require_bits(sub: xr.Dataset) -> None:
    if "W_bits" not in sub:
        dtype = sub["W"].attrs.get("stored_dtype", str(sub["W"].dtype))
        raise AnalysisError(f"lattice_motion needs a bfloat16 W (its raw bits); this movie's W is {dtype}",
                            base.movie_path(sub))


def _latest_moves(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' last moves per token folded in frame order: the frames of each token's last
    ``depth`` moves, latest first, and whether each was an isolated hop."""
    last = np.full(parts[0][0].shape, -1, np.int64)
    small = np.zeros(parts[0][1].shape, bool)
    for block_last, block_small in parts:
        K.merge_last_moves(last, small, block_last, block_small)
    return last, small


# the streaming pass's fields; the per-(frame, token) part goes to a sink (or is empty)
_MERGE = {"class_sums": "concat", "last_moves": _latest_moves, "per_token": "skip", "nonfinite": "concat",
          "temperature_median": "concat"}


@base.accepts(tolerance=base.whole(0, "a whole number of hops >= 0"),
              thresholds=base.sequence(base.number(0, 1), "a sequence of frozen fractions from 0 to 1, e.g. (0.5,0.9)"),
              per_token=base.choice(*PER_TOKEN_CHOICES))
def lattice_motion(
    ds: xr.Dataset,
    tokens: TokenSelection = "all",
    *,
    frames: FrameRange = None,
    tolerance: int = 0,
    thresholds: Sequence[float] = (0.5, 0.9, 0.99),
    per_token: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Lattice-site motion of bf16 tokens, computed on the raw bits.

    A bf16 value with exponent e sits on a lattice of spacing 2^(e-7); bit patterns are mapped to
    integers monotonic in value (+0 = -0), so a difference counts lattice sites moved, across zero.

    Per token and frame (pair t-1 -> t): ``changed`` coordinates, ``sites`` (summed ``|sites moved|``),
    ``moved``, and ``hop`` = 1 for lattice-scale motion (every coordinate within +-1 site), 2 for
    larger motion, 0 for none. Per frame and class: ``temperature`` (mean squared sites per
    coordinate), ``temperature_median`` (the median over the class's tokens of each token's mean
    squared sites per coordinate, with ``temperature_median_error``: the mean is dominated by the
    few coordinates that cross or touch zero, where one small step in value crosses up to ~3e4
    sites of the ever finer lattice, the median is not), ``moving_fraction``, ``hop_fraction``,
    ``frozen_fraction``. Per token:
    ``freeze_step``, the step of the first frame after which its bits never change again (ignoring
    up to ``tolerance`` isolated +-1 hops after it); NaN if it still moves at the end. Per class:
    ``freeze_onset(class, threshold)``, the first step at which the frozen fraction reaches each
    threshold ("fimbulwinter"); NaN if never; ``freeze_onset_all(threshold)`` is the same over every
    selected token, whatever its class. Raises :class:`AnalysisError` unless W is bfloat16.

    A freeze onset is a finding only if the learning rate could still move the tokens. For each
    onset, per ``group`` (each class, then ``"all"``) and threshold: ``freeze_onset_lr_ratio``, the
    learning rate of the first update after the onset over the movie's peak (from the movie's
    per-frame ``lr``), ``freeze_onset_lr_max_ratio``, the largest after it, ``freeze_onset_coordinate``,
    the median ``|x|`` of the group's coordinates at the onset frame, and ``freeze_onset_update_ratio``,
    the typical Adam update ``lr * TYPICAL_ADAM_STEP`` (an assumption: Adam's normalized step is about
    1 per coordinate) over half the bf16 spacing there; below 1 round to nearest throws the typical
    update away. ``freeze_onset_schedule_driven`` is True when the schedule ends at zero and every
    update after the onset had a learning rate below ``SCHEDULE_DRIVEN_LR_FRACTION`` (0.1) of the
    peak: the schedule stopped the tokens, not the lattice. ``freeze_onset_cause`` says
    ``"schedule"``, ``"lattice"`` (update ratio below 1), ``"other"``, ``"unknown"`` (no ``lr`` in the
    movie: the ratios are NaN) or ``"none"`` (no onset). Per token, ``freeze_lr_ratio`` and
    ``freeze_update_ratio`` say the same of its freeze (its coordinates at the last frame: its
    frozen bits); per frame, ``lr_ratio``.

    A move from or to a NaN or an infinity (a diverged run) is not a lattice move: ``changed``,
    ``sites`` and ``hop`` are -1 there, it is in none of the per-class fractions (taken over the
    tokens whose move is defined; NaN where none is), and it keeps the token from freezing.
    ``nonfinite_frame`` marks the frames where a selected token holds one.

    ``per_token`` chooses how the per-(frame, token) variables are made: ``"memory"`` computes them
    in the one streaming pass and holds them (12 bytes per frame and token), ``"lazy"`` makes dask
    arrays that read the movie again when computed (memory independent of the number of frames),
    ``"auto"`` holds them up to ``tokendyn.analysis._frames.IN_MEMORY_BYTES`` (256 MiB).
    """
    name = "lattice_motion"
    sub, rows, positions = selection(ds, tokens, frames, min_frames=2)
    _require_bits(sub)
    tolerance = min(int(tolerance), len(positions))  # no token makes more hops than there are frames
    source = StoredFrames(ds)
    n_tokens = rows.size
    steps = sub[fmt.STEP].values
    classes = sub[fmt.TOKEN_CLASS].values
    groups, names = class_groups(classes)
    coords = {**frame_coords(sub), fmt.DIM_TOKEN: sub[fmt.DIM_TOKEN].values,
              fmt.TOKEN_CLASS: (fmt.DIM_TOKEN, classes)}

    # per (frame, token): from the streaming pass below, or lazy (one more read of the movie when computed)
    stacked, collected = per_token_array(per_token, source, positions, _token_block, rows, tail=(n_tokens, 3),
                                         dtype=np.int32, field="per_token", before=1)
    out = xr.Dataset(coords=coords)
    # one streaming pass: per (frame, class) sums and each token's last moves
    depth = tolerance + 1
    parts = stream(source, positions, _stream_block, rows, groups, len(names), depth, collected is not None,
                   before=1, progress=progress, sink=collected)
    got = merge(parts, _MERGE)
    sums, (last, small) = got["class_sums"], got["last_moves"]
    defined = sums[..., 3]
    changed, sites, hop = stacked[..., 0], stacked[..., 1], stacked[..., 2].astype(np.int8)
    out["changed"] = annotate(xr.DataArray(changed, dims=("frame", "token")),
                              "coordinates that changed since the previous frame", "1")
    out["sites"] = annotate(xr.DataArray(sites, dims=("frame", "token")),
                            "lattice sites moved, summed over coordinates",
                            "sites")
    out["moved"] = annotate(xr.DataArray(changed > 0, dims=("frame", "token")), "token moved", "1")
    out["hop"] = annotate(xr.DataArray(hop, dims=("frame", "token")),
                          "0 still, 1 lattice-scale hop (all coordinates within 1 site), 2 larger motion, "
                          "-1 from or to a NaN or an infinity", "1")
    out["hop"].attrs.update(flag_values=[-1, 0, 1, 2], flag_meanings="nonfinite still lattice_hop larger_motion")

    n_frames = len(steps)
    freeze_frame = _freeze_frames(last, small, tolerance, n_frames)
    freeze_step = np.where(np.isnan(freeze_frame), np.nan, steps[np.nan_to_num(freeze_frame).astype(int)])
    out["freeze_step"] = annotate(xr.DataArray(freeze_step, dims=("token",)),
                                  "step after which the token's bits never change again", "steps")
    out["freeze_frame"] = annotate(xr.DataArray(freeze_frame, dims=("token",)), "frame of freezing", "frames")

    cls = xr.Variable("class", names)
    per_class = {name: groups == g for g, name in enumerate(names)}
    count = np.array([per_class[name].sum() for name in names], float)
    defined[0] = count  # the first frame has no move to it: each fraction is 0 there

    def by_class(v: np.ndarray) -> xr.DataArray:
        share = np.full(v.shape, np.nan)
        np.divide(v, defined, out=share, where=defined > 0)
        return xr.DataArray(share, dims=("frame", "class"), coords={"class": cls})

    out["temperature"] = annotate(by_class(sums[..., 0]),
                                  "temperature: mean squared lattice sites moved per coordinate", "sites^2")
    median = got["temperature_median"]
    out["temperature_median"] = annotate(
        xr.DataArray(median[..., 0], dims=("frame", "class"), coords={"class": cls}),
        "median over the class's tokens of each token's mean squared lattice sites moved per coordinate "
        "(robust to the few coordinates that cross or touch zero)", "sites^2")
    out["temperature_median_error"] = annotate(
        xr.DataArray(median[..., 1], dims=("frame", "class"), coords={"class": cls}),
        "standard error of temperature_median: the half-width of its distribution-free 95% order-statistic "
        "interval over 1.96", "sites^2")
    out["moving_fraction"] = annotate(by_class(sums[..., 1]), "fraction of tokens that moved", "1")
    out["hop_fraction"] = annotate(by_class(sums[..., 2]), "fraction of tokens making a lattice-scale hop", "1")
    frames_idx = np.arange(n_frames)
    # frozen at frame t: freeze frame <= t (a count from the sorted freeze frames, not a frames x tokens mask)
    frozen = np.stack([
        np.searchsorted(np.sort(freeze_frame[per_class[name]]), frames_idx, side="right") / count[j]
        for j, name in enumerate(names)], axis=1)
    out["frozen_fraction"] = annotate(xr.DataArray(frozen, dims=("frame", "class"), coords={"class": cls}),
                                      "fraction of tokens frozen for good", "1")
    onset = np.full((len(names), len(thresholds)), np.nan)
    for j in range(len(names)):
        for k, threshold in enumerate(thresholds):
            hit = np.flatnonzero(frozen[:, j] >= threshold)
            if hit.size:
                onset[j, k] = steps[hit[0]]
    out["freeze_onset"] = annotate(
        xr.DataArray(onset, dims=("class", "threshold"), coords={"class": cls, "threshold": list(thresholds)}),
        "fimbulwinter: first step at which the frozen fraction reaches the threshold", "steps")
    # the same over every selected token, whatever its class
    everyone = _frozen_all(freeze_frame, n_frames)
    onset_all = np.full(len(thresholds), np.nan)
    onset_frame = np.full((len(names) + 1, len(thresholds)), -1, np.int64)
    for k, threshold in enumerate(thresholds):
        for j in range(len(names) + 1):
            hit = np.flatnonzero((frozen[:, j] if j < len(names) else everyone) >= threshold)
            if hit.size:
                onset_frame[j, k] = hit[0]
        if onset_frame[-1, k] >= 0:
            onset_all[k] = steps[onset_frame[-1, k]]
    out["freeze_onset_all"] = annotate(
        xr.DataArray(onset_all, dims=("threshold",), coords={"threshold": list(thresholds)}),
        "first step at which the frozen fraction of the selected tokens (all classes) reaches the threshold",
        "steps")
    # the uncertainties: binomial for a fraction, a bootstrap over the tokens for an onset (a quantile
    # of their freeze steps)
    last_fraction = frozen[-1]
    out["frozen_fraction_last_error"] = annotate(
        xr.DataArray(np.sqrt(last_fraction * (1 - last_fraction) / count), dims="class", coords={"class": cls}),
        "binomial standard error of the last frame's frozen fraction, sqrt(f (1 - f) / tokens)", "1")
    out["freeze_onset_error"] = annotate(
        xr.DataArray(np.stack([onset_errors(freeze_frame[per_class[name]], steps, thresholds, onset[j])
                               for j, name in enumerate(names)]),
                     dims=("class", "threshold"), coords={"class": cls, "threshold": list(thresholds)}),
        "standard error of the freeze onset (bootstrap over the class's tokens)", "steps")
    out["freeze_onset_all_error"] = annotate(
        xr.DataArray(onset_errors(freeze_frame, steps, thresholds, onset_all), dims=("threshold",),
                     coords={"threshold": list(thresholds)}),
        "standard error of the freeze onset of the selected tokens (bootstrap over the tokens)", "steps")
    masks = [per_class[n] for n in names] + [np.ones(n_tokens, bool)]
    causes, attrs = onset_causes(ds, sub, rows, positions, masks, onset_frame, freeze_step, [*names, "all"],
                                 list(thresholds))
    for var, value in causes.items():
        out[var] = value
    out = base.mark_nonfinite(out, got["nonfinite"] > 0)
    return finish(out, name, tolerance=tolerance, **attrs)


ONSET_BATCH = 4_000_000  # bootstrap draws x distinct freeze frames held at once by onset_errors


def onset_errors(freeze_frame: np.ndarray, steps: np.ndarray, thresholds: Sequence[float],
                 onsets: np.ndarray) -> np.ndarray:
    """The bootstrap standard error of each freeze onset of one group of tokens.

    The onset at threshold q is the first frame whose frozen fraction reaches q, a quantile of the
    tokens' freeze frames (NaN: never frozen). Resampling the tokens with replacement is drawing
    the counts of their distinct freeze frames from a multinomial (:data:`RESAMPLES` draws, the
    seed of :mod:`tokendyn.stats.bootstrap`); the error is the standard deviation of the resampled
    onsets, as steps, over the draws that reach q. NaN where the onset itself is NaN, or fewer
    than two draws reach q; 0 where every draw gives the same frame.
    """
    out = np.full(len(thresholds), np.nan)
    n = freeze_frame.size
    if n == 0 or not np.isfinite(onsets).any():
        return out
    frozen = freeze_frame[np.isfinite(freeze_frame)].astype(np.int64)
    values, counts = np.unique(frozen, return_counts=True)
    probability = np.append(counts, n - frozen.size) / n  # the last bin: never frozen
    rng = np.random.default_rng(SEED)
    per_batch = max(1, ONSET_BATCH // probability.size)
    drawn: list[list[np.ndarray]] = [[] for _ in thresholds]
    for first in range(0, RESAMPLES, per_batch):
        draws = rng.multinomial(n, probability, size=min(per_batch, RESAMPLES - first))
        fraction = np.cumsum(draws[:, :-1], axis=1) / n  # frozen fraction at each distinct freeze frame
        for k, threshold in enumerate(thresholds):
            if not np.isfinite(onsets[k]) or float(threshold) <= 0 or values.size == 0:
                continue
            reached = fraction >= threshold
            hit = reached.any(axis=1)
            drawn[k].append(steps[values[np.argmax(reached[hit], axis=1)]])
    for k in range(len(thresholds)):
        if np.isfinite(onsets[k]) and float(thresholds[k]) <= 0:
            out[k] = 0.0  # reached at the first frame by every draw
        elif drawn[k]:
            got = np.concatenate(drawn[k]).astype(np.float64)
            out[k] = float(got.std(ddof=1)) if got.size >= 2 else np.nan
    return out




def _token_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray) -> np.ndarray:
    return K.lattice_tokens(block, lead, rows)


def _stream_block(block: np.ndarray, lead: int, start: int, rows: np.ndarray, groups: np.ndarray,
                  n_groups: int, depth: int, keep: bool) -> dict[str, Any]:
    sums, last, small, per, nonfinite = K.lattice_stream(block, lead, start, rows, groups, n_groups, depth, keep)
    return {"class_sums": sums, "last_moves": (last, small), "per_token": per, "nonfinite": nonfinite,
            "temperature_median": temperature_medians(block, lead, rows, groups, n_groups)}


#: z of the two-sided 95% interval: the median's order-statistic interval's half-width over it is its SE
_Z95 = 1.959963984540054


def median_and_error(values: np.ndarray) -> tuple[float, float]:
    """The median of ``values`` and its distribution-free standard error: the half-width of the 95%
    interval between the order statistics of ranks ``n/2 -+ 1.96 sqrt(n)/2`` (the binomial interval
    of the median) over 1.96. NaN for no value; the error is NaN below 3 values."""
    n = values.size
    if n == 0:
        return np.nan, np.nan
    x = np.sort(values)
    median = float(np.median(x))
    if n < 3:
        return median, np.nan
    half = _Z95 * np.sqrt(n) / 2
    lo = x[max(int(np.floor(n / 2 - half)), 0)]
    hi = x[min(int(np.ceil(n / 2 + half)), n - 1)]
    return median, float(hi - lo) / (2 * _Z95)


def temperature_medians(block: np.ndarray, lead: int, rows: np.ndarray, groups: np.ndarray,
                        n_groups: int) -> np.ndarray:
    """Per frame after the context and group: the median over the group's tokens of each token's
    temperature (``sum_k sites_k^2 / dim`` of its move from the frame before) and its error
    (:func:`median_and_error`), float64 (frame, group, 2). Tokens whose move is from or to a NaN or
    an infinity are left out; the selection's first frame has no move (0, as the mean there)."""
    m, _, d = block.shape
    out = np.full((m - lead, n_groups, 2), np.nan)
    if lead == 0 and m > 0:
        out[0] = 0.0
    first = max(lead, 1)
    if first >= m:
        return out
    members = [np.flatnonzero(groups == g) for g in range(n_groups)]

    def lattice(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bits = frame[rows].astype(np.int64)
        magnitude = bits & 0x7FFF
        return np.where(bits >> 15 == 1, -magnitude, magnitude), (magnitude >= K.NONFINITE_BITS).any(axis=1)

    before, bad_before = lattice(block[first - 1])
    for t in range(first, m):
        now, bad = lattice(block[t])
        moved = (now - before).astype(np.float64)
        q = (moved * moved).sum(axis=1) / d
        ok = ~(bad | bad_before)
        for g, idx in enumerate(members):
            out[t - lead, g] = median_and_error(q[idx[ok[idx]]])
        before, bad_before = now, bad
    return out


def _freeze_frames(last: np.ndarray, small: np.ndarray, tolerance: int, n_frames: int) -> np.ndarray:
    """Frame at which each token takes its final bits, allowing ``tolerance`` later +-1 hops, from
    the frames of each token's last ``tolerance + 1`` moves (latest first) and whether each was an
    isolated +-1 hop."""
    n_tokens, depth = last.shape
    freeze = np.zeros(n_tokens)
    for i in range(n_tokens):
        frame = 0
        tolerated = 0
        for j in range(depth):
            f = last[i, j]
            if f < 0:
                break
            if small[i, j] and tolerated < tolerance:
                tolerated += 1
                continue
            frame = f
            break
        freeze[i] = frame
    # a token whose final bits only appear at the last frame has not been seen to freeze
    freeze[freeze == n_frames - 1] = np.nan
    return freeze


# --- in the report and the train summary --------------------------------------------------------

def _applies(ds: xr.Dataset, tokens: TokenSelection) -> bool:
    """Only a bfloat16 movie has a lattice (its raw bits); a move needs two frames."""
    return "W_bits" in ds and base.enough(ds, tokens, min_frames=2)


add(Analysis("lattice", lattice_motion, order=50, applies=_applies, headline=_headline,
             headline_fields=_headline_fields, summary_lines=_summary_lines,
             figures=_figures, curves=_curves, token_values=_token_values, events=_events))
