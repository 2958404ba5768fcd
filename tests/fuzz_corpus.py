"""A corpus of small broken W-movies for the fuzz suite (tests/test_fuzz.py).

Each case starts from a good movie written as ``conftest.write_movie`` does, copies it and breaks one
thing with h5py (or with raw bytes). :func:`build_corpus` writes every case into a folder and returns
``{name: path}``.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import h5py
import numpy as np
from conftest import random_bf16_frames, write_movie

TOKENS, DIMS, FRAMES = 8, 4, 3
HUGE = 2**40
FLIPS = 20

#: cases whose breakage is random: they may happen to leave a readable movie
RANDOM_CASES = ("20 flipped bytes",)
#: cases that are not a regular file (no bytes to compare)
NOT_FILES = ("directory named x.h5",)


def good_movie(folder: str | os.PathLike) -> str:
    """Write the good movie every case starts from and return its path."""
    path = os.path.join(os.fspath(folder), "good.h5")
    return write_movie(path, random_bf16_frames(FRAMES, TOKENS, DIMS), token_text=[f"t{i}" for i in range(TOKENS)])


def _new_w(f: h5py.File, **kwargs) -> h5py.Dataset:
    del f["W"]
    return f.create_dataset("W", **kwargs)


def _w_group(f: h5py.File) -> None:
    del f["W"]
    f.create_group("W")


def _w_0d(f: h5py.File) -> None:
    _new_w(f, data=np.uint16(7)).attrs["dtype"] = "bfloat16"


def _w_2d(f: h5py.File) -> None:
    _new_w(f, data=np.zeros((FRAMES, TOKENS), np.uint16)).attrs["dtype"] = "bfloat16"


def _token_class(values: list[int], dtype: str) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        del f["token_class"]
        f.create_dataset("token_class", data=np.asarray(values, dtype))
    return mutate


def _bad_utf8(f: h5py.File) -> None:
    texts = [f"t{i}".encode() for i in range(TOKENS)]
    texts[2] = b"\xc3\x28 \xff"
    del f["token_text"]
    f.create_dataset("token_text", data=np.array(texts, dtype=object), dtype=h5py.string_dtype("utf-8"))


def _w_bits(f: h5py.File) -> None:
    f.create_dataset("W_bits", data=np.zeros((FRAMES, TOKENS, DIMS), np.uint16))


def _version(value: object) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f.attrs["format_version"] = value
    return mutate


def _huge_scale(f: h5py.File) -> None:
    """The ``token`` dimension scale declares 2**40 rows (chunked, so the file stays small)."""
    del f["token"]
    dset = f.create_dataset("token", shape=(HUGE,), dtype="i8", chunks=(1024,))
    dset.make_scale("token")


def _labelled_float32(dtype: object) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        _new_w(f, data=np.zeros((FRAMES, TOKENS, DIMS), dtype)).attrs["dtype"] = "float32"
    return mutate


def _zero_tokens(f: h5py.File) -> None:
    _new_w(f, shape=(FRAMES, 0, DIMS), maxshape=(None, 0, DIMS), dtype="<u2").attrs["dtype"] = "bfloat16"


H5_CASES: dict[str, Callable[[h5py.File], None]] = {
    "W is a group": _w_group,
    "W is 0-d": _w_0d,
    "W is 2-D": _w_2d,
    "token_class 7": _token_class([0, 0, 7, 0, 0, 0, 0, 0], "u1"),
    "token_class -1": _token_class([0, -1, 0, 0, 0, 0, 0, 1], "i1"),
    "token_class wrong length": _token_class([0] * (TOKENS + 3), "u1"),
    "token_text not UTF-8": _bad_utf8,
    "a variable named W_bits": _w_bits,
    "format attribute opaque": lambda f: f.attrs.__setitem__("format", np.void(b"\x00ab")),
    "format_version 9.0": _version("9.0"),
    "format_version garbage": _version(np.bytes_(b"\xff\xfe garbage")),
    "token scale of 2**40 rows": _huge_scale,
    "complex W as float32": _labelled_float32(np.complex64),
    "compound W as float32": _labelled_float32([("a", "<f4"), ("b", "<f4")]),
    "zero tokens": _zero_tokens,
}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name) + ".h5"


def _truncated(good: str, path: str) -> None:
    with open(good, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _flipped(seed: int) -> Callable[[str, str], None]:
    def make(good: str, path: str) -> None:
        data = bytearray(open(good, "rb").read())
        rng = np.random.default_rng(seed)
        for pos in rng.integers(0, len(data), FLIPS):
            data[pos] ^= int(rng.integers(1, 256))
        with open(path, "wb") as f:
            f.write(bytes(data))
    return make


def build_corpus(folder: str | os.PathLike) -> dict[str, str]:
    """Write every broken movie into ``folder`` and return ``{case name: path}``.

    Parameters
    ----------
    folder
        An existing, empty folder.
    """
    folder = os.fspath(folder)
    good = good_movie(folder)
    corpus: dict[str, str] = {}
    for name, mutate in H5_CASES.items():
        path = os.path.join(folder, _safe(name))
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            mutate(f)
        corpus[name] = path
    byte_cases: dict[str, Callable[[str, str], None]] = {
        "truncated to half": _truncated,
        RANDOM_CASES[0]: _flipped(0),
        "empty file": lambda good, path: open(path, "wb").close(),
    }
    for name, make in byte_cases.items():
        path = os.path.join(folder, _safe(name))
        make(good, path)
        corpus[name] = path
    directory = os.path.join(folder, "x.h5")
    os.mkdir(directory)
    corpus[NOT_FILES[0]] = directory
    return corpus
