"""Frames written straight to disk (``O_DIRECT``), past the page cache.

Buffered writes copy every frame into the page cache first. On the 2-core VM that copy cost
1.3-15 ms of CPU per 4 MiB frame (15 ms while the kernel had to find fresh pages), taken from
the training's two threads; an ``O_DIRECT`` write of the same frame cost 0.13-0.17 ms of CPU
(the disk does the work), at 490-530 frames/s. (On the H100 machine buffered writes are faster than
its disk, 1,150-2,400 vs 480-980 frames/s, so there the recorder keeps them.)

HDF5 cannot write with ``O_DIRECT``, so the matrices are created with their chunk space allocated
as soon as the frame axis grows and never filled (:func:`tokendyn.format.layout.create_layout` with
``preallocate``), aligned to :data:`ALIGN` bytes; each frame's bytes are then written at its
chunk's offset with ``os.pwrite`` on a second, ``O_DIRECT`` descriptor. HDF5 writes everything
else as before (the frame counts as written once its ``step`` is committed), and reads see the
new bytes: a direct write drops the file's cached pages in that range.

Used only where it works: Linux ``O_DIRECT``, a file system that accepts it (tmpfs only from Linux 6.6), a
frame a whole number of :data:`ALIGN` blocks, and, per frame, a chunk allocated at an aligned
offset; otherwise the frame goes through HDF5 (``write_direct_chunk``).
"""
from __future__ import annotations

import errno
import mmap
import os
import tempfile
from typing import Any

import numpy as np

ALIGN = 4096  # O_DIRECT alignment of offsets, lengths and memory (a page; >= any block size)


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized array whose memory starts on a page (anonymous ``mmap``), so that a
    direct write can take it without a copy."""
    dtype = np.dtype(dtype)
    nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype, count=int(np.prod(shape))).reshape(shape)


def bytes_per_frame(dset: Any) -> int:
    """Bytes of one frame (one chunk) of a ``(frame, token, dim)`` dataset."""
    return int(np.prod(dset.shape[1:])) * dset.dtype.itemsize


def can_write_direct(path: str, frame_bytes: int) -> bool:
    """Whether frames of ``frame_bytes`` can be written with ``O_DIRECT`` to ``path``: the movie
    file, or the folder it is about to be created in (probed with a temporary file)."""
    if not hasattr(os, "O_DIRECT") or frame_bytes % ALIGN:
        return False
    try:
        if os.path.isdir(path):
            fd, probe = tempfile.mkstemp(dir=path, prefix=".tokendyn-direct-probe-")
            os.close(fd)
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_DIRECT)
            finally:
                os.remove(probe)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return True


class DirectFrames:
    """Writes whole frames (one chunk each) of one preallocated dataset with ``O_DIRECT``."""

    def __init__(self, fd: int, dset: Any):
        self.dset = dset
        self.frame_bytes = bytes_per_frame(dset)
        self.fd = fd
        self._staging: np.ndarray | None = None

    @classmethod
    def open(cls, path: str, dset: Any) -> DirectFrames | None:
        """A direct writer for ``dset`` of the movie at ``path``, or ``None`` where its frames
        cannot go direct (no ``O_DIRECT``, frames not whole blocks, a file system that refuses it)."""
        if not hasattr(os, "O_DIRECT") or bytes_per_frame(dset) % ALIGN:
            return None
        try:
            return cls(os.open(path, os.O_WRONLY | os.O_DIRECT), dset)
        except OSError:
            return None

    @staticmethod
    def preallocated(dset: Any) -> bool:
        """Whether ``dset`` was made for direct writes (chunk space allocated early, never filled)."""
        import h5py

        plist = dset.id.get_create_plist()
        return (plist.get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY and plist.get_nfilters() == 0
                and dset.chunks is not None and dset.chunks[0] == 1
                and tuple(dset.chunks[1:]) == tuple(dset.shape[1:]))

    def write(self, n: int, data: np.ndarray) -> bool:
        """Write frame ``n``; ``False`` when it cannot go direct (the caller writes it through
        HDF5). Raises ``OSError`` on a failed write (a full disk: ``ENOSPC``)."""
        info = self.dset.id.get_chunk_info_by_coord((n,) + (0,) * (self.dset.ndim - 1))
        offset = info.byte_offset
        if offset is None or offset % ALIGN or info.size != self.frame_bytes:
            return False
        if data.ctypes.data % ALIGN or not data.flags.c_contiguous:
            if self._staging is None:
                self._staging = aligned_empty((self.frame_bytes,), np.uint8)
            np.copyto(self._staging, data.reshape(-1).view(np.uint8))
            data = self._staging
        done = 0
        view = memoryview(data.reshape(-1).view(np.uint8))
        while done < self.frame_bytes:  # a short write (rare) goes on where it stopped
            written = os.pwrite(self.fd, view[done:], offset + done)
            if written <= 0:
                raise OSError(errno.EIO, f"direct write of frame {n} stopped after {done} bytes")
            done += written
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
