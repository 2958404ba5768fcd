"""The recorder's front end: :class:`Recorder`, called from a training loop.

It checks what it is given, keeps the schedule, and copies each frame off its device into a
reusable host buffer (:mod:`tokendyn.recorder._snapshot`); the write happens on a background
thread (:class:`tokendyn.recorder.writer.FrameWriter`). Memory is bounded by ``buffer_frames``
host buffers per variable whatever the run's length.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time as _time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokendyn import format as fmt
from tokendyn.errors import RecorderError

from . import _checks as checks
from ._frame import Frame
from ._movie_file import RUN_ID
from ._snapshot import DeviceScalars, Slot, SlotPool, _is_torch_tensor, split_scalars
from .schedule import Schedule
from .writer import FrameWriter

_COMPRESSIONS = (None, "gzip", "lzf")


def _software() -> str:
    from tokendyn._version import __version__

    return f"tokendyn {__version__}"


class Recorder:
    """Write a W-movie frame by frame, from any training loop.

    Parameters
    ----------
    path
        The movie file to create (``.h5``).
    token_class
        Per-token class, codes 0/1/2 or names ``"live"``/``"dead"``/``"phantom"``; default all live.
    token_text, token_count
        Optional per-token text (empty for phantoms; ``str``, or ``bytes`` in UTF-8) and occurrence
        count in the training data.
    config
        Run configuration (dict, dataclass or JSON text), stored as JSON in the ``config`` attribute.
    title, seed
        Optional root attributes.
    schedule
        Which steps become frames: ``None``/``1`` every step, an int N, ``"dense:K,every:M"``,
        ``"steps:..."``, a list of steps, or a :mod:`tokendyn.recorder.schedule` object.
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
        Replace an existing file at ``path``; otherwise an existing file is an error. A movie that
        another process is writing is never replaced (:class:`~tokendyn.errors.MovieLockedError`).
    resume_after
        Open an existing movie and continue it: frames with ``step > resume_after`` are dropped
        and later captures must have larger steps. A movie whose writer was killed is continued
        too (it keeps the frames flushed before the kill).
    expect_run_id
        With ``resume_after``: the ``run_id`` the movie must have (a checkpoint's). A movie with
        another one, or none, is refused before anything in it changes.
    swmr
        Write in HDF5 single-writer/multiple-reader mode so other processes can read while the
        run records (default). After a crash such a file opens with tokendyn (or after
        ``tokendyn repair``). A resumed movie whose HDF5 superblock predates SWMR (version < 3) is
        continued without it, with a warning.
    reserve_bytes
        Disk space set aside in ``<path>.reserve`` while recording. When the disk fills up, the
        recorder stops, frees the reserve and uses it to close the movie cleanly with every frame
        written so far; HDF5 cannot close a file when not one more byte fits.
    direct_writes
        Write uncompressed frames straight to disk (``O_DIRECT``, Linux), past the page cache:
        the copy into the page cache no longer takes CPU from the training (on a 2-core VM,
        recording every step of Duckling II cost 21% of the steps/s with it, none without).
        ``None`` (default): for frames from host memory; frames from a GPU keep buffered writes,
        which on the H100 machine outran its disk (see :mod:`tokendyn.recorder._direct`). Where the
        file system refuses ``O_DIRECT``, frames are written as usual.

    Attributes
    ----------
    run_id
        The movie's ``run_id`` root attribute: a new uuid4 (hex) for a new movie, the file's for a
        resumed one (``None`` if it has none). A checkpoint stores it to find its movie again.
    frames_written
        Frames the writer has committed.
    wait_seconds
        Time :meth:`capture` spent waiting for a free buffer because the writer was behind: the
        part of a run's time that recording took from it beyond the copies themselves.

    Raises
    ------
    MovieLockedError
        Another live process is writing the movie at ``path`` (the recorder holds
        ``<path>.lock`` from here until :meth:`close`).
    RecorderError
        A bad argument, or a movie that cannot be created or resumed.

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
        expect_run_id: str | None = None,
        swmr: bool = True,
        reserve_bytes: int = 8 * 2**20,
        direct_writes: bool | None = None,
    ):
        self.path = os.fspath(path)
        self.schedule = checks.schedule(schedule, self.path)
        self._token_class = token_class  # checked at the first frame, which gives the number of tokens
        self._token_text = checks.token_texts(token_text, self.path)
        self._token_count = checks.token_counts(token_count, self.path)
        self._config = checks.config_text(config, self.path)
        self._title = checks.optional_text(title, "title", self.path)
        self._seed = None if seed is None else checks.whole_number(seed, "seed", self.path, minimum=None)
        self._scalars = None if scalars is None else checks.scalar_names(scalars, self.path)
        self.flush_every = checks.whole_number(flush_every, "flush_every", self.path, minimum=1)
        self.flush_seconds = checks.positive_seconds(flush_seconds, "flush_seconds", self.path)
        self.buffer_frames = checks.whole_number(buffer_frames, "buffer_frames", self.path, minimum=1)
        if compression not in _COMPRESSIONS:
            raise RecorderError(f"unknown compression {compression!r}; use None, 'gzip' or 'lzf'", self.path)
        self.compression = compression
        self.swmr = bool(swmr)
        self.direct_writes = direct_writes
        self.reserve_bytes = checks.whole_number(reserve_bytes, "reserve_bytes", self.path, minimum=None)
        after = None if resume_after is None else checks.whole_number(resume_after, "resume_after", self.path,
                                                                         minimum=-1)
        self.run_id: str | None = uuid.uuid4().hex
        self._pools: dict[str, SlotPool] = {}
        self._matrices: dict[str, tuple[tuple[int, ...], str]] = {}
        self._closed = False
        self._t0 = _time.monotonic()
        self._time_offset = 0.0
        self._last_step = -1
        self._n_frames = 0  # frames handed to the writer
        self.wait_seconds = 0.0  # time capture() spent waiting for a free buffer (the writer was behind)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise RecorderError(f"the folder {parent} does not exist", self.path)
        if not os.access(parent, os.W_OK):
            raise RecorderError(f"the folder {parent} is not writable", self.path)
        if os.path.isdir(self.path):
            raise RecorderError("this is a folder, not a movie file", self.path)
        self._writer = FrameWriter(self.path, flush_every=self.flush_every, flush_seconds=self.flush_seconds,
                                   swmr=self.swmr, reserve_bytes=self.reserve_bytes, direct_writes=direct_writes)
        self._writer.lock()  # before the old file is replaced or reopened: never another writer's movie
        try:
            if after is not None:
                self._resume(after, expect_run_id)
            elif os.path.lexists(self.path):
                if not overwrite:
                    raise RecorderError("a file already exists here; pass overwrite=True to replace it", self.path)
                try:
                    os.remove(self.path)
                except OSError as exc:
                    raise RecorderError(f"cannot replace the existing file: {exc.strerror}", self.path) from None
        except BaseException:
            self._closed = True
            self._writer.close()  # lets go of the lock
            raise

    # ------------------------------------------------------------------ public API
    @property
    def frames_written(self) -> int:
        """Frames the writer has committed."""
        return self._writer.frames_written

    @property
    def last_step(self) -> int:
        """The last step captured (-1 before the first frame)."""
        return self._last_step

    def wants(self, step: int) -> bool:
        """Whether ``step`` is on the schedule (and after the last recorded step)."""
        return step in self.schedule and step > self._last_step

    def capture(self, step: int, *, W: Any, E: Any = None, time: float | None = None, **scalars: Any) -> bool:
        """Record a frame at optimizer step ``step`` if the schedule wants it.

        Parameters
        ----------
        step
            The optimizer step; steps must strictly increase from call to call.
        W, E
            The embedding matrix (and the unembedding, when untied): torch tensors on any device
            or numpy arrays (float32, float16 or bfloat16, or :class:`tokendyn.format.BF16Bits`).
        time
            The frame's time stamp in seconds; default the seconds since the recorder was made.
        **scalars
            Per-frame scalars: Python numbers, numpy scalars or 0-d tensors.

        Returns
        -------
        bool
            Whether a frame was recorded. Only the copy off the device happens here; the write is
            done by a background thread.
        """
        step = self._check_step(step)
        if step not in self.schedule:
            return False
        matrices = {"W": W} if E is None else {"W": W, "E": E}
        checks.scalar_values(scalars, self.path)
        time = checks.time_stamp(time, self.path)
        if not self._writer.started:
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
        self._writer.flush()

    def close(self) -> None:
        """Write every pending frame, flush and close the file (and let go of its lock). Safe to call twice.

        Closing before any frame is an error, but not while an exception is on its way up (a
        ``finally`` block, an ``except`` clause): that exception is the one to see.
        """
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        if not self._writer.started and self._writer.error is None:
            if sys.exc_info()[1] is None:
                raise RecorderError("closed before any frame was captured; no movie was written", self.path)
            return
        self._writer.raise_pending()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, _traceback) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep every frame captured so far; do not mask the loop's own exception
            self.close()
        except RecorderError:
            pass

    # ------------------------------------------------------------------ checks
    def _check_step(self, step: int) -> int:
        self._writer.raise_pending()
        if self._closed:
            raise RecorderError("capture() after close()", self.path)
        step = checks.whole_number(step, "step", self.path)
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
            got_shape, got_dtype = checks.matrix_layout(name, x, self.path)
            if got_shape != shape or got_dtype != dtype:
                raise RecorderError(f"{name} changed from {dtype}{list(shape)} to {got_dtype}{list(got_shape)}",
                                    self.path)

    # ------------------------------------------------------------------ opening the movie
    def _resume(self, after: int, expect_run_id: str | None) -> None:
        point = self._writer.resume(after, expect_run_id)
        self._matrices = point.matrices
        self._scalars = point.scalars
        self._last_step = point.last_step
        self._time_offset = point.last_time
        self._n_frames = point.frames
        self.run_id = point.run_id

    def _start(self, matrices: Mapping[str, Any], scalars: Mapping[str, Any]) -> None:
        """Fix the movie's layout from the first frame, check the per-token data and create the file."""
        on_gpu = any(_is_torch_tensor(x) and x.device.type == "cuda" for x in matrices.values())
        layouts = {name: checks.matrix_layout(name, x, self.path) for name, x in matrices.items()}
        for name, (shape, _) in layouts.items():
            if len(shape) != 2 or 0 in shape:
                raise RecorderError(f"{name} must be a 2-D (token, dim) matrix with at least one token and one "
                                    f"dim, got shape {list(shape)}", self.path)
        n_tokens, n_dims = layouts["W"][0]
        for name, (shape, _) in layouts.items():
            if shape != (n_tokens, n_dims):
                raise RecorderError(f"{name} has shape {list(shape)} but W has {[n_tokens, n_dims]}", self.path)
        scalar_names = checks.scalar_names(scalars if self._scalars is None else self._scalars, self.path)
        classes = checks.token_classes(self._token_class, n_tokens, self.path)
        if self._token_text is not None and len(self._token_text) != n_tokens:
            raise RecorderError(f"token_text has {len(self._token_text)} entries, expected {n_tokens}", self.path)
        if self._token_count is not None and self._token_count.shape != (n_tokens,):
            raise RecorderError(f"token_count has shape {self._token_count.shape}, expected ({n_tokens},)", self.path)
        self._matrices, self._scalars = layouts, scalar_names
        self._writer.create(
            n_tokens=n_tokens,
            n_dims=n_dims,
            matrices={k: v[1] for k, v in self._matrices.items()},
            compression=self.compression,
            on_gpu=on_gpu,
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
                RUN_ID: self.run_id,
            },
        )

    # ------------------------------------------------------------------ the hand-off to the writer
    def _pool(self, name: str, example: Any) -> SlotPool:
        pool = self._pools.get(name)
        if pool is None:
            shape, dtype = self._matrices[name]
            pool = self._pools[name] = SlotPool(self.buffer_frames, shape, dtype, example)
        return pool

    def _acquire(self, pool: SlotPool) -> Slot:
        """A free buffer, waiting (and adding to ``wait_seconds``) while the writer is behind."""
        slot = pool.acquire(timeout=0)
        if slot is not None:
            return slot
        waiting_since = _time.monotonic()
        try:
            while True:
                self._writer.raise_pending()
                slot = pool.acquire(timeout=0.2)
                if slot is not None:
                    return slot
        finally:
            self.wait_seconds += _time.monotonic() - waiting_since

    def _enqueue(self, step: int, slots: dict[str, Slot], values: dict[str, Any],
                 device_scalars: DeviceScalars | None, time: float | None) -> None:
        when = (_time.monotonic() - self._t0 + self._time_offset) if time is None else float(time)
        self._writer.submit(Frame(self._n_frames, step, when, values, slots, self._pools, device_scalars))
        self._n_frames += 1
        self._last_step = step
