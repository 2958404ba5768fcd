"""The recorder's background writer: one thread that puts captured frames into the movie file.

:class:`FrameWriter` owns the HDF5 file from its creation (or reopening, to resume a run) to its
close. The front end (:class:`tokendyn.recorder.Recorder`) hands it :class:`Frame` objects; the
thread writes each frame's matrices as it arrives (straight to disk where it can, see
:mod:`tokendyn.recorder._direct`), then commits the per-frame series in batches, ``step`` last,
and flushes: a SWMR reader, or the file left by a killed run, only ever counts whole frames. On a
failed write the thread keeps every frame written whole, shrinks the file to them, closes it and
holds the error for the front end to raise. Disk space for that last close is set aside in
``<path>.reserve`` while recording. The writer holds the movie's lock
(:class:`tokendyn.movie_lock.WriterLock`) from before the file is created, replaced or reopened
until it is closed, whichever way that happens.
"""
from __future__ import annotations

import atexit
import os
import queue
import threading
import time as _time
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import RecorderError
from tokendyn.format.layout import frame_axis_names
from tokendyn.movie_lock import WriterLock

from ._direct import can_write_direct
from ._frame import Frame
from ._movie_file import ResumePoint, Targets, create_movie, reopen_movie
from ._space import DiskSpace, describe_failure

_GROW_FRAMES = 64  # the matrices' frame axis grows this many frames at a time
_GROW_PREALLOCATED = 4  # ... or this many where their chunk space comes with it (direct writes)
_MIN_COMMIT_SECONDS = 0.1  # at high frame rates, commit (and flush) at most this often

_STOP = object()
_OPEN_WRITERS: weakref.WeakSet[FrameWriter] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    """A program that ends without closing its recorder still gets every captured frame written
    (and never exits while the writer thread is inside HDF5)."""
    for writer in list(_OPEN_WRITERS):
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - at exit there is nobody left to tell
            pass


