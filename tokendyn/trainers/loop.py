"""The training steps: eager, or replayed from one CUDA graph, each evaluated, recorded and shown as
the config's schedules ask."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import TrainConfig
from .controls import TargetControl, decay_only_step
from .data import Batches, TokenData
from .evaluate import heldout_loss
from .graphed import GraphedStep
from .model import GPT
from .optim import lr_at
from .stopping import DivergenceWatch, StopSignals

if TYPE_CHECKING:
    from tokendyn.recorder import Recorder

SHOW_EVERY_SECONDS = 0.5  # how often the progress bar reads the loss (reading it waits for the device)


@dataclass
class Run:
    """What the steps run on, built by :func:`~tokendyn.trainers.train` before the first of them."""

    cfg: TrainConfig
    device: torch.device
    data: TokenData
    batches: Batches
    model: GPT
    forward_model: Callable  # the model, or its torch.compile wrapper: what the steps call
    optimizer: torch.optim.Optimizer
    lr_tensor: torch.Tensor | None  # the learning rate on the device, for a capturable optimizer
    autocast: Callable[[], Any]  # a context manager factory: bf16 autocast, or nothing
    cuda_graphs: bool  # capture the whole step as one CUDA graph
    start_step: int  # 0, or the checkpoint's step when resuming
    targets: TargetControl | None = None  # a target control (shuffled-/random-targets): trains on its targets
    decay_only: bool = False  # the lr-zero control: weight decay only, the gradient step dropped


@dataclass
class Reached:
    """Where the steps stopped and what they measured on the way."""

    step: int  # the last step completed
    loss: float  # the last finite training loss measured (of step loss_step; nan if none was)
    heldout: float  # the last held-out loss evaluated (nan if none was due)
    interrupted: bool
    seconds: float  # from the first step to the movie's last frame written
    stopped_by: str | None = None  # "SIGINT" (Ctrl-C) or "SIGTERM" when interrupted
    loss_step: int | None = None  # the step whose loss :attr:`loss` is (None: no loss measured)


def run_steps(run: Run, recorder: Recorder | None, *, progress: bool, say: Callable[[str], None],
              checkpoint: Callable[[int], None] | None = None, checkpoint_every: float = 0.0) -> Reached:
    """Train steps ``start_step + 1`` to ``cfg.steps``, recording the frame of step 0 first on a fresh run.

    Ctrl-C or SIGTERM stops after the step in progress (a second Ctrl-C at once). Every
    ``checkpoint_every`` seconds of wall time (0: never) ``checkpoint(step)`` is called after a
    step. A loss or gradient norm that is not finite raises
    :class:`~tokendyn.trainers.stopping.TrainingDiverged`. Whichever way the steps end, the
    progress bar and the recorder are closed (the movie keeps every frame captured); the time is
    taken after, so the throughput counts the writing of the last frames.
    """
    cfg, start = run.cfg, run.start_step
    capture = frame_capture(run, recorder)
    watch = DivergenceWatch(run.device, recorder.path if recorder is not None else None)
    stopped_by = None
    completed, done_loss = start, None  # the last step completed, and its loss
    seen: tuple[int, float] | None = None  # the last finite loss read (for the bar) and its step
    heldout = float("nan")
    t_start = time.perf_counter()
    shown = 0.0
    bar = None
    with StopSignals() as signals:
        try:
            if start == 0:
                completed, done_loss = 0, record_step_zero(run, capture)  # a Ctrl-C before step 1 still has a loss
            eager_only = run.targets is not None or run.decay_only  # controls the graphed step does not apply
            graphed = capture_graph(run, say) if run.cuda_graphs and not eager_only and cfg.steps > start else None
            if progress:
                bar = progress_bar(cfg.steps, start)
            t_start = time.perf_counter()  # throughput counts the steps, not the set-up before them
            checkpointed = time.monotonic()
            for step in range(start + 1, cfg.steps + 1):
                if signals.received:
                    stopped_by = signals.received
                    break
                lr = lr_at(step, base=cfg.lr, warmup=cfg.warmup, total=cfg.steps, schedule=cfg.schedule,
                           min_ratio=cfg.min_lr_ratio)
                if graphed is not None:
                    graphed(lr)
                    loss, grad_norm = graphed.loss, graphed.grad_norm
                else:
                    loss, grad_norm = eager_step(run, lr)
                extra = {}
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    heldout = extra["heldout_loss"] = heldout_loss(run.model, run.data, cfg, run.device, run.autocast)
                capture(step, loss, grad_norm, lr=lr, **extra)
                watch.update(step, loss, grad_norm)
                completed, done_loss = step, loss
                if time.perf_counter() - shown >= SHOW_EVERY_SECONDS or step == cfg.steps:
                    shown = time.perf_counter()
                    watch.check()  # on an accelerator: reads the device, as the bar does
                    value = float(loss.detach())
                    if math.isfinite(value):
                        seen = (step, value)
                    if bar is not None:
                        bar.set_postfix_str(progress_text(value, run.data.unigram_entropy, heldout), refresh=False)
                if bar is not None:
                    bar.update(1)
                if checkpoint is not None and checkpoint_every > 0 and step < cfg.steps \
                        and time.monotonic() - checkpointed >= checkpoint_every:
                    watch.check()  # never a checkpoint of diverged weights
                    checkpoint(step)
                    checkpointed = time.monotonic()
            watch.check()
        except KeyboardInterrupt:  # a second Ctrl-C, or one raised by the code: the step in progress is dropped
            stopped_by = "SIGINT"
        except BaseException:
            close_quietly(bar, recorder, say)  # the loop's own error is the one to see
            raise
        if stopped_by is not None:
            say(f"\ninterrupted ({stopped_by}): stopping cleanly at step {completed}")
        if bar is not None:
            bar.close()
        if recorder is not None:
            recorder.close()
    loss_value, loss_step = last_finite_loss(completed, done_loss, seen)
    return Reached(step=completed, loss=loss_value, heldout=heldout, interrupted=stopped_by is not None,
                   seconds=time.perf_counter() - t_start, stopped_by=stopped_by, loss_step=loss_step)


def last_finite_loss(step: int, loss: torch.Tensor | None, seen: tuple[int, float] | None) -> tuple[float, int | None]:
    """The loss to report and its step: that of the last step completed where it is finite, else
    the last finite one read on the way (``seen``), else NaN and ``None`` (no step measured one)."""
    value = float(loss.detach()) if loss is not None else float("nan")
    if math.isfinite(value):
        return value, step
    if seen is not None:
        return seen[1], seen[0]
    return float("nan"), None


def close_quietly(bar: Any, recorder: Recorder | None, say: Callable[[str], None]) -> None:
    """Close the bar and the recorder while another error is on its way; a recorder error is only told."""
    from tokendyn.errors import RecorderError

    if bar is not None:
        bar.close()
    if recorder is not None:
        try:
            recorder.close()
        except RecorderError as exc:
            say(f"(closing the movie also failed: {exc})")


def eager_step(run: Run, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step launched op by op: a batch from the host, forward, backward, clip, update.

    A target control replaces the batch's targets; ``lr-zero`` replaces the update by the weight
    decay alone (:func:`~tokendyn.trainers.controls.decay_only_step`). Returns the loss and the
    gradient norm as device tensors (the norm is 0 without clipping).
    """
    set_lr(run.optimizer, run.lr_tensor, lr)
    x, y = run.batches.next()
    if run.targets is not None:
        y = run.targets.targets(y)
    xb = torch.from_numpy(x).to(run.device, non_blocking=True)
    yb = torch.from_numpy(y).to(run.device, non_blocking=True)
    with run.autocast():
        _, loss = run.forward_model(xb, yb)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_clip = run.cfg.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip) if grad_clip > 0 \
        else torch.zeros(())
    if run.decay_only:  # lr-zero: the gradient (measured above) is not taken; only the decay moves W
        run.optimizer.zero_grad(set_to_none=True)
        decay_only_step(run.optimizer, lr)
    else:
        run.optimizer.step()
    return loss, grad_norm


