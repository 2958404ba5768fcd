"""Control runs: training that is built to learn nothing (or to miss one ingredient), for comparison.

A control is named by ``TrainConfig.control`` (``tokendyn train --control NAME``):

``none``
    A normal run (the default); nothing here touches it.
``shuffled-targets``
    Each step's targets are permuted across the batch: row ``i`` is trained on the targets of row
    ``(i - k) mod batch``, ``k`` drawn uniformly from ``1 .. batch - 1`` each step (a random
    non-zero roll of the batch axis, so a derangement: no row keeps its own targets). The targets
    are still real text, so the model can learn their unigram distribution and nothing more: the
    loss stays at or above the unigram baseline.
``random-targets``
    Each target is drawn uniformly from the live ids (the ids that occur in the corpus, the
    trainer's ``live`` class). Only wrong answers: the best the model can do is predict that
    uniform distribution, a loss of ``log(n_live)``.
``lr-zero``
    The gradient step is dropped; only weight decay moves the parameters. Torch-style decoupled
    AdamW decays as ``p *= 1 - lr * wd``, so a literal ``lr = 0`` would move nothing. Instead the
    decay keeps the schedule's learning rate: ``p_t = p_{t-1} * (1 - lr_t * wd)`` for the
    parameters of the decay group (the matrices, the embeddings among them), the factor computed
    in double precision and the product in the parameter's arithmetic (fp32; for ``bf16-pure``
    the fp32 product rounded onto the bf16 lattice as the optimizer rounds it), exactly as AdamW's
    decay alone. Biases and LayerNorm gains (no decay) never move. The forward and backward passes
    still run, so the loss and the norm of the gradient not taken are recorded; the optimizer's
    moments stay empty.
``no-weight-decay``
    Weight decay 0 for every parameter group (``cfg.weight_decay`` is kept in the config as it
    was given, and ignored).

The held-out loss of every control is measured on the true held-out text with its true targets:
it shows what the model learnt about the language, i.e. nothing beyond token frequencies.

The target controls draw from their own numpy generator (seeded from ``cfg.seed``, apart from the
batch sampler's), saved in and restored from the checkpoint, so a resumed control run continues
the same stream. They, and ``lr-zero``, train without CUDA graphs (eagerly, batches from the host);
``no-weight-decay`` only changes the optimizer's groups and keeps them.
"""
from __future__ import annotations

import numpy as np
import torch

from tokendyn import format as fmt

from .config import CONTROLS
from .data import _plain
from .optim import round_to_bf16

NONE = "none"
TARGET_CONTROLS = ("shuffled-targets", "random-targets")
GRAPH_SAFE = (NONE, "no-weight-decay")  # controls the CUDA-graph step runs as it is
STREAM = 0x636F6E74  # "cont": the control generator's seed is (cfg.seed, STREAM), apart from the batches'

__all__ = ["CONTROLS", "TargetControl", "control_targets", "decay_only_step", "effective_weight_decay",
           "graph_safe", "make_target_control"]


def effective_weight_decay(control: str, weight_decay: float) -> float:
    """The weight decay the optimizer's decay group gets: 0 for ``no-weight-decay``."""
    return 0.0 if control == "no-weight-decay" else weight_decay


def graph_safe(control: str) -> bool:
    """Whether the step can be captured as a CUDA graph under this control."""
    return control in GRAPH_SAFE


def control_targets(control: str, y: np.ndarray, rng: np.random.Generator,
                    live_ids: np.ndarray | None = None) -> np.ndarray:
    """The targets a control trains on, from a batch's true targets ``y`` (``batch x context``).

    Parameters
    ----------
    control
        ``shuffled-targets`` (rows rolled by a random non-zero shift of the batch axis) or
        ``random-targets`` (each target uniform over ``live_ids``).
    y
        The true targets, int64.
    rng
        The control's generator; one draw per call.
    live_ids
        The live token ids (``random-targets`` only).

    Returns
    -------
    numpy.ndarray
        New targets of ``y``'s shape and dtype.
    """
    if control == "shuffled-targets":
        if y.shape[0] < 2:
            raise ValueError("shuffled-targets needs a batch of at least 2 rows")
        shift = int(rng.integers(1, y.shape[0]))
        return np.roll(y, shift, axis=0)
    if control == "random-targets":
        if live_ids is None or len(live_ids) == 0:
            raise ValueError("random-targets needs the live ids")
        return np.asarray(live_ids, dtype=y.dtype)[rng.integers(0, len(live_ids), y.shape)]
    raise ValueError(f"{control!r} does not change the targets")


class TargetControl:
    """A target control with its generator: ``targets(y)`` each step; ``state``/``set_state`` for checkpoints."""

    def __init__(self, control: str, seed: int, live_ids: np.ndarray | None = None):
        if control not in TARGET_CONTROLS:
            raise ValueError(f"{control!r} is not a target control")
        self.control = control
        self.live_ids = None if live_ids is None else np.asarray(live_ids, dtype=np.int64)
        self.rng = np.random.default_rng([int(seed), STREAM])

    def targets(self, y: np.ndarray) -> np.ndarray:
        return control_targets(self.control, y, self.rng, self.live_ids)

    def state(self) -> dict:
        """The generator's state as plain data (a checkpoint read with ``weights_only=True`` keeps it)."""
        return _plain(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        """Continue from a :meth:`state`; another bit generator's state is a ``ValueError``."""
        if not isinstance(state, dict) or state.get("bit_generator") != type(self.rng.bit_generator).__name__:
            raise ValueError(f"not a {type(self.rng.bit_generator).__name__} state")
        self.rng.bit_generator.state = state


def make_target_control(control: str, seed: int, token_class: np.ndarray) -> TargetControl | None:
    """The run's :class:`TargetControl`, or ``None`` for a control that leaves the targets alone."""
    if control not in TARGET_CONTROLS:
        return None
    return TargetControl(control, seed, np.flatnonzero(np.asarray(token_class) == fmt.CLASS_LIVE))


@torch.no_grad()
def decay_only_step(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """``lr-zero``'s update: AdamW's decoupled weight decay at ``lr`` and nothing else.

    ``p *= 1 - lr * wd`` for every parameter of a group with ``wd > 0`` (the factor in double, the
    product in fp32, as torch's AdamW); a bf16 parameter gets the fp32 product rounded as
    :class:`~tokendyn.trainers.optim.PureBF16AdamW` rounds (to nearest, or stochastically with
    its generator). Groups without decay are not touched.
    """
    rounding = getattr(optimizer, "rounding", "nearest")
    generator = getattr(optimizer, "generator", None)
    for group in optimizer.param_groups:
        wd = group["weight_decay"]
        if not wd:
            continue
        factor = 1 - lr * wd
        for p in group["params"]:
            if p.dtype == torch.bfloat16:
                new = p.float().mul_(factor)
                p.copy_(new if rounding == "nearest" else round_to_bf16(new, rounding, generator))
            else:
                p.mul_(factor)
