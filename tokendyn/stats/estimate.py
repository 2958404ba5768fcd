"""A measured number with its uncertainty, and how tokendyn writes one."""
from __future__ import annotations

import math
from typing import Any, NamedTuple


class Estimate(NamedTuple):
    """A number with its uncertainty.

    Attributes
    ----------
    value : float
        The estimate (a mean, a fraction, ...).
    error : float
        Its standard error (NaN where it cannot be estimated, e.g. from one sample).
    low, high : float
        The bounds of its confidence interval at :attr:`confidence`.
    confidence : float
        The interval's confidence level (e.g. 0.95).
    n : int
        How many samples it is made from (tokens, blocks, runs: :attr:`method` says).
    method : str
        How the uncertainty was found, in words (e.g. ``"bootstrap over 184 tokens"``).
    """

    value: float
    error: float
    low: float
    high: float
    confidence: float
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: NaN as ``None``."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self._asdict().items()}

    def __format__(self, spec: str) -> str:
        return plus_minus(self.value, self.error, spec or ".4g")


def plus_minus(value: float, error: float, spec: str = ".4g") -> str:
    """``"0.905 ± 0.012"``: the error with two significant figures, the value to the same decimal
    place where the error is finite; the value alone (in ``spec``) where it is not."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    if error is None or not math.isfinite(float(error)) or error <= 0:
        return format(float(value), spec) + ("" if error is None or error == 0 else " ± n/a")
    digits = 1 - int(math.floor(math.log10(float(error))))
    if round(float(error), digits) >= 10.0 ** (2 - digits):  # 0.0996 rounds to 0.10, not 0.100
        digits -= 1
    digits = max(0, digits)
    if abs(value) >= 1e5 or digits > 8:
        return f"{float(value):.3g} ± {float(error):.2g}"
    return f"{float(value):.{digits}f} ± {float(error):.{digits}f}"
