"""Disk space while recording: a reserve to close the movie on a full disk, early stops, and
the words for a failed write.

HDF5 cannot close a file when not one more byte fits, so the writer sets some space aside in
``<path>.reserve`` while it records, stops before the disk is full, and frees the reserve to
commit and close the movie with every frame written so far.
"""
from __future__ import annotations

import os
import shutil

from tokendyn.errors import RecorderError

_CHECK_SPACE_BYTES = 256 * 2**20  # look at the free space at least this often


class DiskSpace:
    """The reserve file next to a movie and the checks of the free space before each frame.

    Parameters
    ----------
    path
        The movie file; the reserve is ``<path>.reserve``.
    reserve_bytes
        Size of the reserve; 0 or less: no reserve and no checks.
    """

    def __init__(self, path: str, reserve_bytes: int):
        self.path = path
        self.reserve_bytes = reserve_bytes
        self._reserve_path = path + ".reserve"
        self._unchecked_bytes = 0
        self._check_after = 0

    @property
    def guarded(self) -> bool:
        """Whether there is a reserve (and so checks of the free space)."""
        return self.reserve_bytes > 0

    def make_reserve(self) -> None:
        """Write the reserve file; a disk too full for it is a :class:`~tokendyn.errors.RecorderError`."""
        if self.reserve_bytes <= 0:
            return
        try:
            with open(self._reserve_path, "wb") as fh:
                fh.write(b"\0" * self.reserve_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.drop_reserve()
            raise RecorderError(f"not enough disk space to start recording ({exc})", self.path) from None

    def drop_reserve(self) -> None:
        """Remove the reserve file (if there is one)."""
        try:
            os.remove(self._reserve_path)
        except FileNotFoundError:
            pass

    def check(self, frame_bytes: int) -> None:
        """Stop before the disk is full: raise ``OSError`` (ENOSPC) when a frame of ``frame_bytes``
        would not leave a MiB free.

        The free space is asked for again once a quarter of the room left at the last look has been
        written (a ``statvfs`` per frame costs too much at a thousand frames a second); a full disk met
        anyway is handled as an HDF5 write error.
        """
        self._unchecked_bytes += frame_bytes
        if self._unchecked_bytes < self._check_after:
            return
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free
        if free < frame_bytes + 2**20:
            raise OSError(28, f"No space left on device ({free} bytes free, a frame needs {frame_bytes})")
        self._unchecked_bytes = 0
        self._check_after = min((free - frame_bytes - 2**20) // 4, _CHECK_SPACE_BYTES)


def describe_failure(exc: BaseException, frames_written: int, path: str) -> RecorderError:
    """The error to raise for a failed write: a full disk said as such, anything else by the frame it hit."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    full_text = str(exc)
    if getattr(exc, "errno", None) in (27, 28) or any(
        hint in full_text for hint in ("No space", "File too large", "errno = 28", "errno = 27")
    ):
        return RecorderError(f"the disk is full; the movie keeps the {frames_written} frames written before ({text})",
                             path)
    return RecorderError(f"writing frame {frames_written} failed: {text}; the movie keeps the "
                         f"{frames_written} frames written before", path)
