"""A training run: a tiny GPT on a corpus, every step of its embedding matrix recorded.

:func:`train` reads as the run goes: the config and the device, the data, the model and its
optimizer (resumed from the checkpoint if asked), the recorder, the steps (:mod:`.loop`), then the
checkpoint, a sample and the result.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokendyn.errors import ConfigError
from tokendyn.recorder import Recorder

from .checkpoint import (
    MovieState,
    check_resumable,
    checkpoint_path,
    load_checkpoint,
    movie_state_on_disk,
    restore,
    save_checkpoint,
)
from .config import TrainConfig, apply_overrides, from_preset
from .controls import effective_weight_decay, graph_safe, make_target_control
from .data import Batches, TokenData, build
from .evaluate import generate_sample, heldout_loss
from .graphed import make_capturable_optimizer
from .loop import Run, run_steps
from .model import GPT
from .optim import PureBF16AdamW, param_groups
from .sizing import check_fits

SCALARS = ["loss", "lr", "grad_norm", "heldout_loss"]
WAIT_WORTH_SAYING = 0.05  # the share of a run spent waiting for the movie's writer that the summary names
CHECKPOINT_EVERY = 300.0  # seconds of wall time between checkpoints: what a killed run loses at most


@dataclass
class TrainResult:
    """What a run produced and measured."""

    movie: str | None
    checkpoint: str | None
    steps: int
    final_loss: float
    heldout_loss: float
    unigram_entropy: float
    steps_per_second: float
    sample: str
    interrupted: bool
    n_params: int
    tokens_per_class: dict[str, int]
    device: str
    seconds: float = float("nan")  # wall time of the training loop
    recording_wait_seconds: float = 0.0  # of which the loop waited for the recorder's writer
    stopped_by: str | None = None  # "SIGINT" (Ctrl-C) or "SIGTERM" when interrupted
    loss_step: int | None = None  # the step whose training loss final_loss is
    control: str = "none"  # the control run (trainers/controls.py), "none" for a normal run


# what each control does, for the summary and the movie's title
CONTROL_TEXT = {
    "shuffled-targets": "targets permuted across the batch: no correct answers",
    "random-targets": "targets uniform over the live ids: wrong answers only",
    "lr-zero": "no gradient step, only weight decay at the schedule's lr moves the weights",
    "no-weight-decay": "weight decay 0 for every parameter group",
}


def train(
    config: TrainConfig | str = "tiny",
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: float = CHECKPOINT_EVERY,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    set_values: list[str] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a tiny GPT and record its embedding matrix into a W-movie.

    Parameters
    ----------
    config
        A :class:`TrainConfig` or a preset name (``tiny``, ``duckling``, ``duckling2``,
        ``goldilocks-lean``/``-balanced``/``-rich``, ``flannel``, ``flannel-untied``).
    out
        The movie to write (``.h5``); a checkpoint is written beside it as ``.ckpt.pt``.
        ``None`` trains without recording.
    overwrite, resume
        Replace an existing movie, or continue it from its checkpoint (frames after the
        checkpoint's step are dropped, so none is duplicated; raise ``steps`` to train longer).
        A checkpoint of another movie at the same path, or of a run with another config (but for
        ``steps``, ``device``, ``record`` and what is evaluated), is refused.
    checkpoint_every
        Seconds of wall time between checkpoints written during the run (atomically, after the
        movie is flushed, so a killed run resumes from the last one); 0: only at the end.
    progress
        Show a progress bar with the loss, the unigram baseline and steps/s.
    set_values
        ``key=value`` overrides as strings (what ``--set`` passes).
    overrides
        Config fields to override (e.g. ``steps=500, precision="bf16-pure"``). ``control=NAME``
        makes a control run (:mod:`tokendyn.trainers.controls`): ``shuffled-targets``,
        ``random-targets``, ``lr-zero`` (the gradient step dropped; weight decay still applied at
        the schedule's lr, ``p *= 1 - lr_t * wd``, since a literal lr of 0 would freeze decoupled
        AdamW's decay too), ``no-weight-decay``, or ``none`` (the default). The held-out loss is
        always measured on the true held-out text.

    Returns
    -------
    TrainResult
        Losses, throughput, a generated sample and where the movie and checkpoint are.
    """
    say = log or _to_stderr
    cfg = resolve_config(config, set_values or [], overrides)
    out = None if out is None else os.fspath(out)
    if resume and out is None:
        raise ConfigError("resume continues a movie: give the movie to continue (out=..., --out)")
    if not (isinstance(checkpoint_every, (int, float)) and math.isfinite(checkpoint_every) and checkpoint_every >= 0):
        raise ConfigError(f"checkpoint_every is seconds >= 0 (0: only at the end), got {checkpoint_every!r}")
    check_output(out, overwrite, resume)
    ckpt, start_step, movie_before = None, 0, MovieState(run_id=None, frames=0)
    if resume:  # refuse a checkpoint that does not belong here before anything is built
        assert out is not None
        ckpt = load_checkpoint(checkpoint_path(out))
        movie_before = movie_state_on_disk(out, ckpt["step"])
        start_step = check_resumable(ckpt, checkpoint_path(out), cfg=cfg, movie=out, movie_state=movie_before)
    device = resolve_device(cfg.device)
    check_fits(cfg, device)

    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    check_fits(cfg, device, data.vocab_rows)
    batches = Batches(data.train, cfg.batch, cfg.context, seed=cfg.seed)
    targets = make_target_control(cfg.control, cfg.seed, data.token_class)
    model = build_model(cfg, data, device)
    cuda_graphs = cfg.cuda_graphs and device.type == "cuda"
    graphs_off = cuda_graphs and not graph_safe(cfg.control)
    cuda_graphs = cuda_graphs and not graphs_off
    optimizer, lr_tensor = build_optimizer(model, cfg, device, capturable=cuda_graphs)
    if ckpt is not None:
        assert out is not None
        restore(ckpt, checkpoint_path(out), model=model, optimizer=optimizer, lr_tensor=lr_tensor, batches=batches,
                device=device, control=targets)
    forward_model = torch.compile(model) if cfg.compile and device.type == "cuda" else model
    autocast = autocast_for(cfg, device)
    run = Run(cfg, device, data, batches, model, forward_model, optimizer, lr_tensor, autocast, cuda_graphs,
              start_step, targets=targets, decay_only=cfg.control == "lr-zero")
    classes = tokens_per_class(data)
    say(f"tokendyn train: preset {cfg.preset}, {model.n_params() / 1e6:.2f} M parameters, {cfg.precision} on "
        f"{device}, {len(data.train):,} training tokens")
    if cfg.control != "none":
        say(f"control run: {cfg.control} ({CONTROL_TEXT[cfg.control]})"
            + ("; CUDA graphs off, the steps run eagerly" if graphs_off else ""))
    say(f"vocabulary: {data.vocab_rows} rows, {_class_shares(classes, data.vocab_rows)}")
    say(f"unigram baseline (entropy of the training tokens): {data.unigram_entropy:.3f} nats/token")

    recorder = None if out is None else open_recorder(out, run, overwrite=overwrite, resume=resume,
                                                    expect_run_id=movie_before.run_id)

    def checkpoint(step: int, *, closed: bool = False) -> str | None:
        """The checkpoint at ``step``, matching the movie flushed up to it (none before the movie exists)."""
        assert out is not None and recorder is not None
        if not closed:
            recorder.flush()
        if recorder.frames_written == 0 and not resume:
            return None
        state = MovieState(run_id=movie_run_id(recorder, movie_before), frames=recorder.frames_written)
        return save_checkpoint(out, step=step, movie_state=state, cfg=cfg, model=model, optimizer=optimizer,
                               batches=batches, device=device, control=targets)

    reached = run_steps(run, recorder, progress=progress, say=say, checkpoint=None if out is None else checkpoint,
                        checkpoint_every=float(checkpoint_every))  # closes the recorder
    ckpt_path = None if out is None else checkpoint(reached.step, closed=True)
    sample = ""
    if not reached.interrupted and cfg.sample_tokens > 0:
        sample = generate_sample(model, data, cfg, device, autocast)
    heldout = reached.heldout
    if math.isnan(heldout) and not reached.interrupted:
        heldout = heldout_loss(model, data, cfg, device, autocast)
    steps_done = reached.step - start_step
    return TrainResult(
        movie=out, checkpoint=ckpt_path, steps=reached.step, final_loss=reached.loss, heldout_loss=heldout,
        unigram_entropy=data.unigram_entropy,
        steps_per_second=steps_done / reached.seconds if reached.seconds > 0 else float("nan"), sample=sample,
        interrupted=reached.interrupted, n_params=model.n_params(), tokens_per_class=classes, device=str(device),
        seconds=reached.seconds, recording_wait_seconds=recorder.wait_seconds if recorder is not None else 0.0,
        stopped_by=reached.stopped_by, control=cfg.control, loss_step=reached.loss_step,
    )


