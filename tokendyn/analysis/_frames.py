"""Streaming the stored frames of a movie through the analyses' numba kernels.

The kernels read frames as they are stored (bfloat16 bit patterns as ``uint16``, or float32) and
decode value by value (:func:`tokendyn.analysis._kernel_base.value`), so a frame is never decoded into a
fresh float array. Blocks of frames are read into a buffer that each thread reuses: fresh
multi-megabyte arrays per block cost more in page faults than the read itself on these machines
(measured: dask blocks of bits 1.34-2.2 s per 1,000 Duckling II frames vs 0.59 s into a reused
buffer). Buffers are pooled while a pass runs and trimmed to :data:`POOL_BYTES` after it.

Every block is one dask task that reads its frames (plus ``before`` frames of context) and runs a
kernel on them, so the work runs on the threads of the local scheduler or on dask.distributed
workers alike: a :class:`StoredFrames` travels as a path and a name, never as an HDF5 handle.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError
from tokendyn.sources.decode import bf16_bits_to_float32

from ._mapped import FrameMap

BLOCK_BYTES = 8 * 2**20  # stored bytes per block (4 Duckling II frames of bf16; measured best of 1-8)
POOL_BYTES = 64 * 2**20  # buffers kept between passes
# stored bytes of the blocks held at once by a local pass (mapped or read): with one block per
# core, 16 cores held 17 of the hypersphere's 192 MiB blocks (peak RSS 3.8 GB); 640 MiB keeps 3 of
# those, the most 2 cores ever held, so peak memory depends neither on the frames nor on the cores
IN_FLIGHT_BYTES = 640 * 2**20

_POOL: list[np.ndarray] = []
_POOL_LOCK = threading.Lock()
_STREAMS = [0]  # passes running in this process: while any runs, every buffer is kept


def acquire_buffer(frames: int, frame_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer of ``frames`` frames: a pooled one when one is large enough, else a new one."""
    with _POOL_LOCK:
        for j, buf in enumerate(_POOL):
            if buf.dtype == dtype and buf.shape[1:] == frame_shape and buf.shape[0] >= frames:
                return _POOL.pop(j)
    return np.empty((frames,) + frame_shape, dtype)


def release_buffer(buf: np.ndarray) -> None:
    with _POOL_LOCK:
        if _STREAMS[0] or sum(b.nbytes for b in _POOL) + buf.nbytes <= POOL_BYTES:
            _POOL.append(buf)


def _trim_pool() -> None:
    with _POOL_LOCK:
        kept, total = [], 0
        for buf in sorted(_POOL, key=lambda b: b.nbytes):
            if total + buf.nbytes <= POOL_BYTES:
                kept.append(buf)
                total += buf.nbytes
        _POOL[:] = kept


