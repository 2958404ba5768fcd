"""The whole training step as one CUDA graph.

A tiny model's step is a few hundred small kernels; launched one by one from Python, the GPU waits
on the CPU (launch-bound). Here batch sampling (on the GPU, from the token ids held in device
memory), forward, backward, gradient clipping and the optimizer update are captured once and
replayed each step, as in PyTorch's "whole network capture" recipe. The learning rate lives in a
device tensor the loop refills before each replay. Warm-up iterations (needed before capture) run
on copies of the state: the model and optimizer are restored bit for bit afterwards, so the run
trains exactly ``steps`` updates.

Of the control runs (:mod:`.controls`) only ``no-weight-decay`` is graphed (its optimizer groups
carry weight decay 0); the target controls and ``lr-zero`` train eagerly.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from .controls import effective_weight_decay
from .optim import PureBF16AdamW, param_groups


def make_capturable_optimizer(model: torch.nn.Module, cfg: Any,
                              device: torch.device) -> tuple[torch.optim.Optimizer, torch.Tensor]:
    """An optimizer whose step can be captured, and the shared 0-d device tensor holding the lr."""
    lr = torch.tensor(float(cfg.lr), dtype=torch.float32, device=device)
    groups = param_groups(model, effective_weight_decay(getattr(cfg, "control", "none"), cfg.weight_decay))
    for group in groups:
        group["lr"] = lr
    if cfg.precision == "bf16-pure":
        gen = None
        if cfg.rounding == "stochastic":
            gen = torch.cuda.default_generators[device.index or 0]  # graph-safe: the default generator
        return PureBF16AdamW(groups, lr=lr, betas=cfg.betas, rounding=cfg.rounding, generator=gen), lr
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, capturable=True, fused=True), lr


class GraphedStep:
    """Sample a batch on the GPU, forward, backward, clip and update, replayed from one CUDA graph.

    After :meth:`__call__`, ``loss`` and ``grad_norm`` hold this step's values (device tensors that
    the next call overwrites: copy them before then, as the recorder does).
    """

    def __init__(self, model: torch.nn.Module, forward_model: Callable, optimizer: torch.optim.Optimizer,
                 lr: torch.Tensor, ids: torch.Tensor, *, batch: int, context: int, grad_clip: float,
                 precision: str, warmup_iters: int = 3):
        self.model = model
        self.optimizer = optimizer
        self.lr = lr
        self.ids = ids
        self.batch = batch
        self.offsets = torch.arange(context + 1, device=ids.device)
        self.n_starts = len(ids) - context - 1
        self.forward_model = forward_model
        self.grad_clip = grad_clip
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)) \
            if precision == "bf16-mixed" else contextlib.nullcontext
        self._capture(warmup_iters)

    def _body(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, self.n_starts, (self.batch, 1), device=self.ids.device)
        window = self.ids[starts + self.offsets].long()
        with self.autocast():
            _, loss = self.forward_model(window[:, :-1], window[:, 1:])
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        else:
            grad_norm = torch.zeros((), device=self.ids.device)
        self.optimizer.step()
        return loss.detach(), grad_norm.detach()

    def _capture(self, warmup_iters: int) -> None:
        saved_params = [p.detach().clone() for p in self.model.parameters()]
        saved_state = {p: {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
                       for p, st in self.optimizer.state.items()}
        rng = torch.cuda.get_rng_state(self.ids.device)
        try:
            stream = torch.cuda.Stream(device=self.ids.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(warmup_iters):  # allocations, lazy optimizer state, cuBLAS workspaces
                    self.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(stream)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss, self.grad_norm = self._body()
        finally:  # undo the warm-up: parameters, optimizer state, RNG
            torch.cuda.synchronize(self.ids.device)
            with torch.no_grad():
                for p, saved in zip(self.model.parameters(), saved_params):
                    p.copy_(saved)
                for p, state in self.optimizer.state.items():
                    before = saved_state.get(p, {})
                    for key, value in state.items():
                        if isinstance(value, torch.Tensor):
                            value.copy_(before[key]) if key in before else value.zero_()
            torch.cuda.set_rng_state(rng, self.ids.device)

    def __call__(self, lr: float) -> None:
        self.lr.fill_(lr)
        self.graph.replay()
