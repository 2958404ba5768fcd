"""The one pattern every analysis follows (the page "Writing an analysis" walks through it).

An analysis is a function ``fn(ds, tokens="all", *, frames=None, <its options>, progress=None)``
that returns an :class:`xarray.Dataset`, registered once with
:func:`tokendyn.analysis.registry.register`. Its steps, each a piece of this module:

1. **Selection in.** :func:`selection` cuts the movie to a :data:`TokenSelection` and a
   :data:`FrameRange`, lazily, and gives the rows and frame positions the kernels index.
2. **A kernel per block.** :func:`stream` runs one :class:`BlockKernel`,
   ``kernel(block, lead, start, *args)``, on every block of stored frames (one streaming pass, memory
   independent of the number of frames); :func:`lazy` makes a dask array of one instead.
3. **Merged by name.** A kernel returns its block's results as a dict of named fields;
   :func:`merge` combines the blocks field by field, as the analysis declares for each
   (``"concat"`` along frames, ``"sum"``, ``"skip"``, or a function of the list).
4. **A named Dataset out.** :func:`finish` names the result (``attrs["analysis"]``) and checks that
   every variable carries ``long_name`` and ``units`` (:func:`annotate` sets them).
5. **Options checked.** :func:`accepts` declares a :class:`Rule` per option (:func:`whole`,
   :func:`number`, :func:`choice`, :func:`sequence`, :func:`token_rule`) and checks them before
   the analysis runs; a value they refuse, and any tokendyn error raised while it runs, is an
   :class:`~tokendyn.errors.AnalysisError` naming the movie (:func:`check_option` for checks
   that need the movie, e.g. a frame index inside it).
6. **Diverged frames marked.** :func:`mark_nonfinite` adds ``nonfinite_frame(frame)``: where W
   held a NaN or an infinity the analysis read. Per-frame results are NaN there; sums over
   frames leave out the steps that are not finite.

Per-(frame, token) results come from the same pass when they fit
:data:`~tokendyn.analysis._frames.IN_MEMORY_BYTES` (:func:`per_token_array`), else stay lazy.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError

from ._frame_range import describe_frames, frame_positions, frame_slice
from ._frames import StoredFrames, decoded, lazy, per_token_array, stream
from ._options import Rule, accepts, check_option, choice, is_number, is_whole, movie_path, number, sequence, shown, whole
from ._options import tokens as token_rule

__all__ = ["TokenSelection", "FrameRange", "Selected", "BlockKernel", "Reducer", "select", "selection",
           "token_mask", "merge", "finish", "check_result", "check_option", "check_choice", "is_whole",
           "is_number", "movie_path", "annotate", "class_groups", "frame_coords", "StoredFrames", "stream",
           "lazy", "per_token_array", "decoded", "Rule", "accepts", "whole", "number", "choice", "sequence",
           "token_rule", "mark_nonfinite", "enough"]

TokenSelection: TypeAlias = str | Sequence[int] | npt.NDArray[np.bool_] | npt.NDArray[np.integer] | None
"""Which tokens: ``"all"`` (or ``None``), a class name (``"live"``, ``"dead"``, ``"phantom"``),
token ids, or a boolean mask with one entry per token of the movie."""

FrameRange: TypeAlias = slice | tuple[int | None, ...] | None
"""Which frames: a ``slice`` of frame positions, ``(start, stop[, step])``, or ``None`` for all."""

Reducer: TypeAlias = Literal["concat", "sum", "skip"] | Callable[[list], Any]
"""How :func:`merge` combines one field over the blocks: ``"concat"`` (along the first axis, in
frame order), ``"sum"`` (added in block order), ``"skip"`` (not merged: taken by a sink, or empty),
or a function of the list of the blocks' values."""


class Selected(NamedTuple):
    """A selection: the cut Dataset, the selected tokens' rows and frames' positions in the movie."""

    sub: xr.Dataset
    rows: np.ndarray
    positions: np.ndarray