class StoredFrames:
    """The stored frames of one matrix variable of a movie (``W`` or ``E``), read block by block.

    Frames come as stored: bfloat16 as raw bits (``uint16``), anything else as float32.

    A Dataset straight from :func:`tokendyn.open_movie` is read in place where it can be
    (:meth:`mapped`, the file's pages mapped into memory), else with h5py's ``read_direct`` into
    the buffer; any other Dataset (a zarr copy, a selection, one built in memory) through its own
    dask array, with the same results.
    """

    def __init__(self, ds: xr.Dataset, name: str = "W"):
        bits = f"{name}_bits"
        raw = ds[bits] if bits in ds else ds[name]
        self.name = name
        self.dtype = np.dtype(np.uint16) if bits in ds else np.dtype(np.float32)
        self.shape = tuple(raw.shape)
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        path = ds.encoding.get("source")
        opts = ds.encoding.get("tokendyn", {})
        self.path = path
        self.swmr = bool(opts.get("swmr", False))
        chunks = opts.get("chunks")
        self.chunk_frames = int(chunks.get(fmt.DIM_FRAME, 0) if isinstance(chunks, dict) else chunks or 0)
        data = raw.data
        from tokendyn.sources.dataset import direct_frames

        # read straight from the file only what open_movie recorded as readable that way, and
        # only while this variable still holds the array it recorded (see direct_frames)
        record = direct_frames(ds, name)
        direct = (record is not None and record.path == path and record.dataset == name
                  and record.variable == raw.name and np.dtype(record.dtype) == self.dtype)
        self._array = None if direct else (data if isinstance(data, da.Array) else np.asarray(data))
        self._frame_map: FrameMap | None = None  # per process: made on first use, never pickled

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frame_map": None}

    def mapped(self, frames: np.ndarray) -> np.ndarray | None:
        """The stored frames at consecutive positions ``frames`` as a read-only array over the
        movie file's own pages (no copy; see :mod:`tokendyn.analysis._mapped`), or ``None`` where
        that is not possible (then :meth:`read` them)."""
        if self._array is not None:
            return None
        if self._frame_map is None:
            self._frame_map = FrameMap(self.path, self.name, self.swmr, self.dtype, self.shape)
        return self._frame_map.frames(np.asarray(frames, np.int64))

    def __dask_tokenize__(self) -> Any:
        return ("tokendyn-stored-frames", self.path, self.name, self.shape,
                None if self._array is None else dask.base.tokenize(self._array))

    def read(self, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The stored frames at positions ``frames``, read into ``out[:len(frames)]``."""
        frames = np.asarray(frames, np.int64)
        out = out[: frames.size]
        if frames.size == 0:
            return out
        if self._array is not None:
            block = self._array[frames]
            out[...] = block.compute(scheduler="sync") if isinstance(block, da.Array) else block
            return out
        from tokendyn.sources.h5 import fresh_dataset, h5_errors

        with h5_errors(self.path):
            dset = fresh_dataset(self.path, self.swmr, self.name)
            if frames[-1] - frames[0] == frames.size - 1 and np.all(np.diff(frames) == 1):
                dset.read_direct(out, np.s_[int(frames[0]):int(frames[-1]) + 1])
            else:
                for j, f in enumerate(frames):
                    dset.read_direct(out, np.s_[int(f)], np.s_[j])
        return out

    def block_frames(self, before: int = 0) -> int:
        """Frames per block: the ``chunks`` the movie was opened with, else about
        :data:`BLOCK_BYTES`; at least twice the context frames."""
        size = self.chunk_frames or BLOCK_BYTES // max(self.frame_bytes, 1)
        return max(1, size, 2 * before)


def decoded(block: np.ndarray) -> np.ndarray:
    """Float32 values of a stored block (bfloat16 bits, or float32 already)."""
    if block.dtype == np.uint16:
        return bf16_bits_to_float32(block)
    return block


def blocks(n_frames: int, per_block: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``n_frames`` frames."""
    return [(s, min(n_frames, s + per_block)) for s in range(0, n_frames, per_block)]


def _readonly(block: np.ndarray) -> np.ndarray:
    """A read-only view: kernels always get read-only blocks (mapped ones are), so numba compiles
    each kernel for one array type, not two."""
    view = block.view()
    view.flags.writeable = False
    return view


def _run_block(source: StoredFrames, frames: np.ndarray, start: int, stop: int, before: int,
               kernel: Callable[..., Any], args: tuple) -> Any:
    lead = min(before, start)
    block = source.mapped(frames[start - lead:stop])
    if block is not None:
        return kernel(block, lead, start, *args)
    buf = acquire_buffer(stop - start + lead, source.shape[1:], source.dtype)
    try:
        return kernel(_readonly(source.read(frames[start - lead:stop], buf)), lead, start, *args)
    finally:
        release_buffer(buf)


def stream(source: StoredFrames, frames: np.ndarray, kernel: Callable[..., Any], *args: Any, before: int = 0,
           per_block: int | None = None, progress: Callable[[int, int], None] | None = None,
           group: int = 16, sink: Callable[[int, Any], Any] | None = None) -> list[Any]:
    """``[kernel(block, lead, start, *args) for each block]``: one pass over the selected frames
    (the callback contract: :class:`tokendyn.analysis.base.BlockKernel`).

    ``frames`` are the positions (on the movie's frame axis) of the frames analysed; a block holds
    the stored frames ``frames[start - lead : stop]``, where ``lead = min(before, start)`` frames
    of context come first. Kernels must release the GIL (numba ``nogil``). With ``sink``, each
    block's result is replaced by ``sink(start, result)`` as soon as it is made (to move large
    parts of it elsewhere before the next blocks come); on local threads the sink runs on the
    kernel's thread, so it must be safe to call for different blocks at once.

    With dask's default threaded scheduler, one thread reads block after block while the kernels
    run on the other cores (HDF5 serializes reads, and two threads reading at once were measured
    2x slower than one). With any other scheduler (a dask.distributed client, processes) every
    block is a dask task run where it is read, so only its small result travels; blocks go
    ``group`` at a time, which bounds memory and drives ``progress``.
    """
    per_block = per_block or source.block_frames(before)
    ranges = blocks(len(frames), per_block)
    with _POOL_LOCK:
        _STREAMS[0] += 1
    try:
        sink = sink or (lambda start, result: result)
        if _local_threads():
            return _pipeline(source, frames, ranges, before, kernel, args, progress, sink)
        call = dask.delayed(_run_block, pure=True)
        out: list[Any] = []
        for first in range(0, len(ranges), group):
            part = ranges[first:first + group]
            done = dask.compute(*[call(source, frames, s, e, before, kernel, args) for s, e in part])
            out.extend(sink(s, result) for (s, _), result in zip(part, done))
            if progress is not None:
                progress(part[-1][1], len(frames))
        return out
    finally:
        with _POOL_LOCK:
            _STREAMS[0] -= 1
        if not _STREAMS[0]:
            _trim_pool()


def _local_threads() -> bool:
    """Whether dask would run on this process's threads (no client, no other scheduler set)."""
    import dask.threaded
    from dask.base import get_scheduler

    return get_scheduler() in (None, dask.threaded.get)


def kernels_in_flight(workers: int, block_bytes: int) -> int:
    """How many kernels a local pass runs at once: one per worker thread, fewer where their blocks
    and the one mapped next (``block_bytes`` each) would hold more than :data:`IN_FLIGHT_BYTES`;
    at least one."""
    return max(1, min(workers, IN_FLIGHT_BYTES // max(block_bytes, 1) - 1))


def _pipeline(source: StoredFrames, frames: np.ndarray, ranges: list[tuple[int, int]], before: int,
              kernel: Callable[..., Any], args: tuple, progress: Callable[[int, int], None] | None,
              sink: Callable[[int, Any], Any]) -> list[Any]:
    """Map (or read) blocks in this thread, run the kernels on a pool of threads, at most
    workers + 1 blocks held at once. A block that has to be read copies its context frames from
    the block before it (still held: its kernel is running) instead of reading them again."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor, wait

    from threadpoolctl import threadpool_limits

    workers = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    longest = max((stop - start for start, stop in ranges), default=0) + before
    in_flight = kernels_in_flight(workers, longest * source.frame_bytes)
    results: list[Any] = [None] * len(ranges)
    # a block's buffer goes back to the pool once its kernel is done and the next block has
    # taken its context from it; both happen in this thread
    buffers: dict[int, np.ndarray] = {}
    uses: dict[int, int] = {}

    def done_with(idx: int) -> None:
        uses[idx] -= 1
        if not uses[idx]:
            del uses[idx]
            if idx in buffers:  # a mapped block has none: it is unmapped when its last view goes
                release_buffer(buffers.pop(idx))

    pending: deque = deque()
    # the kernels already fill every core: BLAS inside them must not start threads of its own
    # (measured: geometry 29 s with OpenBLAS threads vs 15 s without)
    with threadpool_limits(1, user_api="blas"), \
            ThreadPoolExecutor(workers, thread_name_prefix="tokendyn-kernel") as pool:
        def run(holder: list, lead: int, start: int) -> Any:
            # the block comes in a list that this empties: the executor keeps its call's arguments
            # until after the result is out, and this thread may map the next block by then (one
            # 192 MB block more at the hypersphere's peak RSS once mapping got fast)
            block = holder.pop()
            # the sink's copy (and the page faults of its destination) on the kernel's thread,
            # not on this one, which reads: measured 1.1-1.7 s of a 3-6 s pass on this thread
            return sink(start, kernel(block, lead, start, *args))

        def collect() -> None:
            idx, fut = pending.popleft()
            try:
                results[idx] = fut.result()
            finally:
                done_with(idx)
            if progress is not None:
                progress(ranges[idx][1], len(frames))

        previous: np.ndarray | None = None
        try:
            for idx, (start, stop) in enumerate(ranges):
                lead = min(before, start)
                block = source.mapped(frames[start - lead:stop])
                if block is None:
                    buf = acquire_buffer(stop - start + lead, source.shape[1:], source.dtype)
                    buffers[idx] = buf
                    copied = 0 if previous is None else min(lead, previous.shape[0])
                    if copied:
                        buf[:copied] = previous[previous.shape[0] - copied:]
                    block = buf[:stop - start + lead]
                    source.read(frames[start - lead + copied:stop], block[copied:])
                    block = _readonly(block)
                if previous is not None:
                    done_with(idx - 1)
                previous, uses[idx] = block, 2
                pending.append((idx, pool.submit(run, [block], lead, start)))
                while len(pending) > in_flight:  # with the next one mapped, in_flight + 1 blocks held
                    collect()
            while pending:
                collect()
        finally:
            for _, fut in pending:
                fut.cancel()
            wait([fut for _, fut in pending])
            for idx in list(buffers):  # after an error: the buffers still held go back to the pool
                release_buffer(buffers.pop(idx))
    return results


IN_MEMORY_BYTES = 256 * 2**20  # per-(frame, token) results up to this size are held from the streaming pass
PER_TOKEN_CHOICES = ("auto", "memory", "lazy")  # an analysis's per_token option


def keep_in_memory(per_token: str, nbytes: int) -> bool:
    """Whether an analysis computes its per-(frame, token) results in its streaming pass and holds
    them (``per_token="memory"``, or ``"auto"`` up to :data:`IN_MEMORY_BYTES`) rather than as
    lazy arrays that read the movie again when computed (``"lazy"``)."""
    if per_token not in PER_TOKEN_CHOICES:
        raise AnalysisError(f"per_token must be 'auto', 'memory' or 'lazy', not {per_token!r}")
    return per_token == "memory" or (per_token == "auto" and nbytes <= IN_MEMORY_BYTES)


class Collected:
    """A ``(frames, *tail)`` array filled block by block as a stream's results arrive (a ``sink``:
    the block's field ``field`` is copied in and dropped, so the parts are never all held at once;
    merge that field with ``"skip"``)."""

    def __init__(self, n_frames: int, tail: Sequence[int], dtype: Any, field: str):
        self.array = np.empty((n_frames,) + tuple(tail), dtype)
        self.field = field

    def __call__(self, start: int, result: dict[str, Any]) -> dict[str, Any]:
        part = result[self.field]
        self.array[start:start + part.shape[0]] = part
        return {**result, self.field: None}


def per_token_array(per_token: str, source: StoredFrames, frames: np.ndarray, kernel: Callable[..., np.ndarray],
                    *args: Any, tail: Sequence[int], dtype: Any, field: str,
                    before: int = 0) -> tuple[Any, Collected | None]:
    """An analysis's per-(frame, token) results, ``(frames, *tail)``: held, as an array that the
    streaming pass fills through the returned sink (the field ``field`` of each block's result), or
    lazy, as :func:`lazy` of ``kernel`` (the sink is then ``None``). See :func:`keep_in_memory`."""
    nbytes = len(frames) * int(np.prod(tail)) * np.dtype(dtype).itemsize
    if keep_in_memory(per_token, nbytes):
        held = Collected(len(frames), tail, dtype, field)
        return held.array, held
    return lazy(source, frames, kernel, *args, tail=tail, dtype=dtype, before=before), None


def lazy(source: StoredFrames, frames: np.ndarray, kernel: Callable[..., np.ndarray], *args: Any,
         tail: Sequence[int], dtype: Any, before: int = 0, per_block: int | None = None) -> da.Array:
    """A lazy ``(frame, *tail)`` dask array whose block ``[start:stop]`` is
    ``kernel(block, lead, start, *args)`` (same blocks as :func:`stream`): read when computed."""
    per_block = per_block or source.block_frames(before)
    index = da.arange(len(frames), chunks=per_block)
    tail = tuple(int(t) for t in tail)

    def one(positions: np.ndarray) -> np.ndarray:
        if positions.size == 0:
            return np.empty((0,) + tail, dtype)
        return _run_block(source, frames, int(positions[0]), int(positions[-1]) + 1, before, kernel, args)

    return da.map_blocks(one, index, dtype=dtype, new_axis=list(range(1, 1 + len(tail))) or None,
                         chunks=(index.chunks[0],) + tuple((t,) for t in tail),
                         meta=np.empty((0,) * (1 + len(tail)), dtype))
