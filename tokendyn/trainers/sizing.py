"""Whether a config can fit at all: a lower bound of the memory its training takes, checked against
the device's memory before anything is built (a huge ``dim`` or ``batch`` otherwise ends in an
allocation traceback, an out-of-memory kill or a machine swapping for hours)."""
from __future__ import annotations

import os

import torch

from tokendyn.errors import ConfigError

from .config import TrainConfig

GIB = 2**30
BPE_BYTES_PER_ENTRY = 64  # the tokenizers BPE trainer allocates about 71 bytes per vocab_size entry up front


def parameter_count(cfg: TrainConfig, vocab_rows: int) -> int:
    """The GPT's parameters: embeddings, ``layers`` pre-LayerNorm blocks, the final norm (and the
    unembedding when untied)."""
    dim, ffn = cfg.dim, cfg.ffn_hidden
    block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * ffn + ffn) + (ffn * dim + dim)
    return vocab_rows * dim * (1 if cfg.tied else 2) + cfg.context * dim + cfg.layers * block + 2 * dim


def training_bytes_lower_bound(cfg: TrainConfig, vocab_rows: int) -> tuple[int, int]:
    """``(bytes, parameters)``: the parameters with their gradients and AdamW moments, and the
    activations one batch keeps for the backward pass (counted low: one ``dim`` and one ``ffn``
    vector per token and layer)."""
    n_params = parameter_count(cfg, vocab_rows)
    per_param = 12 if cfg.precision == "bf16-pure" else 16  # weight + gradient + two fp32 moments
    tokens = cfg.batch * cfg.context
    activation_bytes = 2 if cfg.precision != "fp32" else 4
    activations = tokens * cfg.layers * (cfg.dim + cfg.ffn_hidden) * activation_bytes
    return n_params * per_param + activations + cfg.batch * (cfg.context + 1) * 8, n_params


def device_memory(device: torch.device) -> int | None:
    """The memory of ``device`` in bytes (the machine's RAM for a CPU or MPS), ``None`` if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return host_memory()


def host_memory() -> int | None:
    """The machine's RAM in bytes, ``None`` if unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not on this platform
        return None


def check_fits(cfg: TrainConfig, device: torch.device, vocab_rows: int | None = None) -> None:
    """Raise :class:`ConfigError` if training ``cfg`` needs more memory than ``device`` has.

    Before the tokenizer is made (``vocab_rows=None``) the phantom rows alone are counted, and the
    memory the BPE trainer takes for ``vocab_size`` entries; after, the model's real vocabulary.
    """
    have = device_memory(device)
    host = host_memory()
    if vocab_rows is None and cfg.tokenizer_json is None and host is not None \
            and cfg.vocab_size * BPE_BYTES_PER_ENTRY > host:
        raise ConfigError(f"vocab_size {cfg.vocab_size:,} needs at least "
                          f"{cfg.vocab_size * BPE_BYTES_PER_ENTRY / GIB:,.1f} GiB to train the tokenizer, more than "
                          f"the {host / GIB:,.1f} GiB of this machine; make vocab_size smaller")
    need, n_params = training_bytes_lower_bound(cfg, cfg.n_phantom + 1 if vocab_rows is None else vocab_rows)
    if have is not None and need > have:
        raise ConfigError(
            f"this config needs at least {need / GIB:,.1f} GiB ({n_params / 1e6:,.1f} M parameters with their "
            f"gradients and AdamW moments, and a batch's activations), more than the {have / GIB:,.1f} GiB of "
            f"{device}; make dim, layers, vocab_size, n_phantom, batch or context smaller")
