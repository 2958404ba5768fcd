"""Optimizers and learning-rate schedules.

``PureBF16AdamW`` is AdamW for parameters *stored* in bfloat16 (so W lives on the bf16 lattice): the
moments are fp32 (bf16 Adam variance underflows and training floors at loss ~5.8, as the Duckling
notes found), the update is computed in fp32 and rounded onto the lattice, to nearest or
stochastically.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

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
    """AdamW for bf16 parameters with fp32 moments and an fp32 update rounded to bf16.

    The parameters of a group that share one dtype and device are moved into one flat buffer
    (each ``p.data`` becomes a view of it) and their moments into two flat fp32 buffers, so a step
    is a dozen elementwise kernels over the whole group however many tensors it holds. On a GPU a
    tiny model's update is launch-bound: per-tensor kernels cost more than the arithmetic.
    """

    def __init__(self, params: Iterable, lr: float | torch.Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, rounding: str = "nearest",
                 generator: torch.Generator | None = None, flat: bool = True):
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.rounding = rounding
        self.generator = generator
        self._use_flat = flat
        self._flat: list[_FlatGroup | None] = [_FlatGroup.build(g["params"], self.state) if flat else None
                                              for g in self.param_groups]

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_flat"):  # a group added after construction gets its flat buffers too
            group = self.param_groups[-1]
            self._flat.append(_FlatGroup.build(group["params"], self.state) if self._use_flat else None)

    def load_state_dict(self, state_dict: dict) -> None:
        """Load moments (kept in fp32) and step counts, then copy them into the flat buffers."""
        ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        saved = {p: state_dict["state"][i] for i, p in zip(ids, params) if i in state_dict["state"]}
        super().load_state_dict(state_dict)
        for p, values in saved.items():  # the base class casts the moments to the parameter's dtype
            self.state[p] = {k: v.to(p.device, torch.float32) if torch.is_tensor(v) else v for k, v in values.items()}
        for flat in self._flat:
            if flat is not None:
                flat.adopt(self.state)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update. Works with ``lr`` as a float or as a 0-d device tensor; with a tensor and
        the step counts kept on the device, the whole update can be captured in a CUDA graph.
        ``closure``, as for any torch optimizer, re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, flat in zip(self.param_groups, self._flat):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if flat is not None and len(params) == len(flat.params):
                grads = torch.cat([p.grad.reshape(-1) for p in params]).float()
                self._update(group, [flat.values], [grads], [flat.exp_avg], [flat.exp_avg_sq], flat.step)
                continue
            for p in params:  # some parameters without a gradient: per tensor
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            states = [self.state[p] for p in params]
            step = states[0]["step"]
            self._update(group, params, [p.grad.float() for p in params], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], step)
            for s in states[1:]:
                if s["step"] is not step:
                    s["step"].copy_(step)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], ms: list[torch.Tensor],
                vs: list[torch.Tensor], step: torch.Tensor) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        step += 1
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
            if p.dtype != torch.bfloat16 or self.rounding == "nearest":
                p.copy_(new)  # to bf16: round to nearest even
            else:
                p.copy_(round_to_bf16(new, self.rounding, self.generator))


class _FlatGroup:
    """One group's parameters and moments, each in one contiguous buffer."""

    def __init__(self, params: list[torch.Tensor], values: torch.Tensor, exp_avg: torch.Tensor,
                 exp_avg_sq: torch.Tensor, step: torch.Tensor):
        self.params = params
        self.values = values
        self.exp_avg = exp_avg
        self.exp_avg_sq = exp_avg_sq
        self.step = step

    @classmethod
    def build(cls, params: list[torch.Tensor], state: dict) -> _FlatGroup | None:
        if not params or len({(p.dtype, p.device) for p in params}) != 1:
            return None
        first = params[0]
        total = sum(p.numel() for p in params)
        values = torch.empty(total, dtype=first.dtype, device=first.device)
        flat = cls(list(params), values, torch.zeros(total, dtype=torch.float32, device=first.device),
                   torch.zeros(total, dtype=torch.float32, device=first.device),
                   torch.zeros((), dtype=torch.float32, device=first.device))
        with torch.no_grad():
            for p, view in zip(params, flat._views(values)):
                view.copy_(p)
                p.data = view
        flat.adopt(state)
        return flat

    def _views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        views, offset = [], 0
        for p in self.params:
            views.append(buffer[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return views

    @torch.no_grad()
    def adopt(self, state: dict) -> None:
        """Copy any existing per-tensor state into the flat buffers and point the state at them."""
        loaded = [state.get(p) or {} for p in self.params]
        if any(s for s in loaded):
            self.step.copy_(next(s["step"] for s in loaded if s))
        for p, old, m, v in zip(self.params, loaded, self._views(self.exp_avg), self._views(self.exp_avg_sq)):
            if old:
                m.copy_(old["exp_avg"])
                v.copy_(old["exp_avg_sq"])
            state[p] = {"step": self.step, "exp_avg": m, "exp_avg_sq": v}


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
