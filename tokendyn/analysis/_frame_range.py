"""Frame ranges of an analysis (``--frames 0:500``, a slice or ``(start, stop[, step])``), checked
and turned into positions on the Dataset's frame axis."""
from __future__ import annotations

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError

from ._options import shown


def frame_slice(ds: xr.Dataset, frames: slice | tuple | None) -> slice:
    """A frame range (``slice``, ``(start, stop[, step])`` or ``None``) as a slice of the Dataset's
    frame axis, checked: whole numbers or ``None``, running forward (a step of 1 or more)."""
    if frames is None:
        return slice(None)
    parts = frames if isinstance(frames, tuple) else (frames.start, frames.stop, frames.step) \
        if isinstance(frames, slice) else None
    whole = lambda v: v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)))  # noqa: E731
    if parts is None or not 1 <= len(parts) <= 3 or not all(whole(v) for v in parts):
        raise AnalysisError(f"frames must be a slice or (start, stop[, step]) of whole numbers, e.g. 0:500 or 0:500:10, "
                            f"not {shown(frames)}", ds.encoding.get("source"))
    cut = slice(*parts)
    if cut.step is not None and cut.step < 1:
        raise AnalysisError(f"the frames {describe_frames(cut)} must run forward (a step of 1 or more)",
                            ds.encoding.get("source"))
    return cut


def describe_frames(cut: slice) -> str:
    """``slice(5, 5)`` -> ``"5:5"`` (how ``--frames`` writes it)."""
    text = f"{'' if cut.start is None else cut.start}:{'' if cut.stop is None else cut.stop}"
    return text + (f":{cut.step}" if cut.step not in (None, 1) else "")


def frame_positions(ds: xr.Dataset, frames: slice | tuple | None) -> np.ndarray:
    """Positions on the Dataset's frame axis of a frame range (see :func:`frame_slice`)."""
    n = ds.sizes[fmt.DIM_FRAME]
    return np.arange(n, dtype=np.int64)[frame_slice(ds, frames)]