def movie_run_id(recorder: Recorder, before: MovieState) -> str | None:
    """The ``run_id`` of the movie being recorded (kept by a resumed movie)."""
    run_id = getattr(recorder, "run_id", None)
    return before.run_id if run_id is None else str(run_id)


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def resolve_config(config: TrainConfig | str, set_values: list[str], overrides: dict[str, Any]) -> TrainConfig:
    """A preset (or a config) with keyword overrides, then ``--set`` strings, validated."""
    cfg = from_preset(config, **overrides) if isinstance(config, str) else dataclasses.replace(config, **overrides)
    cfg = apply_overrides(cfg, set_values)
    cfg.validate()
    return cfg


def check_output(out: str | None, overwrite: bool, resume: bool) -> None:
    """Fail before training if the movie cannot be written (or, to resume, is not there)."""
    if out is None:
        return
    parent = os.path.dirname(os.path.abspath(out)) or "."
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder ({exc})", out) from None
    if not os.access(parent, os.W_OK):
        raise ConfigError("the output folder is not writable", out)
    if resume:
        if not os.path.exists(out) or not os.path.exists(checkpoint_path(out)):
            raise ConfigError("cannot resume: the movie or its checkpoint (.ckpt.pt) is missing", out)
    elif os.path.exists(out) and not overwrite:
        raise ConfigError("the output exists; pass overwrite (--overwrite) or resume (--resume)", out)


