"""tokendyn's recorder: stream embedding matrices from a training loop into a W-movie.

Imports numpy and h5py only; torch tensors are accepted without this package importing torch.
"""
from .schedule import DenseThenSparse, Every, Schedule, Steps, parse_schedule
from .writer import Recorder

__all__ = ["Recorder", "Schedule", "Every", "DenseThenSparse", "Steps", "parse_schedule"]