def set_lr(optimizer: torch.optim.Optimizer, lr_tensor: torch.Tensor | None, lr: float) -> None:
    """Refill the device tensor the optimizer reads, or set each group's float."""
    if lr_tensor is not None:
        lr_tensor.fill_(lr)
        return
    for group in optimizer.param_groups:
        group["lr"] = lr


def capture_graph(run: Run, say: Callable[[str], None]) -> GraphedStep | None:
    """The whole step captured as one CUDA graph, or ``None`` (with a message) if an op cannot be captured."""
    ids = torch.from_numpy(np.asarray(run.data.train, dtype=np.int32)).to(run.device)
    cfg = run.cfg
    try:
        return GraphedStep(run.model, run.forward_model, run.optimizer, run.lr_tensor, ids, batch=cfg.batch,
                           context=cfg.context, grad_clip=cfg.grad_clip, precision=cfg.precision)
    except RuntimeError as exc:  # train eagerly instead
        say(f"CUDA graph capture failed ({str(exc).splitlines()[0]}); training without graphs")
        return None


def frame_capture(run: Run, recorder: Recorder | None) -> Callable[..., None]:
    """``capture(step, loss, grad_norm=None, **scalars)``: a frame of W (and E, untied) where the
    recorder's schedule wants one; a no-op without a recorder."""
    model = run.model
    record_e = not run.cfg.tied and run.cfg.record_untied_e

    def capture(step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None = None, **scalars: Any) -> None:
        if recorder is None or not recorder.wants(step):
            return  # before any tensor op: a step that is not recorded costs nothing here
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm.detach().float()
        recorder.capture(step, W=model.wte.weight, E=model.lm_head.weight if record_e else None,
                         loss=loss.detach().float(), **scalars)

    return capture


def record_step_zero(run: Run, capture: Callable[..., None]) -> torch.Tensor:
    """The frame before any update, with the loss of one training batch (drawn even if not
    recorded); returns that loss."""
    x, y = run.batches.next()
    if run.targets is not None:  # the loss of what the control trains on
        y = run.targets.targets(y)
    with torch.no_grad(), run.autocast():
        _, loss0 = run.forward_model(torch.from_numpy(x).to(run.device), torch.from_numpy(y).to(run.device))
    capture(0, loss0, lr=0.0)
    return loss0


def progress_bar(total: int, initial: int) -> Any:
    """The bar on stderr counting steps (:func:`tokendyn.progress.progress_bar`: redrawn on a
    terminal, a plain line every few percent in a log)."""
    from tokendyn.progress import progress_bar as bar

    return bar(total, "training", " steps", initial=initial)


def progress_text(loss: float, unigram_entropy: float, heldout: float) -> str:
    """What the bar shows after the step count: the loss against the unigram baseline, and the held-out loss."""
    return (f"loss {loss:.3f} (unigram {unigram_entropy:.3f})"
            + (f" heldout {heldout:.3f}" if not math.isnan(heldout) else ""))
