"""Stored frames read in place: the file's own pages mapped into memory, no copy.

A movie's ``W`` is stored uncompressed, one frame per chunk (or contiguous), and the recorder
appends frame after frame, so the frames of a block nearly always lie one after another in the
file. Such a block can be handed to the kernels as an array over the file's pages (``mmap``, the
pages mapped all at once with ``MAP_POPULATE``) instead of being copied out of the page cache by
HDF5: measured on the 2-core VM, mapping 2,000 Duckling II frames took 0.1 s of system time where
h5py's ``read_direct`` took 1.2-1.5 s, so the copy stops competing with the kernels for the cores.

Only when everything checks out: a Linux ``MAP_POPULATE`` (without it every page faults on first
touch, measured 2x slower than copying), the default file driver and no userblock, no filters or
external storage, chunks that hold whole frames, native byte order, the frames allocated and
exactly one frame apart, inside the file. The first mapped frame is compared once with HDF5's own
read of it; on any mismatch mapping is off for that movie. Everything else is read as before.
"""
from __future__ import annotations

import mmap
import os
import threading
import weakref
from typing import Any

import numpy as np

_POPULATE = getattr(mmap, "MAP_POPULATE", None)


class FrameMap:
    """Maps runs of stored frames of one dataset of one movie file (one per process)."""

    def __init__(self, path: str, name: str, swmr: bool, dtype: np.dtype, shape: tuple[int, ...]):
        self.path, self.name, self.swmr = path, name, swmr
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._lock = threading.Lock()
        self._layout: tuple | None = None  # ("contiguous", offset) or ("chunked", frames per chunk)
        self._usable = _POPULATE is not None
        self._checked = False
        self._chunk_offsets: dict[int, int] = {}
        self._fd: int | None = None  # kept open while this map lives

    def frames(self, positions: np.ndarray) -> np.ndarray | None:
        """Read-only ``(len(positions), *frame)`` array over the file's pages for consecutive
        frame ``positions``, or ``None`` when they cannot be mapped (then read them)."""
        if not self._usable or positions.size == 0 or np.any(np.diff(positions) != 1):
            return None
        try:
            offsets = self._offsets(int(positions[0]), int(positions[-1]) + 1)
            if offsets is None or np.any(np.diff(offsets) != self.frame_bytes):
                return None
            block = self._map(int(offsets[0]), positions.size)
            if block is not None and not self._checked:
                self._check(int(positions[0]), block[0])
            return block if self._usable else None
        except (OSError, ValueError, RuntimeError, KeyError):  # anything unexpected: read instead
            self._usable = False
            return None

    def _dataset(self) -> Any:
        from tokendyn.sources.h5 import fresh_dataset, h5_errors

        with h5_errors(self.path):
            return fresh_dataset(self.path, self.swmr, self.name)

    def _offsets(self, start: int, stop: int) -> np.ndarray | None:
        """File offsets of frames ``start .. stop - 1``; ``None`` if any is not allocated."""
        with self._lock:
            if self._layout is None:
                self._layout = self._read_layout()
                if self._layout is None:
                    self._usable = False
                    return None
            kind, value = self._layout
            if kind == "contiguous":
                return value + np.arange(start, stop, dtype=np.int64) * self.frame_bytes
            per_chunk = value
            chunks, within = np.divmod(np.arange(start, stop, dtype=np.int64), per_chunk)
            missing = [c for c in np.unique(chunks).tolist() if c not in self._chunk_offsets]
            if missing and not self._learn_chunks(missing, per_chunk):
                return None  # not written yet (or not a whole chunk): asked again later
            bases = np.array([self._chunk_offsets[c] for c in chunks.tolist()], np.int64)
            return bases + within * self.frame_bytes

    def _learn_chunks(self, missing: list[int], per_chunk: int) -> bool:
        """Cache the file offsets of the ``missing`` chunks (by chunk index); ``False`` if any is
        not allocated as a whole, unfiltered chunk. Where HDF5 can, every allocated chunk is listed
        in one walk of the chunk index (a few ms for 2,000 chunks, where one lookup per chunk took
        ~75 us: 0.15 s of a pass's CPU time, on the thread that maps the blocks)."""
        dset = self._dataset()
        whole = per_chunk * self.frame_bytes
        if hasattr(dset.id, "chunk_iter"):
            def learn(info: Any) -> None:
                if info.byte_offset is not None and info.size == whole and not info.filter_mask:
                    self._chunk_offsets[info.chunk_offset[0] // per_chunk] = int(info.byte_offset)

            dset.id.chunk_iter(learn)
            return all(c in self._chunk_offsets for c in missing)
        for chunk in missing:
            info = dset.id.get_chunk_info_by_coord((chunk * per_chunk,) + (0,) * (len(self.shape) - 1))
            if info.byte_offset is None or info.size != whole:
                return False
            self._chunk_offsets[chunk] = int(info.byte_offset)
        return True

    def _read_layout(self) -> tuple | None:
        import h5py

        dset = self._dataset()
        f = dset.file
        plist = dset.id.get_create_plist()
        if (f.driver != "sec2" or f.userblock_size != 0 or plist.get_nfilters() != 0
                or plist.get_external_count() != 0 or dset.dtype != self.dtype
                or not dset.dtype.isnative or tuple(dset.shape[1:]) != self.shape[1:]):
            return None
        layout = plist.get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            offset = dset.id.get_offset()
            return None if offset is None else ("contiguous", int(offset))
        if layout == h5py.h5d.CHUNKED and tuple(dset.chunks[1:]) == self.shape[1:]:
            return ("chunked", int(dset.chunks[0]))
        return None

    def _map(self, offset: int, n_frames: int) -> np.ndarray | None:
        length = n_frames * self.frame_bytes
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
                weakref.finalize(self, os.close, self._fd)
            fd = self._fd
        if offset + length > os.fstat(fd).st_size:
            return None
        pages = mmap.mmap(fd, offset + length - start, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ,
                          offset=start)
        # the array keeps the mapping alive; it is unmapped when the last view of it goes
        return np.frombuffer(pages, self.dtype, count=length // self.dtype.itemsize,
                             offset=offset - start).reshape((n_frames,) + self.shape[1:])

    def _check(self, position: int, mapped: np.ndarray) -> None:
        """Once: the mapped frame must equal HDF5's own read of it."""
        expected = np.empty(self.shape[1:], self.dtype)
        self._dataset().read_direct(expected, np.s_[position])
        with self._lock:
            self._checked = True
            if not np.array_equal(expected.view(np.uint8), mapped.view(np.uint8)):
                self._usable = False
