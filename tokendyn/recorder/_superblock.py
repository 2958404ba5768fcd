"""The HDF5 superblock's file-consistency flags: read them, and clear the ones a killed writer left.

A writer opened in write or SWMR-write mode marks the superblock (versions 2 and 3: one status
byte) and unmarks it when it closes the file. A killed writer never unmarks it, and HDF5 then
refuses to open the file for writing again ("file is already open for write/SWMR write"). h5py has
no binding for ``H5Fclear`` or HDF5's private ``clear_status_flags`` property, so this module does
what ``h5clear -s`` does: it zeroes the status byte and recomputes the superblock's checksum (Jenkins'
lookup3, as HDF5 computes it). Only the holder of the movie's writer lock
(:class:`tokendyn.movie_lock.WriterLock`) may call :func:`clear_write_flags`: the lock proves that no
live process is writing the file.

Layout of a version 2/3 superblock (HDF5 file format specification, "Superblock"): signature
(8 bytes), version, size of offsets, size of lengths, status flags (1 byte each), then four
addresses (base, superblock extension, end of file, root object header) and a 4-byte checksum of
everything before it.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from tokendyn.errors import RecorderError

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF
_FLAGS_OFFSET = 11  # signature, version, size of offsets, size of lengths
_MAX_USERBLOCK = 2**40  # HDF5 looks for the signature at 0, 512, 1024, 2048, ... bytes


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` of ``data``: HDF5's metadata checksum."""
    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & _MASK

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    k = 0
    while length > 12:
        a = (a + int.from_bytes(data[k:k + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[k + 4:k + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[k + 8:k + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= rot(c, 4); c = (c + b) & _MASK  # noqa: E702 - lookup3's mix() as written
        b = (b - a) & _MASK; b ^= rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        length -= 12
        k += 12
    if length == 0:
        return c
    tail = data[k:] + bytes(12 - length)  # the missing bytes add nothing
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - rot(b, 14)) & _MASK  # noqa: E702 - lookup3's final() as written
    a ^= c; a = (a - rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & _MASK  # noqa: E702
    return c


@dataclass(frozen=True)
class Superblock:
    """Where a file's superblock is and what it says.

    Attributes
    ----------
    offset
        Byte offset of the superblock (the size of the user block).
    version
        Superblock version (0 to 3); only versions 2 and 3 have a status byte HDF5 checks.
    flags
        The status flags (versions 2/3; 0 otherwise): bit 0 write access, bit 2 SWMR write access.
    size
        Bytes covered by the checksum (versions 2/3), checksum excluded.
    """

    offset: int
    version: int
    flags: int
    size: int


def read_superblock(path: str) -> Superblock:
    """Find and parse the superblock of the HDF5 file at ``path``."""
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset < min(end, _MAX_USERBLOCK):
            fh.seek(offset)
            head = fh.read(12)
            if head[:8] == _SIGNATURE and len(head) == 12:
                version, offsets, _lengths, flags = head[8:12]
                if version < 2:
                    return Superblock(offset, version, 0, 0)
                if offsets not in (2, 4, 8):
                    break
                return Superblock(offset, version, flags, 12 + 4 * offsets)
            offset = 512 if offset == 0 else offset * 2
    raise RecorderError("not an HDF5 file (no superblock found)", path)


def clear_write_flags(path: str) -> bool:
    """Clear the write/SWMR-write marks a killed writer left in the superblock (``h5clear -s``).

    Call it only while holding the movie's writer lock. Superblocks older than version 2 have no
    status byte HDF5 checks: they are left alone.

    Returns
    -------
    bool
        Whether the file was changed.
    """
    block = read_superblock(path)
    if block.version < 2 or not block.flags:
        return False
    with open(path, "r+b") as fh:
        fh.seek(block.offset)
        head = bytearray(fh.read(block.size + 4))
        if lookup3(bytes(head[:block.size])) != struct.unpack_from("<I", head, block.size)[0]:
            raise RecorderError("the superblock's checksum is wrong: the file is damaged; try 'tokendyn repair'", path)
        head[_FLAGS_OFFSET] = 0
        struct.pack_into("<I", head, block.size, lookup3(bytes(head[:block.size])))
        fh.seek(block.offset)
        fh.write(head)
        fh.flush()
        os.fsync(fh.fileno())
    return True
