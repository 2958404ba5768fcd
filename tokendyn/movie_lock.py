"""The writer's lock on a movie: ``<movie>.lock``, held with ``flock`` for the writer's whole life.

One process at a time writes a movie. The recorder (and ``repair --in-place``) takes the lock
before it creates, replaces or reopens the file and keeps it until the file is closed; a second
writer gets :class:`~tokendyn.errors.MovieLockedError` naming the path and the PID holding it, and
``overwrite`` never deletes a movie that another process is writing. The lock dies with its
process (SIGKILL, OOM, power), so a killed run leaves nothing to clean up by hand: the lock file
may remain, but nobody holds it. Readers never take the lock; :func:`writer_pid` tells them
whether a writer is alive.
"""
from __future__ import annotations

import os
import time
import weakref

from tokendyn.errors import MovieLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

_RETRY_SECONDS = 0.5  # a reader's probe (writer_pid) holds the lock for microseconds: retry over it
_HELD: weakref.WeakSet[WriterLock] = weakref.WeakSet()


def lock_path(movie: str | os.PathLike) -> str:
    """The lock file of ``movie``: the same path with ``.lock`` appended."""
    return os.path.abspath(os.fspath(movie)) + ".lock"


class WriterLock:
    """An exclusive lock on a movie path, held until :meth:`release` (or the process ends).

    Use :meth:`acquire`; the object is also a context manager.
    """

    def __init__(self, movie: str, fd: int | None):
        self.movie = movie
        self._path = lock_path(movie)  # absolute now: a later chdir must not move it
        self._fd = fd

    @classmethod
    def acquire(cls, movie: str | os.PathLike) -> WriterLock:
        """Take the lock of ``movie``.

        Raises
        ------
        MovieLockedError
            Another live process holds it (the message names it and its PID).
        """
        movie = os.fspath(movie)
        if fcntl is None:  # pragma: no cover
            return cls(movie, None)
        path = lock_path(movie)
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise MovieLockedError(f"cannot create the writer's lock file {path} ({exc.strerror})", movie) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = _read_pid(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = f"process {pid}" if pid else "another process"
                raise MovieLockedError(f"{holder} is writing this movie (it holds {path}); wait for it to finish "
                                       "or stop it first", movie) from None
            if _same_file(fd, path):  # else the last holder removed it between our open and flock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        lock = cls(movie, fd)
        _HELD.add(lock)
        return lock

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and let go of the lock. Safe to call twice."""
        if self._fd is None:
            return
        try:
            os.unlink(self._path)  # while still holding it: see _same_file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a lock nobody refers to any more: as release(), not leaving its file behind
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter shutdown the modules may be gone already
            pass

    def _forget_in_child(self) -> None:
        """In a forked child: close the inherited descriptor, so that the lock still dies with the
        process that took it (a flock lasts while any copy of its descriptor is open)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def _after_fork_in_child() -> None:
    for lock in list(_HELD):
        lock._forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def writer_pid(movie: str | os.PathLike) -> int | None:
    """The PID of the live process writing ``movie`` (0 if it is unknown), or ``None`` if none is.

    A reader's probe: it takes the lock shared for an instant and never creates the lock file.
    """
    if fcntl is None:  # pragma: no cover
        return None
    path = lock_path(movie)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return 0


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
