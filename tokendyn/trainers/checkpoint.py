"""The checkpoint beside a movie (``run.h5`` -> ``run.ckpt.pt``): written during and at the end of a
run, read to resume it.

A checkpoint is data, like the movie: it holds only tensors, numbers, strings, lists and dicts, and
is read with ``torch.load(weights_only=True)``, which refuses anything else (a pickle that would run
code is an error, never executed). It records which movie it belongs to (the movie's ``run_id``),
the step and the number of frames it matches, and a hash of the config a resumed run must share.
It is written atomically (a temporary file in the same folder, fsync, rename, fsync of the folder):
a run killed while writing one keeps the previous checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokendyn.errors import ConfigError, TokendynError

from .config import TrainConfig
from .controls import TargetControl
from .data import Batches

FORMAT = "tokendyn.checkpoint"
VERSION = 2
# Config fields a resumed run may change: how long it trains, where, how fast, and what it records
# or reports. Every other field shapes the weights and must match the checkpoint's run.
FREE_ON_RESUME = frozenset({"steps", "device", "compile", "cuda_graphs", "fused_loss", "record", "eval_every",
                            "eval_batches", "sample_tokens", "notes"})
_REQUIRED = {"format": str, "version": int, "step": int, "frames": int, "config_hash": str, "config": str,
             "model": dict, "optimizer": dict, "data_rng": dict, "torch_rng": torch.Tensor}


@dataclass(frozen=True)
class MovieState:
    """Where the movie stood when a checkpoint was written: its ``run_id`` and its frame count."""

    run_id: str | None
    frames: int


def checkpoint_path(movie: str) -> str:
    """Where the checkpoint of ``movie`` lives: the same name with ``.ckpt.pt``."""
    root, _ = os.path.splitext(movie)
    return root + ".ckpt.pt"


def config_hash(cfg: TrainConfig) -> str:
    """A hash of the config fields a resumed run must share with the run that wrote the checkpoint."""
    return hashlib.sha256(_resume_config_json(cfg).encode()).hexdigest()


def _resume_config_json(cfg: TrainConfig) -> str:
    kept = _without_default_control({k: v for k, v in cfg.to_dict().items() if k not in FREE_ON_RESUME})
    return json.dumps(kept, sort_keys=True, default=str)


def _without_default_control(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields without ``control`` when it is ``"none"``: a normal run hashes as it did before
    controls existed, so its older checkpoints still resume."""
    return {k: v for k, v in fields.items() if not (k == "control" and v == "none")}


def save_checkpoint(movie: str, *, step: int, movie_state: MovieState, cfg: TrainConfig, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, batches: Batches, device: torch.device,
                    control: TargetControl | None = None) -> str:
    """Write the checkpoint of ``movie`` atomically; returns its path.

    Parameters
    ----------
    step
        The last step the model and optimizer have taken.
    movie_state
        The movie's ``run_id`` and its frame count, flushed to disk, at ``step``.
    control
        A target control run's control, whose generator's state is saved as ``control_rng``.
    """
    rounding = getattr(optimizer, "generator", None)
    content = {
        "format": FORMAT, "version": VERSION, "step": int(step), "frames": int(movie_state.frames),
        "run_id": movie_state.run_id, "config_hash": config_hash(cfg),
        "config": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "data_rng": batches.state(),
        "torch_rng": torch.get_rng_state(),
        **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
        **({"rounding_rng": rounding.get_state()} if isinstance(rounding, torch.Generator) else {}),
        **({"control_rng": control.state()} if control is not None else {}),
    }
    path = checkpoint_path(movie)
    write_atomically(content, path)
    return path


