"""Why the training steps stop early: a termination signal, or a loss that is no longer a number."""
from __future__ import annotations

import math
import signal
import threading
from types import FrameType
from typing import Any

import torch

from tokendyn.errors import TokendynError


class TrainingDiverged(TokendynError):
    """The loss or the gradient norm became NaN or infinite: the run cannot go on."""


class StopSignals:
    """While entered, Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the step in progress.

    The handler only sets :attr:`received`; the loop looks at it between steps, so a stop never
    lands between an optimizer update and the step count, inside a frame's capture or a
    checkpoint's write: the checkpoint written after it matches the weights. A second Ctrl-C
    raises ``KeyboardInterrupt`` at once (a loop stuck in one step). The previous handlers are put
    back on exit. Signals can only be handled in the main thread: elsewhere (a sweep's worker
    thread) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None  # the name of the signal that asked to stop
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *_exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}


class DivergenceWatch:
    """Notice the first step whose loss or gradient norm is not finite.

    On a CPU each step is checked as it ends (reading a CPU scalar costs nothing). On an
    accelerator, reading the loss would wait for the device, so the first bad step is kept on the
    device and :meth:`check` reads it when the loop reads the loss anyway (the progress bar, a
    checkpoint, the end).

    Parameters
    ----------
    device
        Where the loss lives.
    movie
        The movie being recorded, named in the error (``None`` without one).
    """

    def __init__(self, device: torch.device, movie: str | None):
        self.movie = movie
        self.eager = device.type == "cpu"
        self._first_bad: torch.Tensor | None = None if self.eager else torch.full((), -1, dtype=torch.int64,
                                                                                   device=device)
        self._bad_values: torch.Tensor | None = None

    def update(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Look at the loss and the gradient norm of ``step`` (raises at once on a CPU)."""
        loss, grad_norm = loss.detach().float(), grad_norm.detach().float().to(loss.device)
        if self.eager:
            if not (math.isfinite(float(loss)) and math.isfinite(float(grad_norm))):
                raise self._error(step, float(loss), float(grad_norm))
            return
        assert self._first_bad is not None
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        first = (self._first_bad < 0) & ~finite
        self._first_bad = torch.where(first, torch.full_like(self._first_bad, step), self._first_bad)
        values = torch.stack([loss, grad_norm])
        self._bad_values = values if self._bad_values is None else torch.where(first, values, self._bad_values)

    def check(self) -> None:
        """Raise :class:`TrainingDiverged` if a step seen so far diverged (waits for the device)."""
        if self._first_bad is None or int(self._first_bad) < 0:
            return
        assert self._bad_values is not None
        loss, grad_norm = (float(v) for v in self._bad_values.cpu())
        raise self._error(int(self._first_bad), loss, grad_norm)

    def _error(self, step: int, loss: float, grad_norm: float) -> TrainingDiverged:
        return TrainingDiverged(
            f"the loss diverged at step {step} (loss {loss:.4g}, gradient norm {grad_norm:.4g}): lower the "
            "learning rate (lr) or clip the gradients (grad_clip); the movie keeps its frames up to there, and no "
            "checkpoint is written for the diverged weights",
            self.movie)