def resolve_device(name: str) -> torch.device:
    """``auto`` = cuda > mps > cpu; a named device that is not available is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but MPS is not available")
    return torch.device(name)


def build_data(cfg: TrainConfig) -> TokenData:
    """The corpus tokenized, split into training and held-out ids, with the vocabulary's classes."""
    return build(corpus=cfg.corpus, corpus_chars=cfg.corpus_chars, foreign_chars=cfg.foreign_chars,
                 vocab_size=cfg.vocab_size, n_phantom=cfg.n_phantom, tokenizer_json=cfg.tokenizer_json,
                 seed=cfg.seed)


def build_model(cfg: TrainConfig, data: TokenData, device: torch.device) -> GPT:
    """The GPT on ``device``, its parameters stored in bf16 for ``bf16-pure``."""
    fused_loss = device.type != "cuda" if cfg.fused_loss is None else cfg.fused_loss
    model = GPT(vocab_rows=data.vocab_rows, context=cfg.context, layers=cfg.layers, dim=cfg.dim,
                heads=cfg.heads, ffn=cfg.ffn_hidden, tied=cfg.tied, init_std=cfg.init_std,
                fused_loss=fused_loss).to(device)
    if cfg.precision == "bf16-pure":
        model = model.to(torch.bfloat16)
    return model


