"""A movie's data lives in the movie: the one check that nothing in it points outside it.

HDF5 can keep a dataset's bytes in other files (external storage: raw files named in the dataset's
creation properties; virtual datasets: slices of datasets in other HDF5 files) and can link a name to
an object in another file (external links) or to another name (soft links; user-defined links). A
reader that follows any of them reads a file the user never gave it (``/etc/passwd`` into a report, a
FIFO that hangs forever). A zarr copy is a folder whose entries could likewise be symbolic links out
of it, or FIFOs and devices instead of files.

:func:`h5_foreign_data` and :func:`store_foreign_entries` list every such object, named by its
variable, from metadata alone (no dataset is read, no link followed); the readers call
:func:`require_h5_contained` / :func:`require_store_contained` at open, before anything else, and
``check`` lists the problems.
"""
from __future__ import annotations

import os
import stat

import h5py

from tokendyn.errors import MovieError

RULE = "a movie's data must live in the movie"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _dataset_problems(name: str, oid: h5py.h5d.DatasetID) -> list[str]:
    dcpl = oid.get_create_plist()
    problems = []
    for i in range(dcpl.get_external_count()):
        target = _text(dcpl.get_external(i)[0])
        problems.append(f"{name!r} is stored outside the movie, in the raw file {target!r} (HDF5 external storage)")
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        sources = sorted({str(dcpl.get_virtual_filename(i)) for i in range(dcpl.get_virtual_count())})
        problems.append(f"{name!r} is a virtual dataset mapping data from {', '.join(map(repr, sources)) or 'other files'}")
    return problems


def _link_problem(name: str, gid: h5py.h5g.GroupID, raw: bytes, kind: int) -> str:
    if kind == h5py.h5l.TYPE_SOFT:
        return f"{name!r} is a soft link to {_text(gid.links.get_val(raw))!r}, not the variable itself"
    if kind == h5py.h5l.TYPE_EXTERNAL:
        filename, target = gid.links.get_val(raw)
        return f"{name!r} is an external link to {_text(target)!r} in the file {_text(filename)!r}"
    return f"{name!r} is a user-defined HDF5 link (type {kind}), not the variable itself"


def h5_foreign_data(f: h5py.File) -> list[str]:
    """Every object of ``f`` whose data is, or whose name leads, outside the file.

    Walks every link from the root group without following any link other than hard links and
    without reading any dataset: soft, external and user-defined links, datasets with external
    storage and virtual datasets are each one entry naming the variable (its path in the file).
    Raises OSError/KeyError/RuntimeError from h5py on a corrupted file (the caller names the file).
    """
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()

    def walk(gid: h5py.h5g.GroupID, prefix: str) -> None:
        for raw in gid:
            name = prefix + _text(raw)
            kind = gid.links.get_info(raw).type
            if kind != h5py.h5l.TYPE_HARD:
                problems.append(_link_problem(name, gid, raw, kind))
                continue
            oid = h5py.h5o.open(gid, raw)
            info = h5py.h5o.get_info(oid)
            if (info.fileno, info.addr) in seen:  # a second hard link to one object (or a cycle)
                continue
            seen.add((info.fileno, info.addr))
            if info.type == h5py.h5o.TYPE_GROUP:
                walk(oid, name + "/")
            elif info.type == h5py.h5o.TYPE_DATASET:
                problems.extend(_dataset_problems(name, oid))

    walk(f.id, "")
    return problems


def require_h5_contained(f: h5py.File, path: str | os.PathLike) -> None:
    """Raise :class:`MovieError` naming the first variable whose data lies outside the movie."""
    problems = h5_foreign_data(f)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MovieError(f"{problems[0]}{more}: {RULE}; refusing to read it", path)


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a regular file"


def store_foreign_entries(root: str | os.PathLike) -> tuple[list[str], int]:
    """The entries of the zarr store folder ``root`` that lead outside it, and its size in bytes.

    An entry is a problem when it is a symbolic link whose target resolves outside ``root`` (or is
    dangling), or when it (or its target) is neither a regular file nor a folder (a FIFO, a socket, a
    device). Each problem names the variable (the entry's first path component). Nothing is read;
    the size is the sum of the regular files' sizes (the bytes the store can decode from).
    """
    base = os.path.realpath(os.fspath(root))
    problems: list[str] = []
    total = 0
    for folder, dirs, files in os.walk(base, followlinks=False):
        for entry in sorted(dirs) + sorted(files):
            full = os.path.join(folder, entry)
            rel = os.path.relpath(full, base)
            variable = rel.split(os.sep)[0]
            where = f"{variable!r} (store entry {rel!r})"
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(full)
                if os.path.commonpath([base, target]) != base:
                    problems.append(f"{where} is a symbolic link to {target!r}, outside the zarr store")
                    continue
                try:
                    st = os.stat(full)
                except OSError:
                    problems.append(f"{where} is a dangling symbolic link")
                    continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size if not os.path.islink(full) else 0
            elif not stat.S_ISDIR(st.st_mode):
                problems.append(f"{where} is {_kind(st.st_mode)}, not a file of the store")
    return problems, total


def require_store_contained(root: str | os.PathLike) -> int:
    """Raise :class:`MovieError` naming the first entry of the zarr store ``root`` that leads
    outside it; return the store's size in bytes."""
    problems, total = store_foreign_entries(root)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MovieError(f"{problems[0]}{more}: {RULE}; refusing to read it", root)
    return total
