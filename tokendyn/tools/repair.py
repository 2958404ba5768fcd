"""``repair``: write a clean copy of a movie whose writer crashed, for tools other than tokendyn.

A movie written in SWMR mode whose writer was killed keeps HDF5's "open for write" flags, so plain
``h5py.File(path, "r")`` and ``xarray.open_dataset`` refuse it (tokendyn itself opens it). The copy
holds every complete frame and everything else the movie holds (a user's own variables, groups and
attributes, on the root and on every variable), is closed cleanly, opens anywhere, and has an HDF5
superblock that the recorder can reopen in SWMR mode (``libver="latest"``) to resume the run.

The input is never modified unless ``in_place=True``, which replaces it atomically with the clean
copy while holding the movie's writer lock (:class:`tokendyn.movie_lock.WriterLock`), so a movie that
a live process is still writing is refused, not cut short. A failed copy (a full disk, a quota, an
unreadable input) leaves the input as it was and no output or temporary file behind.
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import MovieError, MovieFormatError
from tokendyn.format.layout import complete_frames, frame_axis_names
from tokendyn.format.structure import check_structure, token_class_problem
from tokendyn.movie_lock import WriterLock
from tokendyn.sources.h5 import H5Source, forget_handles

# The recorder's file-space properties (recorder._movie_file): 64 KiB metadata blocks, and for a movie
# made for direct writes every object of 4 KiB or more on a 4 KiB boundary, so a resumed run writes
# its frames the way it wrote the first ones.
_META_BLOCK_BYTES = 64 * 2**10
_ALIGN = 4096
_BLOCK_BYTES = 16 * 2**20  # rows copied per read/write: bounded memory, and a failure is seen early

Progress = Callable[[int, int], None]


def repair(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    in_place: bool = False,
    progress: Progress | None = None,
) -> str:
    """Copy every complete frame and everything else of ``path`` into a cleanly closed movie.

    Parameters
    ----------
    path
        The movie (an HDF5 file; a crashed writer's open-for-write flags are fine).
    out
        Where to write the copy; default ``<name>.repaired.h5`` beside the input. It must not exist.
    in_place
        Replace the input with the copy (atomically, through a temporary file in its folder),
        holding the movie's writer lock meanwhile.
    progress
        Called as ``progress(done, total)`` while the matrices' frames are copied.

    Returns
    -------
    str
        The path of the clean copy.

    Raises
    ------
    tokendyn.MovieLockedError
        ``in_place`` while another live process writes the movie (names it and its PID).
    tokendyn.MovieError
        The input cannot be read, is not a valid movie, or the copy cannot be written (a full disk,
        a missing folder, no permission, an existing output); nothing is left behind.
    """
    path = os.path.abspath(os.fspath(path))
    if in_place and out is not None:
        raise MovieError("give either an output path or in_place=True, not both", path)
    if in_place:
        final = path
    else:
        final = os.path.abspath(os.fspath(out)) if out is not None else os.path.splitext(path)[0] + ".repaired.h5"
        if final == path:
            raise MovieError("the output would overwrite the input; use in_place=True", path)
        if os.path.lexists(final):
            raise MovieError("the output already exists; remove it or give another path", final)
    lock = WriterLock.acquire(path) if in_place else None
    try:
        with H5Source(path) as source, source.errors():
            frames = _complete_frames(source, path)
            mode = os.stat(path).st_mode & 0o7777 if in_place else None
            temporary = _write_copy(source, frames, final, mode, progress)
        _publish(temporary, final, replace=in_place)
        if in_place:
            forget_handles(path)  # a handle cached before the replacement shows the old file
    finally:
        if lock is not None:
            lock.release()
    return final


def _complete_frames(source: H5Source, path: str) -> int:
    """The number of complete frames of an open movie, once it passed the rules ``open_movie`` holds
    it to (so a copy never carries on what a reader would refuse)."""
    check_structure(source, path, source.stored_bytes)
    problem = token_class_problem(source[fmt.TOKEN_CLASS][...])
    if problem:
        raise MovieFormatError(problem, path)
    if fmt.TOKEN_TEXT in source:
        source.text(fmt.TOKEN_TEXT)  # invalid UTF-8 is refused here as in open_movie
    if isinstance(source.attrs.get("config"), str):
        try:
            json.loads(source.attrs["config"])
        except ValueError:
            raise MovieFormatError("the config attribute is not valid JSON", path) from None
    n = complete_frames(source[fmt.STEP][...])
    if n == 0:
        raise MovieFormatError("the movie holds zero complete frames: nothing to repair", path)
    for name in source.frame_series():
        if source[name].shape[0] < n:
            raise MovieFormatError(f"{name!r} has {source[name].shape[0]} frames but 'step' has {n} complete ones", path)
    return n


class _GuardedFile:
    """The file HDF5 writes the copy through (h5py's ``fileobj`` driver), which never fails a write.

    HDF5 2.0 does not survive a failed close: when the flush inside ``H5Fclose`` fails (a full disk)
    the file stays open with its datasets already freed, and the next close (h5py's, at interpreter
    exit at the latest) flushes them again and segfaults (``H5D__flush_all_cb``; ``repair`` on a full
    disk died with rc 139). So the first failed write is kept in :attr:`error`, it and every later
    write go to memory (reads see them), HDF5 closes the file as if all went well, and the caller
    then throws the file away. The caller stops copying as soon as :attr:`error` is set, so memory
    holds at most one block of rows and the closing metadata.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.error: OSError | None = None
        self._pos = 0
        self._size = 0  # the logical size: the file's, or more once writes go to memory
        self._overlay: list[tuple[int, bytes]] = []

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(self.fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            self._overlay.append((self._pos, bytes(view)))
        self._pos += len(view)
        self._size = max(self._size, self._pos)
        return len(view)

    def read(self, size: int = -1) -> bytes:
        size = self._size - self._pos if size < 0 else size
        try:
            data = bytearray(os.pread(self.fd, size, self._pos))
        except OSError as exc:
            self.error = self.error or exc
            data = bytearray()
        data.extend(bytes(size - len(data)))  # past the end of the file: zeros, as HDF5's own drivers give
        for offset, chunk in self._overlay:  # later writes win
            lo, hi = max(offset, self._pos), min(offset + len(chunk), self._pos + size)
            if lo < hi:
                data[lo - self._pos:hi - self._pos] = chunk[lo - offset:hi - offset]
        self._pos += size
        return bytes(data)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self) -> None:
        pass  # every write went straight to the descriptor


def _write_copy(source: H5Source, frames: int, final: str, mode: int | None, progress: Progress | None) -> str:
    """Write the copy into a new temporary file beside ``final``, synced to disk; return its path.
    ``mode``: the permissions to give it (default: a new file's). On any failure the temporary file
    is removed and the error names what failed."""
    folder, base = os.path.split(final)
    temporary = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.repair-tmp")
    try:
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise MovieError(f"cannot create the repaired copy in {folder} ({exc.strerror})", final) from None
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # in place: the permissions of the file it replaces
        sink = _GuardedFile(fd)
        with h5py.File(sink, "w", libver="latest", rdcc_nbytes=0, meta_block_size=_META_BLOCK_BYTES,
                       **_alignment(source.file)) as dst:
            _copy_objects(source.file, dst, frames, sink, progress)
        if sink.error is None:
            try:
                os.fsync(fd)
            except OSError as exc:
                sink.error = exc
        if sink.error is not None:
            raise MovieError(f"writing the repaired copy {final} failed ({sink.error.strerror or sink.error}); "
                             "the input is unchanged and no copy was left", source.path)
    except BaseException:
        os.close(fd)
        os.remove(temporary)
        raise
    os.close(fd)
    return temporary


def _alignment(src: h5py.File) -> dict[str, int]:
    direct = any(
        isinstance(src.get(name), h5py.Dataset)
        and src[name].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
        for name in fmt.MATRIX_VARIABLES
    )
    return {"alignment_threshold": _ALIGN, "alignment_interval": _ALIGN} if direct else {}


def _copy_objects(src: h5py.File, dst: h5py.File, frames: int, sink: _GuardedFile, progress: Progress | None) -> None:
    """Copy every group, dataset, committed datatype and attribute of ``src`` into ``dst``, the
    datasets on the frame axis cut to ``frames``; then the dimension scales and their attachments.
    Only hard links exist here (the source refused the others at open)."""
    on_frame_axis = set(frame_axis_names(src)) if fmt.DIM_FRAME in src else set()
    matrices = [name for name in fmt.MATRIX_VARIABLES if name in src]
    counter = _Counter(frames * len(matrices), progress)
    copied: dict[tuple[int, int], str] = {}  # (file, address) of a source object -> its path in dst
    datasets: list[str] = []

    def visit(group: h5py.Group, into: h5py.Group, prefix: str) -> None:
        _copy_attrs(group, into, prefix or "/")
        for name in group:
            obj = group[name]
            info = h5py.h5o.get_info(obj.id)
            key = (info.fileno, info.addr)
            if key in copied:  # a second hard link to one object
                into[name] = dst[copied[key]]
                continue
            full = prefix + name
            copied[key] = full
            if isinstance(obj, h5py.Group):
                visit(obj, into.create_group(name), full + "/")
            elif isinstance(obj, h5py.Dataset):
                rows = frames if full in on_frame_axis else None
                _copy_dataset(obj, into, name, rows, sink, counter if full in matrices else None)
                datasets.append(full)
            else:  # a committed datatype
                into[name] = obj.dtype
            if sink.error is not None:
                return

    visit(src, dst, "")
    if sink.error is not None:
        return
    _copy_dimension_scales(src, dst, datasets, copied)


class _Counter:
    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress

    def add(self, rows: int) -> None:
        self.done += rows
        if self.progress is not None:
            self.progress(self.done, self.total)


def _copy_dataset(src: h5py.Dataset, into: h5py.Group, name: str, rows: int | None, sink: _GuardedFile,
                  counter: _Counter | None) -> None:
    """Copy one dataset with its creation properties (chunks, filters, fill value, allocation),
    its first ``rows`` rows (all when ``None``) and its attributes."""
    if src.shape is None:  # an empty dataspace: no data, attributes only
        dst = into.create_dataset(name, data=h5py.Empty(src.dtype))
    elif src.shape == ():
        dst = into.create_dataset(name, data=src[()], dtype=src.dtype)
    else:
        shape = (min(rows, src.shape[0]) if rows is not None else src.shape[0],) + src.shape[1:]
        extra = {"chunks": src.chunks, "maxshape": src.maxshape} if src.chunks else {}
        dst = into.create_dataset(name, shape=shape, dtype=src.dtype, dcpl=src.id.get_create_plist(), **extra)
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * src.dtype.itemsize)
        step = max(1, _BLOCK_BYTES // row_bytes)
        if src.chunks:
            step = max(src.chunks[0], step - step % src.chunks[0])  # whole chunks: each written once
        for start in range(0, shape[0], step):
            stop = min(shape[0], start + step)
            dst[start:stop] = src[start:stop]
            if sink.error is not None:
                return
            if counter is not None:
                counter.add(stop - start)
    _copy_attrs(src, dst, src.name)


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject, where: str) -> None:
    """Every attribute of ``src`` with its stored type, but HDF5's dimension-scale bookkeeping
    (references into the source file: the scales are attached anew)."""
    for key in src.attrs:
        if key in ("DIMENSION_LIST", "REFERENCE_LIST") or (key in ("CLASS", "NAME") and _is_scale(src)):
            continue
        dtype = src.attrs.get_id(key).dtype
        if h5py.check_ref_dtype(dtype) is not None:
            raise MovieFormatError(f"attribute {key!r} of {where!r} holds HDF5 references, which a copy cannot keep",
                                   src.file.filename)
        dst.attrs.create(key, src.attrs[key], dtype=dtype)


def _is_scale(obj: h5py.HLObject) -> bool:
    return isinstance(obj, h5py.Dataset) and obj.is_scale


def _copy_dimension_scales(src: h5py.File, dst: h5py.File, datasets: list[str], copied: dict[tuple[int, int], str]) -> None:
    for name in datasets:
        if src[name].is_scale:
            dst[name].make_scale(h5py.h5ds.get_scale_name(src[name].id).decode("utf-8", "surrogateescape"))
    for name in datasets:
        if src[name].is_scale:
            continue
        for axis, dim in enumerate(src[name].dims):
            for scale in dim.values():
                info = h5py.h5o.get_info(scale.id)
                dst[name].dims[axis].attach_scale(dst[copied[(info.fileno, info.addr)]])


def _publish(temporary: str, final: str, *, replace: bool) -> None:
    """Move the finished copy to ``final``: replacing it (in place), or as a new file that must not
    exist (a hard link fails rather than overwrite what appeared meanwhile)."""
    try:
        if replace:
            os.replace(temporary, final)
        else:
            try:
                os.link(temporary, final)
            except FileExistsError:
                raise MovieError("the output already exists; remove it or give another path", final) from None
            except OSError:  # a file system without hard links
                if os.path.lexists(final):
                    raise MovieError("the output already exists; remove it or give another path", final) from None
                os.rename(temporary, final)
            else:
                os.remove(temporary)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _sync_folder(os.path.dirname(final))


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the file itself is synced
    finally:
        os.close(fd)