def build_optimizer(model: GPT, cfg: TrainConfig, device: torch.device, *,
                    capturable: bool) -> tuple[torch.optim.Optimizer, torch.Tensor | None]:
    """AdamW (:class:`PureBF16AdamW` for ``bf16-pure``) and, if ``capturable`` for a CUDA graph, the
    device tensor holding its learning rate (``None`` otherwise)."""
    if capturable:
        return make_capturable_optimizer(model, cfg, device)
    groups = param_groups(model, effective_weight_decay(cfg.control, cfg.weight_decay))
    if cfg.precision == "bf16-pure":
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1) if cfg.rounding == "stochastic" else None
        return PureBF16AdamW(groups, lr=cfg.lr, betas=cfg.betas, rounding=cfg.rounding, generator=gen), None
    for kwargs in ({"fused": True}, {"foreach": True}, {}):
        try:
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **kwargs), None
        except (RuntimeError, TypeError, ValueError):
            continue
    raise ConfigError("could not build an AdamW optimizer")  # pragma: no cover


def autocast_for(cfg: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """A factory of the context the forward passes run in: bf16 autocast for ``bf16-mixed``, else nothing."""
    if cfg.precision == "bf16-mixed":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def tokens_per_class(data: TokenData) -> dict[str, int]:
    """How many vocabulary rows are live, dead and phantom."""
    return {name: int(np.sum(data.token_class == i)) for i, name in enumerate(("live", "dead", "phantom"))}


def _class_shares(classes: dict[str, int], rows: int) -> str:
    """``"290 live (50.3 %), 222 dead (38.5 %), 64 phantom (11.1 %)"``."""
    return ", ".join(f"{n} {name} ({100 * n / max(rows, 1):.1f} %)" for name, n in classes.items())


def open_recorder(out: str, run: Run, *, overwrite: bool, resume: bool, expect_run_id: str | None = None) -> Recorder:
    """The movie's recorder, its config attribute the run's config and what it was trained with.

    Resuming, the recorder refuses (before truncating anything) a movie whose ``run_id`` is not
    ``expect_run_id``, the checkpoint's: another process may have replaced the file since it was checked.
    """
    cfg, data = run.cfg, run.data
    run_config = {**cfg.to_dict(), "vocab_rows": data.vocab_rows, "n_params": run.model.n_params(),
                  "unigram_entropy": data.unigram_entropy, "tokenizer": data.tokenizer.source,
                  "device": str(run.device), "torch": torch.__version__}
    return Recorder(out, token_class=data.token_class, token_text=data.token_text, token_count=data.token_count,
                    config=run_config, seed=cfg.seed, title=movie_title(cfg), schedule=cfg.record,
                    scalars=SCALARS, overwrite=overwrite, resume_after=run.start_step if resume else None,
                    expect_run_id=expect_run_id if resume else None)


def movie_title(cfg: TrainConfig) -> str:
    """``tokendyn tiny``, or ``tokendyn tiny, control shuffled-targets`` for a control run."""
    return f"tokendyn {cfg.preset}" + (f", control {cfg.control}" if cfg.control != "none" else "")


def result_text(result: TrainResult) -> str:
    """A short human summary of a run."""
    verdict = "below" if result.final_loss < result.unigram_entropy else "NOT below"
    lines = [f"control          {result.control} ({CONTROL_TEXT[result.control]}; held-out loss on the true "
             "held-out text)"] if result.control in CONTROL_TEXT else []
    lines += [
        f"steps            {result.steps}{'  (interrupted)' if result.interrupted else ''}",
        f"final loss       {result.final_loss:.3f} nats/token"
        + (f" (at step {result.loss_step})" if result.interrupted and result.loss_step is not None else "")
        + f" ({verdict} the unigram baseline {result.unigram_entropy:.3f})",
        f"held-out loss    {result.heldout_loss:.3f}",
        f"speed            {result.steps_per_second:.1f} steps/s on {result.device}",
    ]
    if result.movie:
        lines.append(f"movie            {result.movie}")
        lines.append(f"checkpoint       {result.checkpoint}")
        if result.recording_wait_seconds > WAIT_WORTH_SAYING * result.seconds:
            lines.append(f"recording        the loop waited {result.recording_wait_seconds:.1f} s "
                         f"({result.recording_wait_seconds / result.seconds:.0%} of the run) for the movie's "
                         "writer: the disk takes frames slower than training makes them; record every few "
                         "steps (--record-every) or write to a faster disk")
    if result.sample:
        lines.append(f"sample           {json.dumps(result.sample)[:300]}")
    return "\n".join(lines)
