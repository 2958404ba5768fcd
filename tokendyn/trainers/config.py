"""Training configuration: one dataclass, the presets from the research notes, and overrides."""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tokendyn.errors import ConfigError
from tokendyn.keyvalue import parse_pairs, parse_value

PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")
MAX_STEP = 2**63  # steps are stored as int64
SCHEDULES = ("linear", "cosine", "constant")
ROUNDINGS = ("nearest", "stochastic")
# control runs (trainers/controls.py): "none" trains normally; the others break the link between
# inputs and targets, or the gradient step, or weight decay, so that a movie shows what is NOT learning
CONTROLS = ("none", "shuffled-targets", "random-targets", "lr-zero", "no-weight-decay")


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
    control: str = "none"  # a control run, one of CONTROLS (trainers/controls.py)
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
        self._check_types()
        checks = [
            (self.layers >= 1, f"layers must be >= 1, got {self.layers}"),
            (self.dim >= 1 and self.heads >= 1, "dim and heads must be positive"),
            (self.dim % max(self.heads, 1) == 0, f"heads ({self.heads}) must divide dim ({self.dim})"),
            (self.context >= 2, f"context must be >= 2, got {self.context}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (1 <= self.steps < MAX_STEP, f"steps must be >= 1, got {self.steps}" if self.steps < 1
             else f"steps must be below 2**63 (the movie's step is an int64), got {self.steps}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.init_std > 0, f"init_std must be > 0, got {self.init_std}"),
            (self.ffn_ratio > 0, f"ffn_ratio must be > 0, got {self.ffn_ratio}"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}"),
            (all(0 <= b < 1 for b in self.betas), f"betas must be in [0, 1), got {self.betas}"),
            (self.n_phantom >= 0, f"n_phantom must be >= 0, got {self.n_phantom}"),
            (self.vocab_size >= 64, f"vocab_size must be >= 64, got {self.vocab_size}"),
            (self.vocab_size + self.n_phantom < 2**31,
             f"vocab_size + n_phantom must be below 2**31 (token ids are int32), got {self.vocab_size + self.n_phantom}"),
            (self.corpus_chars >= 1, f"corpus_chars must be >= 1, got {self.corpus_chars}"),
            (self.foreign_chars >= 0, f"foreign_chars must be >= 0, got {self.foreign_chars}"),
            (0 <= self.seed < 2**63, f"seed must be in [0, 2**63), got {self.seed}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.rounding in ROUNDINGS, f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}"),
            (self.control in CONTROLS, f"unknown control {self.control!r}; choose one of {', '.join(CONTROLS)}"),
            (self.control != "shuffled-targets" or self.batch >= 2,
             f"control shuffled-targets permutes targets across the batch: it needs batch >= 2, got {self.batch}"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             f"device must be auto, cpu, cuda or mps, got {self.device!r}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.eval_every >= 0, f"eval_every must be >= 0 (0: never), got {self.eval_every}"),
            (self.eval_batches >= 1, f"eval_batches must be >= 1, got {self.eval_batches}"),
            (self.sample_tokens >= 0, f"sample_tokens must be >= 0, got {self.sample_tokens}"),
            (self.ffn_hidden >= 1, "the MLP width must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.corpus is not None and not os.path.exists(self.corpus):
            raise ConfigError("the corpus does not exist", self.corpus)
        if self.tokenizer_json is not None and not os.path.isfile(self.tokenizer_json):
            raise ConfigError("the tokenizer.json does not exist", self.tokenizer_json)
        self._check_record()

    def _check_types(self) -> None:
        """Every field holds a value of its type (a TOML or YAML spec may give any): else name the field."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "record":
                ok = isinstance(value, (str, list, tuple)) or (isinstance(value, int) and not isinstance(value, bool))
                kind = "a schedule (N, 'dense:K,every:M', 'steps:a,b,c' or a list of steps)"
            elif f.name == "extra":
                ok, kind = isinstance(value, dict), "a table (dict)"
            else:
                ok, kind = _has_type(value, str(f.type)), str(f.type)
            if not ok:
                raise ConfigError(f"{f.name} must be {kind}, got {value!r} ({type(value).__name__})")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
        if not all(math.isfinite(b) for b in self.betas):
            raise ConfigError(f"betas must be finite numbers, got {self.betas!r}")

    def _check_record(self) -> None:
        """The record schedule parses and records at least one step of the run."""
        from tokendyn.recorder.schedule import parse_schedule

        try:
            schedule = parse_schedule(self.record)
            recorded = any(step in schedule for step in range(min(self.steps, 100_000) + 1))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"bad record schedule {self.record!r} ({exc}); use N, 'dense:K,every:M' or "
                              "'steps:a,b,c'") from None
        if not recorded and self.steps <= 100_000:
            raise ConfigError(f"the record schedule {self.record!r} records no step of this run (0 to {self.steps})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_BASE = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}

# Each preset follows its card in shared/seeds (tests/test_presets.py holds the card's figure beside
# each field). Where a card names no schedule, the learning rate decays to 10 % of its peak
# (min_lr_ratio=0.1), so that a freeze, if one happens, is the lattice's doing and not a learning
# rate of zero; Duckling II's card names HF Trainer's linear decay, which ends at zero, and keeps it.
PRESETS: dict[str, dict[str, Any]] = {
    # no card: trains in seconds on 2 CPU cores and still beats the unigram baseline in 200 steps
    "tiny": dict(layers=2, dim=64, heads=2, ffn_ratio=2.0, context=64, batch=16, vocab_size=512,
                 n_phantom=64, steps=200, lr=3e-3, warmup=20, min_lr_ratio=0.1, precision="fp32"),
    # Duckling: TinyStories-style, 8 layers; GPT-2 truncated to its 8000 live ids + 2000 phantom rows
    # (20 % dead by design, no natural dead tokens); 10 % of Chinchilla: 1427 steps of batch 8
    "duckling": dict(layers=8, dim=128, heads=2, ffn=512, context=512, batch=8, vocab_size=8000,
                     n_phantom=2000, steps=1427, lr=6e-4, warmup=100, schedule="cosine", min_lr_ratio=0.1,
                     corpus_chars=20_000_000, foreign_chars=0, precision="bf16-mixed"),
    # Duckling II: 2 layers, 6144 live + 2048 never in the data, AdamW 1e-4, wd 0.01, linear decay
    # (to zero, as HF Trainer's), seed 42, batch 2, the card's 10K-step run
    "duckling2": dict(layers=2, dim=128, heads=2, ffn=512, context=512, batch=2, vocab_size=6144,
                      n_phantom=2048, steps=10_000, lr=1e-4, warmup=0, weight_decay=0.01, schedule="linear",
                      min_lr_ratio=0.0, seed=42, corpus_chars=20_000_000, foreign_chars=0,
                      precision="bf16-mixed"),
    # Operation Goldilocks: bf16 weights to watch the lattice; dead tokens from the foreign script
    "goldilocks-lean": dict(layers=2, dim=64, heads=1, ffn_ratio=2.0, context=64, batch=256, vocab_size=4096,
                            n_phantom=0, steps=5000, lr=1e-3, warmup=100, schedule="cosine", min_lr_ratio=0.1,
                            corpus_chars=20_000_000, foreign_chars=4_000_000, precision="bf16-pure"),
    "goldilocks-balanced": dict(layers=3, dim=96, heads=2, ffn_ratio=2.0, context=128, batch=128,
                                vocab_size=4096, n_phantom=0, steps=5000, lr=1e-3, warmup=100,
                                schedule="cosine", min_lr_ratio=0.1, corpus_chars=20_000_000,
                                foreign_chars=4_000_000, precision="bf16-pure"),
    "goldilocks-rich": dict(layers=4, dim=128, heads=2, ffn_ratio=2.0, context=128, batch=128,
                            vocab_size=4096, n_phantom=0, steps=5000, lr=1e-3, warmup=100, schedule="cosine",
                            min_lr_ratio=0.1, corpus_chars=20_000_000, foreign_chars=4_000_000,
                            precision="bf16-pure"),
    # Flannel: char-level BPE 10K over English + a foreign script (63 % of the ids live on the training
    # text, as the card's 6,301 of 10,000), a 5 MB English corpus, 1000 steps; tied / untied (W and E)
    "flannel": dict(layers=2, dim=128, heads=2, ffn_ratio=4.0, context=128, batch=32, vocab_size=10000,
                    n_phantom=0, steps=1000, lr=1e-3, warmup=50, min_lr_ratio=0.1, corpus_chars=5_000_000,
                    foreign_chars=1_000_000, precision="bf16-pure", tied=True),
    "flannel-untied": dict(layers=2, dim=128, heads=2, ffn_ratio=4.0, context=128, batch=32, vocab_size=10000,
                           n_phantom=0, steps=1000, lr=1e-3, warmup=50, min_lr_ratio=0.1,
                           corpus_chars=5_000_000, foreign_chars=1_000_000, precision="bf16-pure", tied=False),
}


def from_preset(name: str, **overrides: Any) -> TrainConfig:
    """A config from a preset name, with keyword overrides (Python values, e.g. from a TOML or YAML
    spec: an int for a float field is taken, ``"text"`` for ``steps`` is an error naming the field)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(overrides) - set(_BASE) - {"extra", "betas"}
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
    return TrainConfig(preset=name, **{**PRESETS[name], **coerce_values(overrides)})


def coerce_values(values: dict[str, Any]) -> dict[str, Any]:
    """Config values made the types of their fields (``steps=1e3`` -> 1000, ``betas=[0.9, 0.95]``
    -> a tuple); a value that cannot be is a :class:`ConfigError` naming the field."""
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, value in values.items():
        if key in ("record", "extra", "preset"):  # checked by validate(): a schedule may be an int or a list
            out[key] = value
        else:
            out[key] = _coerce(types[key], value, key)
    return out


def _has_type(value: Any, kind: str) -> bool:
    """Whether ``value`` is of the annotated type ``kind`` (``"int"``, ``"str | None"``, ``"tuple[float, float]"``)."""
    if value is None:
        return "None" in kind
    if "bool" in kind:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if "tuple" in kind:
        return isinstance(value, tuple) and len(value) == kind.count("float") and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if "int" in kind and "float" not in kind:
        return isinstance(value, int)
    if "float" in kind:
        return isinstance(value, (int, float))
    if "str" in kind:
        return isinstance(value, str)
    return True


def _coerce(field_type: Any, value: Any, key: str) -> Any:
    """A value read by :func:`tokendyn.keyvalue.parse_value`, made the type of the config field."""
    kind = str(field_type)
    try:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if "None" in kind:
                return None
            if kind == "str" and isinstance(value, str):  # a word of a text field (control="none")
                return value
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
            if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(value)
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
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
        kind = str(types[key])
        text_field = kind == "str" or ("str" in kind and value.lower() not in ("none", "null"))
        changes[key] = value if text_field else _coerce(types[key], parse_value(value), key)
    return dataclasses.replace(config, **changes)
