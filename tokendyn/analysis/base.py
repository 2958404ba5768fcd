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
5. **Option errors.** :func:`check_option` and :func:`check_choice` raise
   :class:`~tokendyn.errors.AnalysisError` naming the movie and the option.

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

from ._frames import StoredFrames, decoded, frame_positions, lazy, per_token_array, stream

__all__ = ["TokenSelection", "FrameRange", "Selected", "BlockKernel", "Reducer", "select", "selection",
           "token_mask", "merge", "finish", "check_result", "check_option", "check_choice", "is_whole",
           "is_number", "movie_path", "annotate", "class_groups", "frame_coords", "StoredFrames", "stream",
           "lazy", "per_token_array", "decoded"]

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


def movie_path(ds: xr.Dataset) -> str | None:
    """The file a Dataset was opened from, for error messages (``None`` for one made in memory)."""
    return ds.encoding.get("source")


def token_mask(ds: xr.Dataset, tokens: TokenSelection = "all") -> np.ndarray:
    """Boolean mask over the Dataset's tokens for a selection."""
    n = ds.sizes[fmt.DIM_TOKEN]
    if tokens is None or (isinstance(tokens, str) and tokens == "all"):
        return np.ones(n, bool)
    if isinstance(tokens, str):
        if tokens not in fmt.TOKEN_CLASSES:
            raise AnalysisError(f"unknown token class {tokens!r}; use all, live, dead, phantom, ids or a mask",
                                movie_path(ds))
        return ds[fmt.TOKEN_CLASS].values == fmt.class_code(tokens)
    arr = np.asarray(tokens)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise AnalysisError(f"a token mask needs {n} entries, got {arr.shape}", movie_path(ds))
        return arr
    ids = ds[fmt.DIM_TOKEN].values
    mask = np.isin(ids, arr.astype(np.int64))
    missing = np.setdiff1d(arr, ids)
    if missing.size:
        raise AnalysisError(f"token ids not in the movie: {missing[:5].tolist()}", movie_path(ds))
    return mask


def select(ds: xr.Dataset, tokens: TokenSelection = "all", frames: FrameRange = None,
           min_tokens: int = 1, min_frames: int = 1) -> xr.Dataset:
    """The movie cut to a token selection and a frame range (``slice`` or ``(start, stop)``)."""
    return _select(ds, token_mask(ds, tokens), tokens, frames, min_tokens, min_frames)


def _select(ds: xr.Dataset, mask: np.ndarray, tokens: TokenSelection, frames: FrameRange,
            min_tokens: int, min_frames: int) -> xr.Dataset:
    if "W" not in ds:
        raise AnalysisError("the Dataset has no W; open it with tokendyn.open_movie", movie_path(ds))
    if mask.sum() < min_tokens:
        raise AnalysisError(f"the selection {tokens!r} holds {int(mask.sum())} tokens; this analysis needs {min_tokens}",
                            movie_path(ds))
    sub = ds.isel({fmt.DIM_TOKEN: np.flatnonzero(mask)})
    if frames is not None:
        if isinstance(frames, tuple):
            frames = slice(*frames)
        sub = sub.isel({fmt.DIM_FRAME: frames})
    if sub.sizes[fmt.DIM_FRAME] < min_frames:
        raise AnalysisError(f"the frame range holds {sub.sizes[fmt.DIM_FRAME]} frames; this analysis needs {min_frames}",
                            movie_path(ds))
    return sub


def selection(ds: xr.Dataset, tokens: TokenSelection = "all", frames: FrameRange = None,
              min_tokens: int = 1, min_frames: int = 1) -> Selected:
    """:func:`select`, plus the positions of the selected tokens (``rows``) and frames
    (``positions``) in ``ds``: what the kernels index the stored frames with."""
    mask = token_mask(ds, tokens)
    sub = _select(ds, mask, tokens, frames, min_tokens, min_frames)
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


def is_whole(value: Any, minimum: int | None = None) -> bool:
    """Whether ``value`` is a whole number (not a bool, not a float), at least ``minimum``."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    return whole and (minimum is None or value >= minimum)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (an int or a float, not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_option(ds: xr.Dataset, analysis: str, option: str, value: Any, ok: bool, expected: str) -> None:
    """Unless ``ok``: :class:`~tokendyn.errors.AnalysisError` ``"MOVIE: ANALYSIS's OPTION must be
    EXPECTED, not VALUE"``."""
    if not ok:
        raise AnalysisError(f"{analysis}'s {option} must be {expected}, not {value!r}", movie_path(ds))


def check_choice(ds: xr.Dataset, analysis: str, option: str, value: Any, choices: Sequence[str]) -> None:
    """:func:`check_option` for an option that takes one of a few words."""
    quoted = [repr(c) for c in choices]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    check_option(ds, analysis, option, value, isinstance(value, str) and value in choices, expected)


def class_groups(classes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per token the index of its class among the classes present, and those classes' names."""
    present = [code for code in range(len(fmt.TOKEN_CLASSES)) if (classes == code).any()]
    lookup = np.full(len(fmt.TOKEN_CLASSES), -1, np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[classes.astype(np.int64)], [fmt.TOKEN_CLASSES[c] for c in present]


def annotate(var: xr.DataArray, long_name: str, units: str) -> xr.DataArray:
    """``var`` with its ``long_name`` and ``units`` set (``units="1"`` for a pure number)."""
    var.attrs.update(long_name=long_name, units=units)
    return var


def frame_coords(sub: xr.Dataset) -> dict[str, Any]:
    """The ``frame`` and ``step`` coordinates of a selection, for a result's per-frame variables."""
    return {fmt.DIM_FRAME: sub[fmt.DIM_FRAME].values, fmt.STEP: (fmt.DIM_FRAME, sub[fmt.STEP].values)}
