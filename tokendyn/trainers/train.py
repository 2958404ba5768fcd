"""The training loop: a tiny GPT on a corpus, every step of its embedding matrix recorded."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokendyn.errors import ConfigError
from tokendyn.recorder import Recorder

from .config import TrainConfig, apply_overrides, from_preset
from .data import Batches, TokenData, build
from .graphed import GraphedStep, make_capturable_optimizer
from .model import GPT
from .optim import PureBF16AdamW, lr_at, param_groups

SCALARS = ["loss", "lr", "grad_norm", "heldout_loss"]
WAIT_WORTH_SAYING = 0.05  # the share of a run spent waiting for the movie's writer that the summary names


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


def _check_output(out: str | None, overwrite: bool, resume: bool) -> None:
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


def checkpoint_path(movie: str) -> str:
    root, _ = os.path.splitext(movie)
    return root + ".ckpt.pt"


def _make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.precision == "bf16-pure":
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1) if cfg.rounding == "stochastic" else None
        return PureBF16AdamW(groups, lr=cfg.lr, betas=cfg.betas, rounding=cfg.rounding, generator=gen)
    for kwargs in ({"fused": True}, {"foreach": True}, {}):
        try:
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise ConfigError("could not build an AdamW optimizer")  # pragma: no cover


@torch.no_grad()
def _heldout_loss(model: GPT, data: TokenData, cfg: TrainConfig, device: torch.device, autocast) -> float:
    if len(data.heldout) < cfg.context + 2:
        return float("nan")
    model.eval()
    batches = Batches(data.heldout, cfg.batch, cfg.context, seed=1234)
    total = 0.0
    for _ in range(cfg.eval_batches):
        x, y = batches.next()
        with autocast():
            _, loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        total += float(loss)
    model.train()
    return total / cfg.eval_batches


def _set_lr(optimizer: torch.optim.Optimizer, lr_tensor: torch.Tensor | None, lr: float) -> None:
    if lr_tensor is not None:
        lr_tensor.fill_(lr)
        return
    for group in optimizer.param_groups:
        group["lr"] = lr


def _autocast(cfg: TrainConfig, device: torch.device) -> Callable[[], Any]:
    if cfg.precision == "bf16-mixed":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def train(
    config: TrainConfig | str = "tiny",
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
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
    progress
        Show a progress bar with the loss, the unigram baseline and steps/s.
    set_values
        ``key=value`` overrides as strings (what ``--set`` passes).
    overrides
        Config fields to override (e.g. ``steps=500, precision="bf16-pure"``).

    Returns
    -------
    TrainResult
        Losses, throughput, a generated sample and where the movie and checkpoint are.
    """
    say = log or (lambda text: print(text, file=sys.stderr))
    cfg = from_preset(config, **overrides) if isinstance(config, str) else dataclasses.replace(config, **overrides)
    cfg = apply_overrides(cfg, set_values or [])
    cfg.validate()
    out = None if out is None else os.fspath(out)
    _check_output(out, overwrite, resume)
    device = resolve_device(cfg.device)

    torch.manual_seed(cfg.seed)
    data = build(corpus=cfg.corpus, corpus_chars=cfg.corpus_chars, foreign_chars=cfg.foreign_chars,
                 vocab_size=cfg.vocab_size, n_phantom=cfg.n_phantom, tokenizer_json=cfg.tokenizer_json,
                 seed=cfg.seed)
    batches = Batches(data.train, cfg.batch, cfg.context, seed=cfg.seed)
    model = GPT(vocab_rows=data.vocab_rows, context=cfg.context, layers=cfg.layers, dim=cfg.dim,
                heads=cfg.heads, ffn=cfg.ffn_hidden, tied=cfg.tied, init_std=cfg.init_std,
                fused_loss=device.type != "cuda" if cfg.fused_loss is None else cfg.fused_loss).to(device)
    if cfg.precision == "bf16-pure":
        model = model.to(torch.bfloat16)
    use_graphs = cfg.cuda_graphs and device.type == "cuda"
    if use_graphs:
        optimizer, lr_tensor = make_capturable_optimizer(model, cfg, device)
    else:
        optimizer, lr_tensor = _make_optimizer(model, cfg, device), None
    start_step = 0
    if resume:
        assert out is not None
        ckpt = torch.load(checkpoint_path(out), map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if lr_tensor is not None:  # loading replaced it with the checkpoint's copy; the graph reads this one
            for group in optimizer.param_groups:
                group["lr"] = lr_tensor
        batches.set_state(ckpt["data_rng"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())  # map_location moved it to the device
        if device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
        start_step = int(ckpt["step"])
        if start_step >= cfg.steps:
            raise ConfigError(f"the checkpoint is at step {start_step}; ask for more steps (--steps) to resume", out)
    forward_model = model
    if cfg.compile and device.type == "cuda":
        forward_model = torch.compile(model)  # type: ignore[assignment]
    autocast = _autocast(cfg, device)
    classes = {name: int(np.sum(data.token_class == i)) for i, name in enumerate(("live", "dead", "phantom"))}
    say(f"tokendyn train: preset {cfg.preset}, {model.n_params() / 1e6:.2f} M parameters, {data.vocab_rows} "
        f"vocab rows ({classes['live']} live, {classes['dead']} dead, {classes['phantom']} phantom), "
        f"{cfg.precision} on {device}, {len(data.train):,} training tokens")
    say(f"unigram baseline (entropy of the training tokens): {data.unigram_entropy:.3f} nats/token")

    recorder = None
    record_e = not cfg.tied and cfg.record_untied_e
    if out is not None:
        run_config = {**cfg.to_dict(), "vocab_rows": data.vocab_rows, "n_params": model.n_params(),
                      "unigram_entropy": data.unigram_entropy, "tokenizer": data.tokenizer.source,
                      "device": str(device), "torch": torch.__version__}
        recorder = Recorder(out, token_class=data.token_class, token_text=data.token_text,
                            token_count=data.token_count, config=run_config, seed=cfg.seed,
                            title=f"tokendyn {cfg.preset}", schedule=cfg.record, scalars=SCALARS,
                            overwrite=overwrite, resume_after=start_step if resume else None)

    def capture(step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None = None, **scalars: Any) -> None:
        if recorder is None or not recorder.wants(step):
            return  # before any tensor op: a step that is not recorded costs nothing here
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm.detach().float()
        recorder.capture(step, W=model.wte.weight, E=model.lm_head.weight if record_e else None,
                         loss=loss.detach().float(), **scalars)

    interrupted = False
    loss_value = float("nan")
    heldout = float("nan")
    step = start_step
    t_start = time.perf_counter()
    shown = 0.0
    bar = None
    try:
        if start_step == 0:
            x, y = batches.next()
            with torch.no_grad(), autocast():
                _, loss0 = forward_model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
            capture(0, loss0, lr=0.0)
        graphed = None
        if use_graphs and cfg.steps > start_step:
            ids = torch.from_numpy(np.asarray(data.train, dtype=np.int32)).to(device)
            try:
                graphed = GraphedStep(model, forward_model, optimizer, lr_tensor, ids, batch=cfg.batch,
                                      context=cfg.context, grad_clip=cfg.grad_clip, precision=cfg.precision)
            except RuntimeError as exc:  # an op that cannot be captured: train eagerly instead
                say(f"CUDA graph capture failed ({str(exc).splitlines()[0]}); training without graphs")
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start_step, desc="training", unit="step", file=sys.stderr,
                       dynamic_ncols=True)
        t_start = time.perf_counter()  # throughput counts the steps, not the set-up before them
        for step in range(start_step + 1, cfg.steps + 1):
            lr = lr_at(step, base=cfg.lr, warmup=cfg.warmup, total=cfg.steps, schedule=cfg.schedule,
                       min_ratio=cfg.min_lr_ratio)
            if graphed is not None:
                graphed(lr)
                loss, grad_norm = graphed.loss, graphed.grad_norm
            else:
                _set_lr(optimizer, lr_tensor, lr)
                x, y = batches.next()
                xb = torch.from_numpy(x).to(device, non_blocking=True)
                yb = torch.from_numpy(y).to(device, non_blocking=True)
                with autocast():
                    _, loss = forward_model(xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 \
                    else torch.zeros(())
                optimizer.step()
            extra = {}
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                heldout = extra["heldout_loss"] = _heldout_loss(model, data, cfg, device, autocast)
            capture(step, loss, grad_norm, lr=lr, **extra)
            # the loss shown is read at most twice a second: reading it waits for the device
            if bar is not None and (time.perf_counter() - shown >= 0.5 or step == cfg.steps):
                shown = time.perf_counter()
                loss_value = float(loss.detach())
                bar.set_postfix_str(f"loss {loss_value:.3f} (unigram {data.unigram_entropy:.3f})"
                                    + (f" heldout {heldout:.3f}" if not math.isnan(heldout) else ""))
            if bar is not None:
                bar.update(1)
        loss_value = float(loss.detach()) if cfg.steps > start_step else loss_value
    except KeyboardInterrupt:
        interrupted = True
        step = step - 1 if step > start_step else start_step  # the step in progress did not finish
        say(f"\ninterrupted: stopping cleanly at step {step}")
    finally:
        if bar is not None:
            bar.close()
        if recorder is not None:
            recorder.close()
    elapsed = time.perf_counter() - t_start
    steps_done = step - start_step
    ckpt_path = None
    if out is not None:
        ckpt_path = checkpoint_path(out)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "data_rng": batches.state(), "torch_rng": torch.get_rng_state(),
                    **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                    "config": cfg.to_dict()}, ckpt_path)
    sample = ""
    if not interrupted and cfg.sample_tokens > 0:
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        model.eval()
        start = torch.tensor([[int(data.train[0])]], device=device)
        with autocast():
            ids = model.generate(start, cfg.sample_tokens, allowed=data.tokenizer.n_ids, generator=gen)
        sample = data.tokenizer.decode(ids[0].tolist())
        model.train()
    if math.isnan(heldout) and not interrupted:
        heldout = _heldout_loss(model, data, cfg, device, autocast)
    return TrainResult(
        movie=out, checkpoint=ckpt_path, steps=step, final_loss=loss_value, heldout_loss=heldout,
        unigram_entropy=data.unigram_entropy,
        steps_per_second=steps_done / elapsed if elapsed > 0 else float("nan"), sample=sample,
        interrupted=interrupted, n_params=model.n_params(), tokens_per_class=classes, device=str(device),
        seconds=elapsed, recording_wait_seconds=recorder.wait_seconds if recorder is not None else 0.0,
    )


def result_text(result: TrainResult) -> str:
    """A short human summary of a run."""
    verdict = "below" if result.final_loss < result.unigram_entropy else "NOT below"
    lines = [
        f"steps            {result.steps}{'  (interrupted)' if result.interrupted else ''}",
        f"final loss       {result.final_loss:.3f} nats/token ({verdict} the unigram baseline {result.unigram_entropy:.3f})",
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
