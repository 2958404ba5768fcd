"""Training configuration: one dataclass, the presets from the research notes, and overrides."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tokendyn.errors import ConfigError
from tokendyn.keyvalue import parse_pairs, parse_value

PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")
SCHEDULES = ("linear", "cosine", "constant")
ROUNDINGS = ("nearest", "stochastic")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored as JSON in the movie's ``config``."""

    preset: str = "tiny"
    # model
    layers: int = 2
    dim: int = 64
    heads: int = 2
    ffn_ratio: float = 2.0
    ffn: int | None = None  # hidden width of the MLP; default dim * ffn_ratio
    context: int = 64
    tied: bool = True
    init_std: float = 0.02
    # vocabulary and data
    vocab_size: int = 512  # tokenizer ids (live + dead)
    n_phantom: int = 64  # embedding rows no tokenizer entry maps to
    corpus: str | None = None  # a text file or folder; default: the embedded story generator
    corpus_chars: int = 400_000
    foreign_chars: int = 100_000  # made-up script the tokenizer sees and the model never does
    tokenizer_json: str | None = None  # a user's tokenizer.json, truncated to vocab_size ids
    # optimisation
    batch: int = 16
    steps: int = 200
    lr: float = 3e-3
    min_lr_ratio: float = 0.0
    warmup: int = 20
    schedule: str = "linear"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    precision: str = "fp32"
    rounding: str = "nearest"  # bf16-pure: how the fp32 update is rounded onto the bf16 lattice
    seed: int = 42
    device: str = "auto"
    compile: bool = False
    cuda_graphs: bool = True  # on CUDA: the whole step as one CUDA graph, batches sampled on the GPU
    fused_loss: bool | None = None  # loss without the full logits (trainers/loss.py); None: on except on CUDA
    # recording and reporting
    record: str = "1"  # recorder schedule: N, "dense:K,every:M" or "steps:a,b,c"
    record_untied_e: bool = True
    eval_every: int = 100
    eval_batches: int = 4
    sample_tokens: int = 40
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ffn_hidden(self) -> int:
        return int(self.ffn) if self.ffn else int(round(self.dim * self.ffn_ratio))

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any inconsistency, before anything is trained."""
        checks = [
            (self.layers >= 1, f"layers must be >= 1, got {self.layers}"),
            (self.dim >= 1 and self.heads >= 1, "dim and heads must be positive"),
            (self.dim % max(self.heads, 1) == 0, f"heads ({self.heads}) must divide dim ({self.dim})"),
            (self.context >= 2, f"context must be >= 2, got {self.context}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.n_phantom >= 0, f"n_phantom must be >= 0, got {self.n_phantom}"),
            (self.vocab_size >= 64, f"vocab_size must be >= 64, got {self.vocab_size}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.rounding in ROUNDINGS, f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             f"device must be auto, cpu, cuda or mps, got {self.device!r}"),
            (self.warmup >= 0, "warmup must be >= 0"),
            (self.ffn_hidden >= 1, "the MLP width must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.corpus is not None and not os.path.exists(self.corpus):
            raise ConfigError("the corpus does not exist", self.corpus)
        from tokendyn.recorder.schedule import parse_schedule

        try:
            parse_schedule(self.record)
        except ValueError as exc:
            raise ConfigError(f"bad record schedule: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_BASE = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}

PRESETS: dict[str, dict[str, Any]] = {
    # trains in seconds on 2 CPU cores and still beats the unigram baseline in 200 steps
    "tiny": dict(layers=2, dim=64, heads=2, ffn_ratio=2.0, context=64, batch=16, vocab_size=512,
                 n_phantom=64, steps=200, lr=3e-3, warmup=20, precision="fp32"),
    # Duckling: TinyStories-style, 8 layers; GPT-2 truncated to 8000 ids + 2000 phantom rows
    "duckling": dict(layers=8, dim=128, heads=2, ffn=512, context=512, batch=8, vocab_size=8000,
                     n_phantom=2000, steps=1427, lr=6e-4, warmup=100, schedule="cosine",
                     corpus_chars=20_000_000, foreign_chars=4_000_000, precision="bf16-mixed"),
    # Duckling II: 2 layers, 6144 live + 2048 phantom, AdamW 1e-4, wd 0.01, linear decay, seed 42
    "duckling2": dict(layers=2, dim=128, heads=2, ffn=512, context=512, batch=2, vocab_size=6144,
                      n_phantom=2048, steps=2000, lr=1e-4, warmup=0, weight_decay=0.01, schedule="linear",
                      seed=42, corpus_chars=20_000_000, foreign_chars=4_000_000, precision="bf16-mixed"),
    # Operation Goldilocks: bf16 weights to watch the lattice; dead tokens from the foreign script
    "goldilocks-lean": dict(layers=2, dim=64, heads=1, ffn_ratio=2.0, context=64, batch=256, vocab_size=4096,
                            n_phantom=0, steps=5000, lr=1e-3, warmup=100, schedule="cosine",
                            corpus_chars=20_000_000, foreign_chars=4_000_000, precision="bf16-pure"),
    "goldilocks-balanced": dict(layers=3, dim=96, heads=2, ffn_ratio=2.0, context=128, batch=128,
                                vocab_size=4096, n_phantom=0, steps=5000, lr=1e-3, warmup=100,
                                schedule="cosine", corpus_chars=20_000_000, foreign_chars=4_000_000,
                                precision="bf16-pure"),
    "goldilocks-rich": dict(layers=4, dim=128, heads=2, ffn_ratio=2.0, context=128, batch=128,
                            vocab_size=4096, n_phantom=0, steps=5000, lr=1e-3, warmup=100, schedule="cosine",
                            corpus_chars=20_000_000, foreign_chars=4_000_000, precision="bf16-pure"),
    # Flannel: char-level BPE 10K over English + a foreign script, 1000 steps; tied / untied (W and E)
    "flannel": dict(layers=2, dim=128, heads=2, ffn_ratio=4.0, context=128, batch=32, vocab_size=10000,
                    n_phantom=0, steps=1000, lr=1e-3, warmup=50, corpus_chars=5_000_000,
                    foreign_chars=2_000_000, precision="bf16-pure", tied=True),
    "flannel-untied": dict(layers=2, dim=128, heads=2, ffn_ratio=4.0, context=128, batch=32, vocab_size=10000,
                           n_phantom=0, steps=1000, lr=1e-3, warmup=50, corpus_chars=5_000_000,
                           foreign_chars=2_000_000, precision="bf16-pure", tied=False),
}


def from_preset(name: str, **overrides: Any) -> TrainConfig:
    """A config from a preset name, with keyword overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **overrides}
    unknown = set(values) - set(_BASE) - {"extra", "betas"}
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
    return TrainConfig(preset=name, **values)


