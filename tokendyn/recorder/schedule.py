"""Frame schedules: which optimizer steps become frames of the movie."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Schedule(Protocol):
    """Anything that says whether a step is recorded."""

    def __contains__(self, step: int) -> bool: ...


@dataclass(frozen=True)
class Every:
    """Record every ``n``-th step (step 0, the initialization, is always recorded)."""

    n: int = 1

    def __post_init__(self) -> None:
        if int(self.n) < 1:
            raise ValueError(f"Every(n) needs n >= 1, got {self.n}")

    def __contains__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class DenseThenSparse:
    """Record every step up to ``dense_until`` (inclusive), then every ``sparse_every``-th step.

    Early dynamics (the first ~100 steps) matter most, so they are recorded at full rate.
    """

    dense_until: int = 100
    sparse_every: int = 10

    def __post_init__(self) -> None:
        if self.dense_until < 0 or self.sparse_every < 1:
            raise ValueError("DenseThenSparse needs dense_until >= 0 and sparse_every >= 1")

    def __contains__(self, step: int) -> bool:
        return step <= self.dense_until or step % self.sparse_every == 0


class Steps:
    """Record exactly the listed steps."""

    def __init__(self, steps: Iterable[int]):
        self.steps = frozenset(int(s) for s in steps)
        if any(s < 0 for s in self.steps):
            raise ValueError("Steps() takes non-negative step numbers")

    def __contains__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self) -> str:
        return f"Steps({sorted(self.steps)})"


def parse_schedule(spec: str | int | Schedule | Iterable[int] | None) -> Schedule:
    """Build a schedule from a short spec.

    ``None`` or ``1``: every step; an int ``n``: every n steps; ``"dense:K,every:M"``: every step
    up to K then every M; ``"steps:0,5,10"``: exactly those; an iterable of ints: exactly those.
    """
    if spec is None:
        return Every(1)
    if isinstance(spec, int):
        return Every(spec)
    if isinstance(spec, str):
        text = spec.strip()
        if text.isdigit():
            return Every(int(text))
        if text.startswith("steps:"):
            return Steps(int(s) for s in text[6:].split(",") if s.strip())
        if text.startswith("dense:"):
            parts = dict(p.split(":") for p in text.split(","))
            return DenseThenSparse(int(parts["dense"]), int(parts.get("every", 10)))
        raise ValueError(
            f"unknown schedule {spec!r}; use N, 'dense:K,every:M' or 'steps:a,b,c'"
        )
    if hasattr(spec, "__contains__") and not isinstance(spec, (list, tuple, set, frozenset, range)):
        return spec  # type: ignore[return-value]
    return Steps(spec)  # type: ignore[arg-type]