class BlockKernel(Protocol):
    """The one callback signature of a per-block kernel: ``kernel(block, lead, start, *args)``.

    Parameters
    ----------
    block : numpy.ndarray
        ``(lead + frames, tokens, dim)`` stored frames, read-only: bfloat16 bit patterns as
        ``uint16`` (:func:`decoded` gives float32; numba kernels decode value by value with
        ``tokendyn.analysis._kernel_base.value``) or float32. Its rows are all the movie's tokens:
        index them with the ``rows`` of :func:`selection`.
    lead : int
        How many of the first frames are context, the frames before the first analysed one
        (``min(before, start)``, ``before`` as given to :func:`stream`); ``block[lead:]`` are the
        frames analysed.
    start : int
        The position of ``block[lead]`` among the selected frames (0 in the first block).
    *args
        The extra arguments given to :func:`stream` or :func:`lazy`, as they were given.

    Returns
    -------
    dict or numpy.ndarray
        Under :func:`stream`: the block's results as named fields (a ``dict``), combined with
        :func:`merge`. Under :func:`lazy`: the ``(frames, *tail)`` array of the analysed frames.

    Blocks run on several threads at once (or on dask workers): a kernel must not change shared
    state, and runs in parallel only where it releases the GIL (numba ``nogil=True``, numpy).
    """

    def __call__(self, block: np.ndarray, lead: int, start: int, /, *args: Any) -> Any: ...


def token_mask(ds: xr.Dataset, tokens: TokenSelection = "all", what: str = "the token selection") -> np.ndarray:
    """Boolean mask over the Dataset's tokens for a selection (``what`` names it in errors, e.g.
    ``"comoving_displacement's reference"``)."""
    n = ds.sizes[fmt.DIM_TOKEN]
    if tokens is None or (isinstance(tokens, str) and tokens == "all"):
        return np.ones(n, bool)
    if isinstance(tokens, str):
        if tokens not in fmt.TOKEN_CLASSES:
            raise AnalysisError(f"unknown token class {shown(tokens)} in {what}; use all, live, dead, phantom, "
                                "token ids or a mask", movie_path(ds))
        return ds[fmt.TOKEN_CLASS].values == fmt.class_code(tokens)
    if not token_rule().fits(tokens):
        raise AnalysisError(f"{what} must be {token_rule().expected}, not {shown(tokens)}", movie_path(ds))
    arr = np.atleast_1d(np.asarray(tokens))
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise AnalysisError(f"{what} is a mask of {arr.size} entries; a token mask needs {n} (one per token)",
                                movie_path(ds))
        return arr
    ids = ds[fmt.DIM_TOKEN].values
    missing = np.setdiff1d(arr, ids) if arr.size else arr
    if missing.size:
        raise AnalysisError(f"{what} holds token ids not in the movie (ids 0..{n - 1}): {shown(missing[:5].tolist())}",
                            movie_path(ds))
    return np.isin(ids, arr.astype(np.int64))


def select(ds: xr.Dataset, tokens: TokenSelection = "all", frames: FrameRange = None,
           min_tokens: int = 1, min_frames: int = 1) -> xr.Dataset:
    """The movie cut to a token selection and a frame range (``slice`` or ``(start, stop)``)."""
    return _select(ds, token_mask(ds, tokens), tokens, frames, min_tokens, min_frames)


def _select(ds: xr.Dataset, mask: np.ndarray, tokens: TokenSelection, frames: FrameRange,
            min_tokens: int, min_frames: int, what: str = "the token selection") -> xr.Dataset:
    if "W" not in ds:
        raise AnalysisError("the Dataset has no W; open it with tokendyn.open_movie", movie_path(ds))
    held = int(mask.sum())
    if held < min_tokens:
        raise AnalysisError(f"{what} {shown(tokens)} holds {held} of the movie's {mask.size} tokens; "
                            f"this analysis needs at least {min_tokens}", movie_path(ds))
    cut = frame_slice(ds, frames)
    sub = ds.isel({fmt.DIM_TOKEN: np.flatnonzero(mask), fmt.DIM_FRAME: cut})
    held, total = sub.sizes[fmt.DIM_FRAME], ds.sizes[fmt.DIM_FRAME]
    if held < min_frames:
        which = f"the movie holds {total}" if cut == slice(None) else \
            f"the frames {describe_frames(cut)} hold {held} of the movie's {total}"
        raise AnalysisError(f"{which} frames; this analysis needs at least {min_frames}", movie_path(ds))
    return sub


def enough(ds: xr.Dataset, tokens: TokenSelection = "all", min_tokens: int = 1, min_frames: int = 1) -> bool:
    """Whether a selection of the movie holds enough tokens and frames for an analysis (an
    :attr:`~tokendyn.analysis.registry.Analysis.applies` for the report and the summaries)."""
    return int(token_mask(ds, tokens).sum()) >= min_tokens and ds.sizes[fmt.DIM_FRAME] >= min_frames