class FrameWriter:
    """The movie file and the background thread that writes frames into it.

    Parameters
    ----------
    path
        The movie file.
    flush_every, flush_seconds
        Commit and flush every N frames or T seconds, whichever comes first, but at most ten
        times a second.
    swmr
        Write in HDF5 single-writer/multiple-reader mode.
    reserve_bytes
        Disk space set aside in ``<path>.reserve`` to close the movie cleanly on a full disk
        (0: none, and no checks of the free space).
    direct_writes
        Whether frames go straight to disk: ``None`` for frames from host memory only.

    Attributes
    ----------
    frames_written
        Frames committed so far.

    Notes
    -----
    Life cycle: :meth:`lock` takes the movie's writer lock; :meth:`create` or :meth:`resume`
    opens the file and starts the thread; then :meth:`submit` for each frame, :meth:`flush` when
    wanted, and :meth:`close`. A failure on the thread is raised by the next :meth:`raise_pending`
    (which :meth:`flush` calls too). The lock is let go once the file is closed: by the thread when
    a failure ends it, else by :meth:`close`.
    """

    def __init__(self, path: str, *, flush_every: int, flush_seconds: float, swmr: bool,
                 reserve_bytes: int, direct_writes: bool | None):
        self.path = path
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.swmr = swmr
        self.direct_writes = direct_writes
        self.frames_written = 0
        self._file: h5py.File | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._space = DiskSpace(path, reserve_bytes)
        self._lock: WriterLock | None = None

    # ------------------------------------------------------------------ interface for the front end
    @property
    def started(self) -> bool:
        """Whether a movie was created or reopened."""
        return self._file is not None

    @property
    def error(self) -> BaseException | None:
        """The failure that stopped the writer thread, if any."""
        return self._error

    def lock(self) -> None:
        """Take the movie's writer lock, for as long as this writer lives.

        Raises
        ------
        MovieLockedError
            Another live process writes the movie.
        """
        self._lock = WriterLock.acquire(self.path)
        _OPEN_WRITERS.add(self)  # so that a program ending without close() lets go of it too

    def create(self, *, n_tokens: int, n_dims: int, matrices: Mapping[str, str], compression: str | None,
               on_gpu: bool, **layout: Any) -> None:
        """Create the movie and start the writer thread.

        Parameters
        ----------
        n_tokens, n_dims, matrices, compression
            As for :func:`tokendyn.format.layout.create_layout` (``matrices``: logical dtype by name).
        on_gpu
            Whether the frames come from a GPU (they then keep buffered writes by default).
        **layout
            The other keyword arguments of :func:`~tokendyn.format.layout.create_layout`.
        """
        self._space.make_reserve()
        try:
            smallest_frame = n_tokens * n_dims * min(np.dtype(fmt.STORAGE_DTYPES[dtype]).itemsize
                                                     for dtype in matrices.values())
            direct = (compression is None and self._direct_for(on_gpu)
                      and can_write_direct(os.path.dirname(os.path.abspath(self.path)), smallest_frame))
            self._file = create_movie(self.path, direct=direct, n_tokens=n_tokens, n_dims=n_dims, matrices=matrices,
                                      compression=compression, **layout)
            self._launch()
        except BaseException:
            self._abandon()
            raise

    def resume(self, after: int, expect_run_id: str | None = None) -> ResumePoint:
        """Reopen the movie, drop its frames with ``step > after`` and start the writer thread.

        With ``expect_run_id``, a movie whose ``run_id`` differs is refused, unchanged.

        A movie left by a killed writer is reopened too (the lock, taken first, proves that no
        live process writes it). A movie whose HDF5 superblock is older than version 3 (written by
        another program) cannot be written in SWMR mode: it is continued without, with a warning.
        """
        if not os.path.exists(self.path):
            raise RecorderError("cannot resume: the movie does not exist", self.path)
        self._space.make_reserve()
        try:
            self._file, point = reopen_movie(self.path, after, expect_run_id)
            if self.swmr and not point.swmr_capable:
                warnings.warn(f"{self.path}: this movie's HDF5 superblock is older than version 3, so the run "
                              "continues without SWMR: live readers see the new frames only once it closes, and a "
                              "crash may leave the file unreadable ('tokendyn repair --in-place' rewrites the movie "
                              "in a format that allows SWMR)", RuntimeWarning, stacklevel=4)  # the caller of Recorder()
                self.swmr = False
            self.frames_written = point.frames
            self._launch()
        except BaseException:
            self._abandon()
            raise
        return point

    def submit(self, frame: Frame) -> None:
        """Queue a frame for the writer thread."""
        self._queue.put(frame)

    def flush(self) -> None:
        """Block until every submitted frame is written and flushed to disk."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break
        self.raise_pending()

    def close(self) -> None:
        """Write every submitted frame, close the file and stop the thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        self._unlock()  # after the thread closed the file (if it ran)
        _OPEN_WRITERS.discard(self)

    def raise_pending(self) -> None:
        """Raise the writer thread's failure, if any, as a :class:`~tokendyn.errors.RecorderError`."""
        if self._error is not None:
            # Let the writer thread finish first: a daemon thread frozen at interpreter exit while
            # inside h5py would hold h5py's lock and hang the exit.
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()
            err = self._error
            if isinstance(err, RecorderError):
                raise err
            raise RecorderError(f"writing the movie failed: {err}", self.path) from err

    # ------------------------------------------------------------------ the file and the lock
    def _abandon(self) -> None:
        """After a failed create or reopen: close the file if it was opened and give the reserve back."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
                pass
            self._file = None
        self._space.drop_reserve()

    def _unlock(self) -> None:
        """Let go of the writer lock (once the file is closed). Called by one thread at a time: the
        writer thread as it ends, or the front end's thread when there is no writer thread or
        after joining it."""
        if self._lock is not None:
            self._lock.release()

    # ------------------------------------------------------------------ the thread
    def _direct_for(self, on_gpu: bool) -> bool:
        """Whether frames (from a GPU or from host memory) go straight to disk."""
        return (not on_gpu) if self.direct_writes is None else self.direct_writes

    def _launch(self) -> None:
        assert self._file is not None
        self._frame_axis = frame_axis_names(self._file)
        if self.swmr:
            self._file.swmr_mode = True
        self._thread = threading.Thread(target=self._loop, name="tokendyn-recorder", daemon=True)
        self._thread.start()
        _OPEN_WRITERS.add(self)

    def _loop(self) -> None:
        f = self._file
        assert f is not None
        names = self._frame_axis
        matrices = [n for n in names if n in fmt.MATRIX_VARIABLES]
        out = Targets(f, matrices, [n for n in names if n not in matrices])
        pending: list[Frame] = []
        last_flush = _time.monotonic()
        try:
            while True:
                wait = None
                if pending:  # commit on time even when no further frame comes
                    due = self.flush_seconds if len(pending) < self.flush_every else _MIN_COMMIT_SECONDS
                    wait = max(0.0, last_flush + due - _time.monotonic())
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    self._commit(f, out, pending)
                    last_flush = _time.monotonic()
                    continue
                if item is _STOP:
                    break
                if isinstance(item, threading.Event):
                    self._commit(f, out, pending)
                    item.set()
                    continue
                self._write_matrices(out, item)
                pending.append(item)
                since = _time.monotonic() - last_flush
                if (len(pending) >= self.flush_every and since >= _MIN_COMMIT_SECONDS) or since >= self.flush_seconds:
                    self._commit(f, out, pending)
                    last_flush = _time.monotonic()
            self._commit(f, out, pending)
            for dset in out.matrices.values():  # trim the frames grown ahead
                dset.resize(self.frames_written, axis=0)
            f.flush()
            out.close()
            out = None
            f.close()
            self._space.drop_reserve()
        except BaseException as exc:  # noqa: BLE001 - surfaced on the caller's next call
            self._space.drop_reserve()  # on a full disk, the room to commit and close
            try:  # the frames written whole before the failure are kept
                if out is not None:
                    self._commit(f, out, pending)
            except Exception:  # noqa: BLE001 - the rollback below keeps what was committed
                pass
            error = describe_failure(exc, self.frames_written, self.path)
            if out is not None:
                out.close()
            out = None  # drop our h5py objects before the file closes
            self._rollback(f, names)
            self._unlock()
            self._drain()
            self._error = error  # only now: the file is closed before the caller can exit

    def _write_matrices(self, out: Targets, frame: Frame) -> None:
        """Write one frame's matrices. Their frame axis grows in blocks ahead of the data; a frame
        only counts once its ``step`` is committed, so readers never see the unwritten ones."""
        n = frame.index
        try:
            if self._space.guarded:
                self._space.check(sum(slot.array.nbytes for slot in frame.slots.values()))
            for name, slot in frame.slots.items():
                dset = out.matrices[name]
                if out.allocated[name] <= n:
                    # preallocated chunks are not given back when the movie closes: grow them little
                    out.allocated[name] = n + (_GROW_PREALLOCATED if name in out.direct else _GROW_FRAMES)
                    dset.resize(out.allocated[name], axis=0)
                data = slot.ready()
                direct = out.direct.get(name) if self._direct_for(on_gpu=slot.pinned is not None) else None
                if direct is not None and direct.write(n, data):
                    continue
                if out.raw[name]:  # skip h5py's selection machinery: one chunk per frame
                    dset.id.write_direct_chunk((n, 0, 0), data)
                else:
                    dset[n] = data
            if frame.device_scalars is not None:
                frame.scalars.update(frame.device_scalars.resolve())
                frame.device_scalars = None
            for name, slot in frame.slots.items():
                counted = slot.nonfinite()  # counted on the device, or here
                frame.scalars[fmt.NONFINITE[name]] = (counted if counted is not None
                                                     else fmt.count_nonfinite(slot.array, out.logical_dtypes[name]))
            for key, value in frame.scalars.items():
                if not isinstance(value, (float, int)):
                    frame.scalars[key] = float(value)
        finally:
            frame.release()

    def _commit(self, f: h5py.File, out: Targets, pending: list[Frame]) -> None:
        """Write the per-frame series of the pending frames, ``step`` last, and flush."""
        if pending:
            start = pending[0].index
            stop = start + len(pending)
            for dset in out.series.values():
                dset.resize(stop, axis=0)
            for name, dset in out.series.items():
                if name == fmt.STEP:
                    continue
                if name == fmt.TIME:
                    values = [p.time for p in pending]
                elif name == fmt.DIM_FRAME:
                    values = list(range(start, stop))
                else:
                    values = [p.scalars.get(name, np.nan) for p in pending]
                dset[start:stop] = np.asarray(values, dtype=out.dtypes[name])
            # last: a frame is complete once its step is written
            out.series[fmt.STEP][start:stop] = np.asarray([p.step for p in pending], dtype=np.int64)
            pending.clear()
            self.frames_written = stop
        f.flush()

    def _rollback(self, f: h5py.File, names: list[str]) -> None:
        """Shrink every frame-axis dataset to the last complete frame and close the file."""
        try:
            for name in names:
                if f[name].shape[0] > self.frames_written:
                    f[name].resize(self.frames_written, axis=0)
            f.flush()
        except Exception:  # noqa: BLE001 - best effort; readers drop incomplete frames anyway
            pass
        try:
            f.close()
        except Exception:  # noqa: BLE001
            pass

    def _drain(self) -> None:
        """Release the buffers of frames that will never be written, so capture() cannot hang."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Frame):
                item.release()
            elif isinstance(item, threading.Event):
                item.set()