def _coerce(field_type: Any, value: Any, key: str) -> Any:
    """A value read by :func:`tokendyn.keyvalue.parse_value`, made the type of the config field."""
    kind = str(field_type)
    try:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if "None" in kind:
                return None
            raise ValueError(value)
        if "bool" in kind:
            words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                     "off": False}
            if isinstance(value, bool) or str(value).lower() in words:
                return value if isinstance(value, bool) else words[str(value).lower()]
            raise ValueError(value)
        if "tuple" in kind:
            items = value if isinstance(value, (tuple, list)) else (value,)
            if "..." not in kind and len(items) != kind.count("float"):  # betas: tuple[float, float]
                raise ValueError(value)
            return tuple(float(x) for x in items)
        if "int" in kind and "float" not in kind:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
                raise ValueError(value)
            return int(value)
        if "float" in kind:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(value)
            return float(value)
        if "str" in kind and not isinstance(value, str):
            raise ValueError(value)
        return value
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"cannot read {key}={value!r} as {kind}") from None


def apply_overrides(config: TrainConfig, pairs: Iterable[str]) -> TrainConfig:
    """Apply ``key=value`` strings (from ``--set``, read as :mod:`tokendyn.keyvalue` reads ``-O``)
    to a config, with types from the dataclass."""
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig) if f.name not in ("extra", "preset")}
    try:
        parsed = parse_pairs(pairs, flag="--set", read_values=False)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    changes = {}
    for key, value in parsed.items():
        if key not in types:
            raise ConfigError(f"unknown config field {key!r}; fields: {', '.join(sorted(types))}")
        text_field = "str" in str(types[key]) and value.lower() not in ("none", "null")
        changes[key] = value if text_field else _coerce(types[key], parse_value(value), key)
    return dataclasses.replace(config, **changes)