def selection(ds: xr.Dataset, tokens: TokenSelection = "all", frames: FrameRange = None,
              min_tokens: int = 1, min_frames: int = 1, what: str = "the token selection") -> Selected:
    """:func:`select`, plus the positions of the selected tokens (``rows``) and frames
    (``positions``) in ``ds``: what the kernels index the stored frames with. ``what`` names the
    token selection in errors (e.g. ``"comoving_displacement's reference"``)."""
    mask = token_mask(ds, tokens, what)
    sub = _select(ds, mask, tokens, frames, min_tokens, min_frames, what)
    return Selected(sub, np.flatnonzero(mask).astype(np.int64), frame_positions(ds, frames))


def merge(parts: Sequence[Mapping[str, Any]], how: Mapping[str, Reducer]) -> dict[str, Any]:
    """The blocks' results of one pass (from :func:`stream`, in frame order) combined field by
    field, by name, as ``how`` declares for each field (see :data:`Reducer`).

    Raises :class:`TypeError` when a block's fields are not exactly those declared (a kernel and
    its merge that disagree are a bug, not something a user can fix)."""
    for index, part in enumerate(parts):
        if set(part) != set(how):
            raise TypeError(f"block {index} returned the fields {sorted(part)}, but the merge declares {sorted(how)}")
    out: dict[str, Any] = {}
    for name, reducer in how.items():
        values = [part[name] for part in parts]
        if reducer == "skip":
            continue
        if reducer == "concat":
            out[name] = np.concatenate(values)
        elif reducer == "sum":
            out[name] = sum(values)
        elif callable(reducer):
            out[name] = reducer(values)
        else:
            raise TypeError(f"unknown reducer {reducer!r} for the field {name!r}; use 'concat', 'sum', 'skip' or a function")
    return out


def check_result(out: Any, analysis: str) -> None:
    """Raise :class:`TypeError` unless ``out`` is an :class:`xarray.Dataset` whose every variable
    has a ``long_name`` and ``units`` (``"1"`` for a pure number)."""
    if not isinstance(out, xr.Dataset):
        raise TypeError(f"{analysis} returned {type(out).__name__}, not an xarray.Dataset")
    bare = [name for name, var in out.data_vars.items() if not (var.attrs.get("long_name") and var.attrs.get("units"))]
    if bare:
        raise TypeError(f"{analysis} returned variables without long_name and units: {', '.join(map(str, bare))} "
                        "(set both with tokendyn.analysis.base.annotate)")


def finish(out: xr.Dataset, analysis: str, **attrs: Any) -> xr.Dataset:
    """An analysis's result, named (``attrs["analysis"] = analysis``, then ``attrs``) and checked
    with :func:`check_result`."""
    out.attrs.update(analysis=analysis, **attrs)
    check_result(out, analysis)
    return out


def check_choice(ds: xr.Dataset, analysis: str, option: str, value: Any, choices: Sequence[str]) -> None:
    """:func:`check_option` for an option that takes one of a few words."""
    rule = choice(*choices)
    check_option(ds, analysis, option, value, rule.fits(value), rule.expected)


def class_groups(classes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per token the index of its class among the classes present, and those classes' names."""
    present = [code for code in range(len(fmt.TOKEN_CLASSES)) if (classes == code).any()]
    lookup = np.full(len(fmt.TOKEN_CLASSES), -1, np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[classes.astype(np.int64)], [fmt.TOKEN_CLASSES[c] for c in present]


def mark_nonfinite(out: xr.Dataset, nonfinite: np.ndarray) -> xr.Dataset:
    """``out`` with the frames marked where the W values the analysis read held a NaN or an
    infinity (a diverged run): ``nonfinite_frame(frame)``, and their number in
    ``attrs["nonfinite_frames"]``."""
    flags = np.asarray(nonfinite, bool)
    out["nonfinite_frame"] = annotate(xr.DataArray(flags, dims=fmt.DIM_FRAME),
                                      "W held a NaN or an infinity where this analysis read it", "1")
    out.attrs["nonfinite_frames"] = int(flags.sum())
    return out


def annotate(var: xr.DataArray, long_name: str, units: str) -> xr.DataArray:
    """``var`` with its ``long_name`` and ``units`` set (``units="1"`` for a pure number)."""
    var.attrs.update(long_name=long_name, units=units)
    return var


def frame_coords(sub: xr.Dataset) -> dict[str, Any]:
    """The ``frame`` and ``step`` coordinates of a selection, for a result's per-frame variables."""
    return {fmt.DIM_FRAME: sub[fmt.DIM_FRAME].values, fmt.STEP: (fmt.DIM_FRAME, sub[fmt.STEP].values)}
