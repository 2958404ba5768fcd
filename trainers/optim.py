"""Optimizers and learning-rate schedules.

``PureBF16AdamW`` is AdamW for parameters *stored* in bfloat16 (so W lives on the bf16 lattice): the
moments are fp32 (bf16 Adam variance underflows and training floors at loss ~5.8, as the Duckling
notes found), the update is computed in fp32 and rounded onto the lattice, to nearest or
stochastically.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


def round_to_bf16(x: torch.Tensor, mode: str = "nearest", generator: torch.Generator | None = None) -> torch.Tensor:
    """Round an fp32 tensor to bf16, to nearest (even) or stochastically (unbiased)."""
    if mode == "nearest":
        return x.to(torch.bfloat16)
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    rounded = (bits + noise) & -65536  # keep the upper 16 bits: exactly representable in bf16
    out = rounded.view(torch.float32).to(torch.bfloat16)
    return torch.where(torch.isfinite(x), out, x.to(torch.bfloat16))


class PureBF16AdamW(torch.optim.Optimizer):
    """AdamW for bf16 parameters with fp32 moments and an fp32 update rounded to bf16."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, rounding: str = "nearest",
                 generator: torch.Generator | None = None):
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.rounding = rounding
        self.generator = generator

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update. Works with ``lr`` as a float or as a 0-d device tensor; with a tensor and
        the step counts kept on the device, the whole update can be captured in a CUDA graph."""
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            states = [self.state[p] for p in params]
            step = states[0]["step"]
            step += 1
            for s in states[1:]:
                s["step"].copy_(step)
            grads = [p.grad.float() for p in params]
            ms = [s["exp_avg"] for s in states]
            vs = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(ms, grads, 1 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
            bc1 = 1 - b1 ** step
            bc2_sqrt = (1 - b2 ** step).sqrt()
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, eps)
            p32 = [p.float() for p in params]
            if wd:
                torch._foreach_mul_(p32, 1 - lr * wd)
            update = torch._foreach_div(ms, denom)
            torch._foreach_mul_(update, lr / bc1)
            torch._foreach_sub_(p32, update)
            for p, new in zip(params, p32):
                p.copy_(round_to_bf16(new, self.rounding, self.generator) if p.dtype == torch.bfloat16 else new)
        return None


def lr_at(step: int, *, base: float, warmup: int, total: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (1-based): linear warmup, then the decay."""
    if warmup and step <= warmup:
        return base * step / warmup
    if schedule == "constant" or total <= warmup:
        return base
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = base * min_ratio
    if schedule == "cosine":
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (base - floor) * (1 - progress)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (embeddings included: it is what drags dead tokens), not on
    biases and LayerNorm gains."""
    decay, no_decay = [], []
    for p in model.parameters():  # shared (tied) parameters come once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
