"""What a run is judged by besides its training loss: the held-out loss and a generated sample."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .config import TrainConfig
from .data import Batches, TokenData
from .model import GPT

HELDOUT_SEED = 1234  # every evaluation draws the same held-out batches


@torch.no_grad()
def heldout_loss(model: GPT, data: TokenData, cfg: TrainConfig, device: torch.device,
                 autocast: Callable[[], Any]) -> float:
    """The mean loss over ``cfg.eval_batches`` held-out batches (``nan`` if the held-out text is too short)."""
    if len(data.heldout) < cfg.context + 2:
        return float("nan")
    model.eval()
    batches = Batches(data.heldout, cfg.batch, cfg.context, seed=HELDOUT_SEED)
    total = 0.0
    for _ in range(cfg.eval_batches):
        x, y = batches.next()
        with autocast():
            _, loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        total += float(loss)
    model.train()
    return total / cfg.eval_batches


def generate_sample(model: GPT, data: TokenData, cfg: TrainConfig, device: torch.device,
                    autocast: Callable[[], Any]) -> str:
    """``cfg.sample_tokens`` tokens generated from the first training token, decoded to text."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()
    start = torch.tensor([[int(data.train[0])]], device=device)
    with autocast():
        ids = model.generate(start, cfg.sample_tokens, allowed=data.tokenizer.n_ids, generator=gen)
    text = data.tokenizer.decode(ids[0].tolist())
    model.train()
    return text