def write_atomically(content: dict[str, Any], path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync it, rename it over ``path``, fsync the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise TokendynError(f"cannot write the checkpoint ({exc.strerror or exc})", path) from None
    except BaseException:
        _remove(tmp)  # Ctrl-C while writing: the previous checkpoint stays as it was
        raise
    if hasattr(os, "O_DIRECTORY"):  # the rename itself reaches the disk
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint as data (``weights_only=True``) and check that it is one of ours.

    Raises
    ------
    ConfigError
        Naming ``path``, if the file is not a checkpoint, holds anything but tensors, numbers,
        strings, lists and dicts (e.g. a pickle that would run code), or lacks what a resume needs.
    """
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a file it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"refusing to load the checkpoint: it is not made of tensors and plain data only "
                          f"({_refusal(exc)}), so it was not loaded", path) from None
    except (RuntimeError, EOFError, ValueError, OSError, UnicodeDecodeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"not a readable tokendyn checkpoint ({first})", path) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "optimizer" not in ckpt:
        raise ConfigError("not a tokendyn checkpoint (no model and optimizer state)", path)
    if ckpt.get("format") != FORMAT:
        raise ConfigError("the checkpoint was written by an older tokendyn, without the movie's run_id and "
                          "config hash, so it cannot be matched to the movie; train a new movie", path)
    for key, kind in _REQUIRED.items():
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            raise ConfigError(f"the checkpoint's {key!r} is missing or not a {kind.__name__}", path)
    if ckpt["version"] > VERSION:
        raise ConfigError(f"the checkpoint has version {ckpt['version']}; this tokendyn reads up to {VERSION}", path)
    return ckpt


def _refusal(exc: Exception) -> str:
    """The line of torch's refusal that says what was refused (its first lines tell how to load it anyway)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("Unsupported")), type(exc).__name__)


def check_resumable(ckpt: dict[str, Any], path: str, *, cfg: TrainConfig, movie: str, movie_state: MovieState) -> int:
    """Refuse a checkpoint that belongs to another movie or another config; returns its step.

    ``movie_state`` is what the movie holds now: its ``run_id`` and its frames with ``step <=``
    the checkpoint's step (the frames a resume keeps).
    """
    step = ckpt["step"]
    if ckpt.get("run_id") != movie_state.run_id:
        raise ConfigError(f"the checkpoint belongs to another movie (run_id {ckpt.get('run_id')}; {movie} has "
                          f"{movie_state.run_id}): it is from an earlier run at this path, not this one", path)
    if ckpt["config_hash"] != config_hash(cfg):
        raise ConfigError(f"the checkpoint was written with another config ({config_changes(ckpt['config'], cfg)}); "
                          "resume with the settings of the run that wrote it", path)
    if movie_state.frames != ckpt["frames"]:
        raise ConfigError(f"the checkpoint matches {ckpt['frames']} frames up to step {step}, but {movie} has "
                          f"{movie_state.frames}: the movie was changed since the checkpoint was written", path)
    if step >= cfg.steps:
        raise ConfigError(f"the checkpoint is at step {step}; ask for more steps (--steps) to resume", path)
    return step


def config_changes(saved_json: str, cfg: TrainConfig) -> str:
    """``lr 0.003 -> 0.01, batch 16 -> 8``: the fields that differ and must match to resume."""
    try:
        saved = json.loads(saved_json)
    except ValueError:
        saved = {}
    if isinstance(saved, dict):
        saved.setdefault("control", "none")  # a checkpoint written before controls existed
    now = json.loads(json.dumps(cfg.to_dict(), default=str))
    keys = sorted(k for k in set(saved) | set(now) if k not in FREE_ON_RESUME and saved.get(k) != now.get(k))
    return ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in keys) or "the fields differ"


def restore(ckpt: dict[str, Any], path: str, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            lr_tensor: torch.Tensor | None, batches: Batches, device: torch.device,
            control: TargetControl | None = None) -> None:
    """Load a checked checkpoint into the model, the optimizer and every random state (a target
    control's generator among them)."""
    if control is not None and not isinstance(ckpt.get("control_rng"), dict):
        raise ConfigError(f"the checkpoint has no state of the {control.control} control's generator, so the "
                          "control cannot continue its stream", path)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        batches.set_state(ckpt["data_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and isinstance(ckpt.get("cuda_rng"), torch.Tensor):
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        rounding = getattr(optimizer, "generator", None)
        if isinstance(rounding, torch.Generator) and isinstance(ckpt.get("rounding_rng"), torch.Tensor):
            rounding.set_state(ckpt["rounding_rng"])
        if control is not None:
            control.set_state(ckpt["control_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the checkpoint does not fit this model ({str(exc).splitlines()[0]})", path) from None
    if lr_tensor is not None:  # loading replaced it with the checkpoint's copy; the graph reads this one
        for group in optimizer.param_groups:
            group["lr"] = lr_tensor


def movie_state_on_disk(movie: str, step: int) -> MovieState:
    """The movie's ``run_id`` and its complete frames with ``step <= step``, read without changing it."""
    from tokendyn.format.layout import complete_frames
    from tokendyn.sources.h5 import open_readonly

    f = open_readonly(movie)
    try:
        run_id = f.attrs.get("run_id")
        steps = f["step"][...] if "step" in f else np.zeros(0, np.int64)
    except (OSError, KeyError, RuntimeError, TypeError) as exc:
        raise ConfigError(f"cannot read the movie to resume it ({exc})", movie) from None
    finally:
        f.close()
    if isinstance(run_id, bytes):
        run_id = run_id.decode("utf-8", "replace")
    complete = np.asarray(steps[:complete_frames(steps)])
    return MovieState(run_id=None if run_id is None else str(run_id), frames=int(np.sum(complete <= step)))
