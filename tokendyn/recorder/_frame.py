"""One captured frame on its way from the front end (:mod:`.capture`) to the writer thread (:mod:`.writer`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._snapshot import DeviceScalars, Slot, SlotPool


@dataclass
class Frame:
    """One captured frame on its way from the front end to the writer thread.

    Attributes
    ----------
    index
        Position of the frame in the movie.
    step, time
        Its optimizer step and time stamp (seconds).
    scalars
        Per-frame scalars known at capture time (numbers, or CPU tensors converted on the thread).
    slots
        Host buffers holding the frame's matrices, by variable name; each is given back to its
        pool in ``pools`` once written (or dropped after an error).
    pools
        The pools the slots were taken from, by variable name.
    device_scalars
        Scalars still on their way off a CUDA device, read on the writer thread.
    """

    index: int
    step: int
    time: float
    scalars: dict[str, Any]
    slots: dict[str, Slot] = field(default_factory=dict)
    pools: Mapping[str, SlotPool] = field(default_factory=dict)
    device_scalars: DeviceScalars | None = None

    def release(self) -> None:
        """Give every slot back to its pool (a waiting ``capture`` may then go on)."""
        for name, slot in self.slots.items():
            self.pools[name].release(slot)
        self.slots = {}
