"""The recorder: stream frames of W (and E) from a training loop into a W-movie.

The copy off the device happens in :meth:`Recorder.capture`; the HDF5 write happens on a background
thread. Memory is bounded by ``buffer_frames`` host buffers per variable whatever the run's length.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import os
import queue
import shutil
import threading
import time as _time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import RecorderError
from tokendyn.format.layout import complete_frames, config_json, create_layout, frame_axis_names

from ._direct import ALIGN, DirectFrames, can_write_direct
from ._snapshot import DeviceScalars, Slot, SlotPool, _is_torch_tensor, logical_dtype, shape_of, split_scalars
from .schedule import Schedule, parse_schedule

_STOP = object()
_OPEN_RECORDERS: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _close_open_recorders() -> None:
    """A program that ends without closing its recorder still gets every captured frame written
    (and never exits while the writer thread is inside HDF5)."""
    for rec in list(_OPEN_RECORDERS):
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - at exit there is nobody left to tell
            pass
_GROW_FRAMES = 64  # the matrices' frame axis grows this many frames at a time
_GROW_PREALLOCATED = 4  # ... or this many where their chunk space comes with it (direct writes)
_MIN_COMMIT_SECONDS = 0.1  # at high frame rates, commit (and flush) at most this often
_CHECK_SPACE_BYTES = 256 * 2**20  # look at the free space at least this often
# HDF5 takes metadata space in blocks of this size (default 2 KiB): with 2 KiB blocks a new block
# lands between two frames of W about every 120 frames, with 64 KiB blocks a few times in a whole
# run (measured: 17 vs 2 breaks in 2,000 frames), so the frames lie one after another in the file
# and the analyses map them in place. Costs at most 64 KiB of file.
_META_BLOCK_BYTES = 64 * 2**10


def _file_space(direct: bool) -> dict[str, int]:
    """File access properties: metadata blocks, and for direct writes every object of 4 KiB or
    more on a 4 KiB boundary (only then: frames of other sizes would get gaps between them)."""
    aligned = {"alignment_threshold": ALIGN, "alignment_interval": ALIGN} if direct else {}
    return {"meta_block_size": _META_BLOCK_BYTES, **aligned}


def _software() -> str:
    from tokendyn._version import __version__

    return f"tokendyn {__version__}"


@dataclass
class _Frame:
    index: int
    step: int
    time: float
    scalars: dict[str, float]
    slots: dict[str, Slot] = field(default_factory=dict)
    device_scalars: DeviceScalars | None = None


class _Targets:
    """The open datasets the writer thread fills, looked up once (an h5py lookup is ~100 us)."""

    def __init__(self, f: h5py.File, matrices: list[str], series: list[str]):
        self.matrices = {name: f[name] for name in matrices}
        self.allocated = {name: d.shape[0] for name, d in self.matrices.items()}
        self.raw = {name: d.compression is None for name, d in self.matrices.items()}
        self.series = {name: f[name] for name in series}
        self.dtypes = {name: d.dtype for name, d in self.series.items()}
        # matrices whose frames go straight to disk (see recorder._direct)
        writers = {name: DirectFrames.open(f.filename, d) for name, d in self.matrices.items()
                   if DirectFrames.preallocated(d)}
        self.direct = {name: writer for name, writer in writers.items() if writer is not None}

    def close(self) -> None:
        for writer in self.direct.values():
            writer.close()
        self.direct = {}



def _token_classes(token_class: Any, n_tokens: int, path: str) -> np.ndarray:
    if token_class is None:
        return np.zeros(n_tokens, dtype=np.uint8)
    arr = np.asarray(token_class)
    if arr.dtype.kind in "US":
        arr = np.array([fmt.class_code(str(c)) for c in arr], dtype=np.uint8)
    arr = arr.astype(np.int64)
    if arr.shape != (n_tokens,):
        raise RecorderError(f"token_class has shape {arr.shape}, expected ({n_tokens},)", path)
    if arr.min(initial=0) < 0 or arr.max(initial=0) > fmt.CLASS_PHANTOM:
        raise RecorderError("token_class values must be 0 (live), 1 (dead) or 2 (phantom)", path)
    return arr.astype(np.uint8)


class Recorder:
    """Write a W-movie frame by frame, from any training loop.

    Parameters
    ----------
    path
        The movie file to create (``.h5``).
    token_class
        Per-token class, codes 0/1/2 or names ``"live"``/``"dead"``/``"phantom"``; default all live.
    token_text, token_count
        Optional per-token text (empty for phantoms) and occurrence count in the training data.
    config
        Run configuration (dict, dataclass or JSON text), stored as JSON in the ``config`` attribute.
    title, seed
        Optional root attributes.
    schedule
        Which steps become frames: ``None``/``1`` every step, an int N, ``"dense:K,every:M"``,
        ``"steps:..."``, a list of steps, or a :mod:`recorder.schedule` object.
    scalars
        Names of the per-frame scalars, known in advance. If omitted, the scalars passed to the
        first :meth:`capture` are used; a new name after that is an error (the layout is fixed
        once live readers may be attached).
    flush_every, flush_seconds
        Flush to disk every N frames or T seconds, whichever comes first, but at most ten times a
        second (at high frame rates frames are committed in batches). A killed run keeps every
        frame flushed before the kill.
    buffer_frames
        Host buffers per variable: the memory bound. ``capture`` waits when all are in flight.
    compression
        ``None`` (default, fastest), ``"gzip"`` (level 1 + shuffle; netCDF-compatible) or ``"lzf"``.
    overwrite
        Replace an existing file at ``path``; otherwise an existing file is an error.
    resume_after
        Open an existing movie and continue it: frames with ``step > resume_after`` are dropped
        and later captures must have larger steps.
    swmr
        Write in HDF5 single-writer/multiple-reader mode so other processes can read while the
        run records (default). After a crash such a file opens with tokendyn (or after
        ``tokendyn repair``).
    reserve_bytes
        Disk space set aside in ``<path>.reserve`` while recording. When the disk fills up, the
        recorder stops, frees the reserve and uses it to close the movie cleanly with every frame
        written so far; HDF5 cannot close a file when not one more byte fits.
    direct_writes
        Write uncompressed frames straight to disk (``O_DIRECT``, Linux), past the page cache:
        the copy into the page cache no longer takes CPU from the training (on a 2-core VM,
        recording every step of Duckling II cost 21% of the steps/s with it, none without).
        ``None`` (default): for frames from host memory; frames from a GPU keep buffered writes,
        which on the H100 machine outran its disk (see :mod:`recorder._direct`). Where the file
        system refuses ``O_DIRECT``, frames are written as usual.

    Attributes
    ----------
    frames_written
        Frames the writer has committed.
    wait_seconds
        Time :meth:`capture` spent waiting for a free buffer because the writer was behind: the
        part of a run's time that recording took from it beyond the copies themselves.

    Examples
    --------
    >>> with Recorder("run.h5", token_class=cls, config=cfg) as rec:  # doctest: +SKIP
    ...     for step in range(steps + 1):
    ...         rec.capture(step, W=model.wte.weight, loss=loss, lr=lr)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        token_class: Any = None,
        token_text: Sequence[str] | None = None,
        token_count: Any = None,
        config: Any = None,
        title: str | None = None,
        seed: int | None = None,
        schedule: Schedule | int | str | Iterable[int] | None = None,
        scalars: Iterable[str] | None = None,
        flush_every: int = 10,
        flush_seconds: float = 5.0,
        buffer_frames: int = 4,
        compression: str | None = fmt.DEFAULT_COMPRESSION,
        overwrite: bool = False,
        resume_after: int | None = None,
        swmr: bool = True,
        reserve_bytes: int = 8 * 2**20,
        direct_writes: bool | None = None,
    ):
        self.path = os.fspath(path)
        self.schedule = parse_schedule(schedule)
        self._token_class = token_class
        self._token_text = None if token_text is None else [str(t) for t in token_text]
        self._token_count = None if token_count is None else np.asarray(token_count, dtype=np.int64)
        self._config = config_json(config)
        self._title = title
        self._seed = seed
        self._scalars = None if scalars is None else list(scalars)
        if flush_every < 1 or flush_seconds <= 0 or buffer_frames < 1:
            raise RecorderError("flush_every, flush_seconds and buffer_frames must be positive", path)
        self.flush_every = int(flush_every)
        self.flush_seconds = float(flush_seconds)
        self.buffer_frames = int(buffer_frames)
        self.compression = compression
        self.swmr = swmr
        self.direct_writes = direct_writes
        self._file: h5py.File | None = None
        self._pools: dict[str, SlotPool] = {}
        self._matrices: dict[str, tuple[tuple[int, ...], str]] = {}
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._t0 = _time.monotonic()
        self._time_offset = 0.0
        self._last_step = -1
        self._n_frames = 0  # frames handed to the writer
        self.frames_written = 0  # frames the writer has completed
        self.wait_seconds = 0.0  # time capture() spent waiting for a free buffer (the writer was behind)
        self._resume_after = resume_after
        self.reserve_bytes = int(reserve_bytes)
        self._unchecked_bytes = 0
        self._check_after = 0
        self._reserve_path = self.path + ".reserve"
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise RecorderError(f"the folder {parent} does not exist", self.path)
        if resume_after is not None:
            self._open_for_resume(int(resume_after))
        elif os.path.exists(self.path):
            if not overwrite:
                raise RecorderError("a file already exists here; pass overwrite=True to replace it", self.path)
            try:
                os.remove(self.path)
            except OSError as exc:
                raise RecorderError(f"cannot replace the existing file: {exc}", self.path) from None
        if not os.access(parent, os.W_OK):
            raise RecorderError(f"the folder {parent} is not writable", self.path)

    # ------------------------------------------------------------------ public API
    def wants(self, step: int) -> bool:
        """Whether ``step`` is on the schedule (and after the last recorded step)."""
        return step in self.schedule and step > self._last_step

    def capture(self, step: int, *, W: Any, E: Any = None, time: float | None = None, **scalars: Any) -> bool:
        """Record a frame at optimizer step ``step`` if the schedule wants it.

        ``W`` (and ``E`` for an untied unembedding) may be torch tensors on any device or numpy
        arrays (float32, float16 or bfloat16). Scalars may be Python numbers, numpy scalars or
        0-d tensors. Returns whether a frame was recorded. Only the copy off the device happens
        here; the write is done by a background thread.
        """
        step = self._check_step(step)
        if step not in self.schedule:
            return False
        matrices = {"W": W} if E is None else {"W": W, "E": E}
        if self._file is None:
            self._start(matrices, scalars)
        self._check_frame(matrices, scalars)
        # 0-d CUDA tensors are copied asynchronously and read on the writer thread, so a CUDA loop
        # never waits for a device sync here.
        values, device_scalars = split_scalars(scalars)
        slots = {}
        for name, x in matrices.items():
            slot = slots[name] = self._acquire(self._pool(name, x))
            self._pools[name].copy_into(slot, x)
        self._enqueue(step, slots, values, device_scalars, time)
        return True

    def flush(self) -> None:
        """Block until every captured frame is written and flushed to disk."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break
        self._raise_pending()

    def close(self) -> None:
        """Write every pending frame, flush and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        if self._file is None and self._error is None:
            raise RecorderError("closed before any frame was captured; no movie was written", self.path)
        self._raise_pending()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep every frame captured so far; do not mask the loop's own exception
            self.close()
        except RecorderError:
            pass

    @property
    def last_step(self) -> int:
        """The last step captured (-1 before the first frame)."""
        return self._last_step

    # ------------------------------------------------------------------ internals
    def _check_step(self, step: int) -> int:
        self._raise_pending()
        if self._closed:
            raise RecorderError("capture() after close()", self.path)
        step = int(step)
        if step <= self._last_step:
            raise RecorderError(
                f"steps must strictly increase: got {step} after {self._last_step}", self.path
            )
        return step

    def _check_frame(self, matrices: Mapping[str, Any], scalars: Mapping[str, Any]) -> None:
        if set(matrices) != set(self._matrices):
            raise RecorderError(
                f"this movie records {sorted(self._matrices)}; got {sorted(matrices)}", self.path
            )
        unknown = set(scalars) - set(self._scalars or ())
        if unknown:
            raise RecorderError(
                f"scalar(s) {sorted(unknown)} were not declared; pass scalars=[...] to Recorder "
                "or give every scalar at the first capture",
                self.path,
            )
        for name, x in matrices.items():
            shape, dtype = self._matrices[name]
            if shape_of(x) != shape or logical_dtype(x) != dtype:
                raise RecorderError(
                    f"{name} changed from {dtype}{list(shape)} to {logical_dtype(x)}{list(shape_of(x))}",
                    self.path,
                )

    def _pool(self, name: str, example: Any) -> SlotPool:
        pool = self._pools.get(name)
        if pool is None:
            shape, dtype = self._matrices[name]
            pool = self._pools[name] = SlotPool(self.buffer_frames, shape, dtype, example)
        return pool

    def _enqueue(self, step: int, slots: dict[str, Slot], values: dict[str, Any],
                 device_scalars: DeviceScalars | None, time: float | None) -> None:
        when = (_time.monotonic() - self._t0 + self._time_offset) if time is None else float(time)
        self._queue.put(_Frame(self._n_frames, step, when, values, slots, device_scalars))
        self._n_frames += 1
        self._last_step = step

    def _acquire(self, pool: SlotPool) -> Slot:
        slot = pool.acquire(timeout=0)
        if slot is not None:
            return slot
        waiting_since = _time.monotonic()
        try:
            while True:
                self._raise_pending()
                slot = pool.acquire(timeout=0.2)
                if slot is not None:
                    return slot
        finally:
            self.wait_seconds += _time.monotonic() - waiting_since

    def _raise_pending(self) -> None:
        if self._error is not None:
            # Let the writer thread finish first: a daemon thread frozen at interpreter exit while
            # inside h5py would hold h5py's lock and hang the exit.
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()
            err = self._error
            if isinstance(err, RecorderError):
                raise err
            raise RecorderError(f"writing the movie failed: {err}", self.path) from err

    def _open_for_resume(self, after: int) -> None:
        if not os.path.exists(self.path):
            raise RecorderError("cannot resume: the movie does not exist", self.path)
        self._make_reserve()
        try:
            f = h5py.File(self.path, "r+", libver="latest", rdcc_nbytes=0, **_file_space(False))
            if any(DirectFrames.preallocated(f[name]) for name in fmt.MATRIX_VARIABLES if name in f):
                f.close()  # made for direct writes: its new chunks must be aligned too
                f = h5py.File(self.path, "r+", libver="latest", rdcc_nbytes=0, **_file_space(True))
        except OSError as exc:
            raise RecorderError(
                f"cannot open the movie to resume ({exc}); if the run crashed, run "
                f"'tokendyn repair {self.path}' first",
                self.path,
            ) from None
        steps = f[fmt.STEP][...]
        n = complete_frames(steps)
        keep = int(np.searchsorted(steps[:n], after, side="right"))
        for name in frame_axis_names(f):
            f[name].resize(keep, axis=0)
        self._matrices = {
            name: (tuple(f[name].shape[1:]), str(f[name].attrs["dtype"]))
            for name in fmt.MATRIX_VARIABLES
            if name in f
        }
        self._scalars = [name for name in frame_axis_names(f) if name not in fmt.RESERVED_NAMES]
        self._last_step = int(steps[keep - 1]) if keep else -1
        if keep:
            last_time = float(f[fmt.TIME][keep - 1])
            self._time_offset = 0.0 if np.isnan(last_time) else last_time
        self._n_frames = self.frames_written = keep
        f.flush()
        self._file = f
        self._launch()

    def _make_reserve(self) -> None:
        if self.reserve_bytes <= 0:
            return
        try:
            with open(self._reserve_path, "wb") as fh:
                fh.write(b"\0" * self.reserve_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self._drop_reserve()
            raise RecorderError(f"not enough disk space to start recording ({exc})", self.path) from None

    def _drop_reserve(self) -> None:
        try:
            os.remove(self._reserve_path)
        except FileNotFoundError:
            pass

    def _check_space(self, frame_bytes: int) -> None:
        """Stop before the disk is full. The free space is asked for again once a quarter of the
        room left at the last look has been written (a ``statvfs`` per frame costs too much at a
        thousand frames a second); a full disk met anyway is handled as an HDF5 write error."""
        self._unchecked_bytes += frame_bytes
        if self._unchecked_bytes < self._check_after:
            return
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free
        if free < frame_bytes + 2**20:
            raise OSError(28, f"No space left on device ({free} bytes free, a frame needs {frame_bytes})")
        self._unchecked_bytes = 0
        self._check_after = min((free - frame_bytes - 2**20) // 4, _CHECK_SPACE_BYTES)

    def _direct_for(self, on_gpu: bool) -> bool:
        """Whether frames (from a GPU or from host memory) go straight to disk."""
        return (not on_gpu) if self.direct_writes is None else self.direct_writes

    def _start(self, matrices: Mapping[str, Any], scalars: Mapping[str, Any]) -> None:
        on_gpu = any(_is_torch_tensor(x) and x.device.type == "cuda" for x in matrices.values())
        for name, x in matrices.items():
            shape = shape_of(x)
            if len(shape) != 2:
                raise RecorderError(f"{name} must be a 2-D (token, dim) matrix, got shape {list(shape)}", self.path)
            self._matrices[name] = (shape, logical_dtype(x))
        n_tokens, n_dims = self._matrices["W"][0]
        for name, (shape, _) in self._matrices.items():
            if shape != (n_tokens, n_dims):
                raise RecorderError(f"{name} has shape {list(shape)} but W has {[n_tokens, n_dims]}", self.path)
        if self._scalars is None:
            self._scalars = list(scalars)
        bad = [s for s in self._scalars if s in fmt.RESERVED_NAMES]
        if bad:
            raise RecorderError(f"scalar name(s) {bad} are reserved by the format", self.path)
        classes = _token_classes(self._token_class, n_tokens, self.path)
        if self._token_text is not None and len(self._token_text) != n_tokens:
            raise RecorderError(f"token_text has {len(self._token_text)} entries, expected {n_tokens}", self.path)
        if self._token_count is not None and self._token_count.shape != (n_tokens,):
            raise RecorderError(f"token_count has shape {self._token_count.shape}, expected ({n_tokens},)", self.path)
        self._make_reserve()
        smallest_frame = n_tokens * n_dims * min(np.dtype(fmt.STORAGE_DTYPES[dtype]).itemsize
                                                 for _, dtype in self._matrices.values())
        direct = (self.compression is None and self._direct_for(on_gpu)
                  and can_write_direct(os.path.dirname(os.path.abspath(self.path)), smallest_frame))
        try:
            # No chunk cache: every chunk goes to disk inside its write call, so a failed write
            # (a full disk) raises there instead of being lost in a later cache eviction.
            f = h5py.File(self.path, "w-", libver="latest", rdcc_nbytes=0, **_file_space(direct))
        except OSError as exc:
            raise RecorderError(f"cannot create the movie: {exc}", self.path) from None
        try:
            create_layout(
                f,
                n_tokens=n_tokens,
                n_dims=n_dims,
                matrices={k: v[1] for k, v in self._matrices.items()},
                scalars=self._scalars,
                token_class=classes,
                token_text=self._token_text,
                token_count=self._token_count,
                attrs={
                    "format": fmt.FORMAT_NAME,
                    "format_version": fmt.FORMAT_VERSION,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "software": _software(),
                    "config": self._config,
                    "title": self._title,
                    "seed": self._seed,
                },
                compression=self.compression,
                preallocate=direct,
            )
        except ValueError as exc:
            f.close()
            os.remove(self.path)
            raise RecorderError(str(exc), self.path) from None
        f.flush()
        self._file = f
        self._launch()

    def _launch(self) -> None:
        assert self._file is not None
        self._frame_axis = frame_axis_names(self._file)
        if self.swmr:
            self._file.swmr_mode = True
        self._thread = threading.Thread(target=self._writer_loop, name="tokendyn-recorder", daemon=True)
        self._thread.start()
        _OPEN_RECORDERS.add(self)

    def _writer_loop(self) -> None:
        f = self._file
        assert f is not None
        names = self._frame_axis
        out = _Targets(f, [n for n in names if n in self._matrices], [n for n in names if n not in self._matrices])
        pending: list[_Frame] = []
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
            self._drop_reserve()
        except BaseException as exc:  # noqa: BLE001 - surfaced on the caller's next call
            self._drop_reserve()  # on a full disk, the room to commit and close
            try:  # the frames written whole before the failure are kept
                if out is not None:
                    self._commit(f, out, pending)
            except Exception:  # noqa: BLE001 - the rollback below keeps what was committed
                pass
            error = self._describe(exc)
            if out is not None:
                out.close()
            out = None  # drop our h5py objects before the file closes
            self._rollback(f, names)
            self._drain()
            self._error = error  # only now: the file is closed before the caller can exit

    def _write_matrices(self, out: _Targets, frame: _Frame) -> None:
        """Write one frame's matrices. Their frame axis grows in blocks ahead of the data; a frame
        only counts once its ``step`` is committed, so readers never see the unwritten ones."""
        n = frame.index
        try:
            if self.reserve_bytes > 0:
                self._check_space(sum(slot.array.nbytes for slot in frame.slots.values()))
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
                                                     else fmt.count_nonfinite(slot.array, self._matrices[name][1]))
            for key, value in frame.scalars.items():
                if not isinstance(value, (float, int)):
                    frame.scalars[key] = float(value)
        finally:
            for name, slot in frame.slots.items():
                self._pools[name].release(slot)
            frame.slots = {}

    def _commit(self, f: h5py.File, out: _Targets, pending: list[_Frame]) -> None:
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

    def _describe(self, exc: BaseException) -> RecorderError:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        full_text = str(exc)
        if getattr(exc, "errno", None) in (27, 28) or any(
            hint in full_text for hint in ("No space", "File too large", "errno = 28", "errno = 27")
        ):
            return RecorderError(
                f"the disk is full; the movie keeps the {self.frames_written} frames written before ({text})",
                self.path,
            )
        return RecorderError(
            f"writing frame {self.frames_written} failed: {text}; the movie keeps the "
            f"{self.frames_written} frames written before",
            self.path,
        )

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
            if isinstance(item, _Frame):
                for name, slot in item.slots.items():
                    self._pools[name].release(slot)
            elif isinstance(item, threading.Event):
                item.set()
