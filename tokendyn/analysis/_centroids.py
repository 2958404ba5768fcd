"""Per-frame centroids shared by the blocks of one streaming pass.

A block carries context frames, the last frames of the block before it, and a kernel that needs
their centroids would compute them again (the co-moving pass: 16 context frames per 32, a third
of its centroid work, 8-10% of its kernel on a Duckling II movie; the hypersphere walk about the
centroid: 32 per 64). Blocks of one pass on local threads share what they computed; a block whose
context is not known yet computes it itself, so the results never depend on the order the blocks
ran in (each frame's centroid is the same arithmetic whoever computes it: bit-identical). Sent to
dask.distributed workers, the object travels empty and each task computes its own.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from . import _kernel_base as K

KEPT_BLOCKS = 16  # blocks whose centroids are kept (a pass runs a few at once, in order)


class SharedCentroids:
    """Centroids of ``rows`` per frame of a pass's blocks, each computed once where it can be."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()  # block start -> its frames' centroids

    def __getstate__(self) -> dict:
        return {"rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["rows"])

    def of(self, block: np.ndarray, lead: int, start: int) -> np.ndarray:
        """``(frames of the block, dim)`` float64 centroids of a block whose first ``lead`` frames are
        the context before selection position ``start``."""
        own = K.block_centroids(block[lead:], self.rows)
        with self._lock:
            self._blocks[start] = own
            while len(self._blocks) > KEPT_BLOCKS:
                self._blocks.popitem(last=False)
            context = self._known(start - lead, lead, own.shape[1])
        if context is None:
            context = K.block_centroids(block[:lead], self.rows)
        return np.concatenate([context, own])

    def _known(self, first: int, count: int, width: int) -> np.ndarray | None:
        """The centroids of positions ``first .. first + count - 1`` if one kept block holds them."""
        if count == 0:
            return np.empty((0, width))
        for start, cents in self._blocks.items():
            if start <= first and first + count <= start + cents.shape[0]:
                return cents[first - start:first - start + count]
        return None
