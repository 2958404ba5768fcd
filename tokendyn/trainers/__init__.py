"""tokendyn's trainers: tiny GPT models with phantom and dead tokens that record W-movies."""
from .config import PRESETS, TrainConfig, apply_overrides, from_preset
from .model import GPT
from .optim import PureBF16AdamW, round_to_bf16
from .train import TrainResult, resolve_device, result_text, train

__all__ = ["train", "TrainConfig", "TrainResult", "PRESETS", "from_preset", "apply_overrides", "GPT",
           "PureBF16AdamW", "round_to_bf16", "resolve_device", "result_text"]
