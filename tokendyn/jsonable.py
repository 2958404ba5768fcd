"""Values made JSON-friendly: numpy scalars and arrays to Python, NaN and infinities to ``None``."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def number(value: Any) -> Any:
    """One value JSON-friendly: a numpy scalar to Python, a non-finite float to ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonable(value: Any) -> Any:
    """``value`` JSON-friendly all the way down (mappings, sequences, numpy arrays, named tuples
    with ``as_dict``)."""
    if hasattr(value, "as_dict"):
        return jsonable(value.as_dict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return number(value)
