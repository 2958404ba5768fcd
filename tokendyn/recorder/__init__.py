"""tokendyn's recorder: stream embedding matrices from a training loop into a W-movie.

Imports numpy and h5py only; torch tensors are accepted without this package importing torch.
The front end (:mod:`.capture`: checks, schedule, copies off the device) hands frames to a
background writer (:mod:`.writer`: the file, the thread, commits, rollback).
"""
from .capture import Recorder
from .schedule import DenseThenSparse, Every, Schedule, Steps, parse_schedule

__all__ = ["Recorder", "Schedule", "Every", "DenseThenSparse", "Steps", "parse_schedule"]
