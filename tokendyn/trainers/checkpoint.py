"""The checkpoint beside a movie (``run.h5`` -> ``run.ckpt.pt``): written at the end of a run, read to resume it."""
from __future__ import annotations

import os
from typing import Any

import torch

from tokendyn.errors import ConfigError

from .data import Batches


def checkpoint_path(movie: str) -> str:
    """Where the checkpoint of ``movie`` lives: the same name with ``.ckpt.pt``."""
    root, _ = os.path.splitext(movie)
    return root + ".ckpt.pt"


def save_checkpoint(movie: str, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Batches, device: torch.device, config: dict[str, Any]) -> str:
    """Model, optimizer, step and every random state a resumed run needs; returns the path written."""
    path = checkpoint_path(movie)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "data_rng": batches.state(), "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                "config": config}, path)
    return path


def resume_from(movie: str, *, steps: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                lr_tensor: torch.Tensor | None, batches: Batches, device: torch.device) -> int:
    """Load the checkpoint of ``movie`` into the model, optimizer and random states; returns its step.

    Raises
    ------
    ConfigError
        If the checkpoint is already at ``steps`` or beyond: there is nothing left to train.
    """
    ckpt = torch.load(checkpoint_path(movie), map_location=device, weights_only=False)
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
    if start_step >= steps:
        raise ConfigError(f"the checkpoint is at step {start_step}; ask for more steps (--steps) to resume", movie)
    return start_step
