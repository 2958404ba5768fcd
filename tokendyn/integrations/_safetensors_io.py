"""A strict, read-only reader of the safetensors format, one frame at a time, without torch.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (``{name:
{"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``) and the raw
little-endian tensor bytes, offsets counted from the end of the header. The header is data from
the user's disk: every offset, dtype and shape is checked against the file's size before a byte
is read, and tensors are read with ``readinto`` into a caller's buffer (bfloat16 as its raw
uint16 bits), so a stacked ``[T, V, d]`` tensor is read frame by frame in bounded memory.
Nothing here imports the ``safetensors`` package, and nothing is ever unpickled.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokendyn.errors import TokendynError

# safetensors dtype -> (numpy storage dtype, logical dtype name). BF16 is kept as its raw bits.
DTYPES = {
    "F64": (np.dtype("<f8"), "float64"), "F32": (np.dtype("<f4"), "float32"),
    "F16": (np.dtype("<f2"), "float16"), "BF16": (np.dtype("<u2"), "bfloat16"),
    "I64": (np.dtype("<i8"), "int64"), "I32": (np.dtype("<i4"), "int32"), "I16": (np.dtype("<i2"), "int16"),
    "I8": (np.dtype("i1"), "int8"), "U64": (np.dtype("<u8"), "uint64"), "U32": (np.dtype("<u4"), "uint32"),
    "U16": (np.dtype("<u2"), "uint16"), "U8": (np.dtype("u1"), "uint8"), "BOOL": (np.dtype("?"), "bool"),
}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own limit

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_ADVICE = ("is a pickle-based file, which tokendyn never opens (unpickling can run arbitrary code); "
                 "convert it to safetensors first, e.g. model.save_pretrained(dir, safe_serialization=True) "
                 "or safetensors.torch.save_file(state_dict, 'model.safetensors')")


def refuse_pickle(path: str) -> None:
    """Raise if ``path`` names a pickle-based checkpoint (by its name only: it is never opened)."""
    if os.path.basename(path).lower().endswith(PICKLE_SUFFIXES):
        raise TokendynError(PICKLE_ADVICE, path)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file: its dtype code, shape and absolute byte range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def storage(self) -> np.dtype:
        return DTYPES[self.dtype][0]

    @property
    def logical(self) -> str:
        return DTYPES[self.dtype][1]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def frame_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.storage.itemsize


class SafetensorsFile:
    """The parsed, validated header of a safetensors file; tensors are read on demand.

    Parameters
    ----------
    path
        The file; opened read-only, never modified.

    Raises
    ------
    TokendynError
        Not a safetensors file, a truncated or corrupt header, offsets past the end of the file,
        an unknown dtype, or a byte range that does not match the shape.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        refuse_pickle(self.path)
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise TokendynError(f"not a safetensors file: {size} bytes, shorter than the 8-byte header "
                                        "length", self.path)
                n = int.from_bytes(head, "little")
                if n > _MAX_HEADER or 8 + n > size:
                    raise TokendynError(f"not a safetensors file, or truncated: the header claims {n} bytes but the "
                                        f"file holds {size}", self.path)
                raw = f.read(n)
        except OSError as exc:
            raise TokendynError(f"cannot read: {exc.strerror or exc}", self.path) from None
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TokendynError("not a safetensors file: its header is not JSON", self.path) from None
        if not isinstance(header, dict):
            raise TokendynError("corrupt safetensors header: not a JSON object", self.path)
        self.size = size
        self.data_start = 8 + n
        meta = header.pop("__metadata__", None)
        self.metadata: dict[str, str] = meta if isinstance(meta, dict) else {}
        self.tensors: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            self.tensors[name] = self._entry(name, entry)

    def _entry(self, name: str, entry: object) -> TensorInfo:
        def bad(problem: str) -> TokendynError:
            return TokendynError(f"corrupt safetensors header: tensor {name!r} {problem}", self.path)

        if not isinstance(entry, dict):
            raise bad("is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPES:
            raise bad(f"has dtype {dtype!r}, which tokendyn cannot read (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise bad(f"has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"has invalid data_offsets {offsets!r}")
        begin, end = self.data_start + offsets[0], self.data_start + offsets[1]
        if end > self.size:
            raise bad(f"ends at byte {end}, past the end of the file ({self.size} bytes): truncated")
        expected = math.prod(shape) * DTYPES[dtype][0].itemsize
        if end - begin != expected:
            raise bad(f"holds {end - begin} bytes but {dtype}{shape} needs {expected}")
        return TensorInfo(name, dtype, tuple(shape), begin, end)

    def describe(self) -> str:
        """The tensors, as ``name dtype[shape]``, for error messages."""
        return ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in self.tensors.values()) or "none"

    def tensor(self, key: str) -> TensorInfo:
        """The tensor called ``key``; a missing key is an error listing those that exist."""
        try:
            return self.tensors[key]
        except KeyError:
            raise TokendynError(f"no tensor {key!r}; the file holds: {self.describe()}", self.path) from None

    def read(self, info: TensorInfo, index: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Read tensor ``info`` (or its slice ``index`` along the first axis) into ``out``.

        Returns the storage-dtype array (bfloat16 as uint16 bits). Only that slice's bytes are read.
        """
        shape, begin = info.shape, info.begin
        if index is not None:
            if not 0 <= index < shape[0]:
                raise TokendynError(f"tensor {info.name!r}: frame {index} is outside 0..{shape[0] - 1}", self.path)
            shape, begin = info.frame_shape, begin + index * info.frame_bytes
        if out is None:
            out = np.empty(shape, info.storage)
        elif out.shape != shape or out.dtype != info.storage or not out.flags.c_contiguous:
            raise ValueError("buffer does not match the tensor")  # an internal misuse, not a user error
        view = memoryview(out.reshape(-1).view(np.uint8))
        try:
            with open(self.path, "rb") as f:
                f.seek(begin)
                got = f.readinto(view)
        except OSError as exc:
            raise TokendynError(f"cannot read tensor {info.name!r}: {exc.strerror or exc}", self.path) from None
        if got != len(view):
            raise TokendynError(f"tensor {info.name!r} is truncated (the file shrank while being read)", self.path)
        return out



class ModelFolder:
    """A Hugging Face model folder: ``config.json`` and ``model.safetensors``, or the shards that
    ``model.safetensors.index.json`` names. Only the headers are read here.

    Raises
    ------
    TokendynError
        No safetensors weights (pickle-only weights are refused, never opened), a corrupt
        ``config.json`` or index, or an index naming a file outside the folder or missing.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        self.config = self._json("config.json", required=False) or {}
        single = os.path.join(self.folder, "model.safetensors")
        index = os.path.join(self.folder, "model.safetensors.index.json")
        self.files: list[SafetensorsFile] = []
        self.where: dict[str, SafetensorsFile] = {}
        if os.path.isfile(single):
            self.files.append(SafetensorsFile(single))
        elif os.path.isfile(index):
            weight_map = (self._json("model.safetensors.index.json", required=True) or {}).get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TokendynError("corrupt index: no 'weight_map' of tensor -> file names", index)
            for shard in sorted(set(weight_map.values())):
                if os.path.basename(shard) != shard or not shard.endswith(".safetensors"):
                    raise TokendynError(f"the index names {shard!r}, not a .safetensors file in this folder", index)
                if not os.path.isfile(os.path.join(self.folder, shard)):
                    raise TokendynError(f"the index names the shard {shard!r}, which is missing", index)
                self.files.append(SafetensorsFile(os.path.join(self.folder, shard)))
        else:
            names = sorted(os.listdir(self.folder)) if os.path.isdir(self.folder) else []
            pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES) and n != "training_args.bin"
                       and not n.startswith(("optimizer", "scheduler", "rng_state"))]
            if pickles:
                raise TokendynError(f"the weights are only in {', '.join(pickles[:3])}, which {PICKLE_ADVICE}",
                                    self.folder)
            raise TokendynError("no model.safetensors or model.safetensors.index.json here", self.folder)
        for f in self.files:
            for name in f.tensors:
                self.where.setdefault(name, f)

    def _json(self, name: str, required: bool) -> dict | None:
        path = os.path.join(self.folder, name)
        if not os.path.isfile(path):
            if required:
                raise TokendynError("missing", path)
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise TokendynError(f"not readable JSON: {exc}", path) from None
        if not isinstance(data, dict):
            raise TokendynError("not a JSON object", path)
        return data

    def describe(self) -> str:
        return ", ".join(f"{name} {f.tensors[name].dtype}{list(f.tensors[name].shape)}"
                         for name, f in self.where.items()) or "none"

    def tensor(self, key: str) -> tuple[SafetensorsFile, TensorInfo]:
        if key not in self.where:
            raise TokendynError(f"no tensor {key!r}; the weights hold: {self.describe()}", self.folder)
        f = self.where[key]
        return f, f.tensors[key]


def read_mask(spec: str, n_tokens: int) -> np.ndarray:
    """A boolean vector of ``n_tokens`` (true = dead) from ``FILE`` or ``FILE:KEY`` (a safetensors file)."""
    path, key = spec, None
    if not os.path.exists(spec) and ":" in spec:
        path, key = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise TokendynError("the mask file does not exist", path)
    f = SafetensorsFile(path)
    if key is None:
        vectors = [t for t in f.tensors.values() if len(t.shape) == 1]
        if len(vectors) != 1:
            raise TokendynError(f"name the mask's key (FILE:KEY): {len(vectors)} 1-D tensors, the file holds: "
                                f"{f.describe()}", path)
        info = vectors[0]
    else:
        info = f.tensor(key)
    if info.shape != (n_tokens,):
        raise TokendynError(f"the mask {info.name!r} has shape {list(info.shape)}, expected [{n_tokens}] "
                            "(one entry per token)", path)
    if info.logical in ("bfloat16",):
        raise TokendynError(f"the mask {info.name!r} must be boolean or 0/1 integers, got {info.dtype}", path)
    values = f.read(info)
    if not np.isin(values, (0, 1)).all():
        raise TokendynError(f"the mask {info.name!r} must hold only 0/1 (true = dead)", path)
    return values.astype(bool)


def tokenizer_text(folder: str | None, n_tokens: int) -> list[str] | None:
    """Per-row text from a ``tokenizer.json`` in ``folder`` (rows it does not name get ``""``)."""
    if folder is None or not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    path = os.path.join(folder, "tokenizer.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        vocab = (data.get("model") or {}).get("vocab") or {}
        pairs = (list(vocab.items()) if isinstance(vocab, dict)
                 else [(entry[0], i) for i, entry in enumerate(vocab)])  # Unigram: [[piece, score], ...]
        pairs += [(t["content"], t["id"]) for t in data.get("added_tokens") or ()]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        warnings.warn(f"{path}: not a readable tokenizer.json; the movie has no token texts", stacklevel=4)
        return None
    text = [""] * n_tokens
    for token, i in pairs:
        if isinstance(i, int) and 0 <= i < n_tokens and isinstance(token, str):
            text[i] = token
    return text


def refuse_pickles_in(folder: str) -> None:
    """Raise if ``folder`` holds pickle-based weights (found by name only)."""
    pickles = sorted(p for p in os.listdir(folder) if p.lower().endswith((".bin", ".pt", ".pth", ".ckpt")))
    if pickles:
        raise TokendynError(f"holds only pickle-based weights ({', '.join(pickles[:3])}): {PICKLE_ADVICE}", folder)


def check_steps(steps: Sequence[int], where: str) -> list[int]:
    """The steps as ints, checked to strictly increase from >= 0."""
    steps = [int(s) for s in steps]
    for a, b in zip(steps, steps[1:]):
        if b <= a:
            raise TokendynError(f"steps must strictly increase: {b} {'repeats' if a == b else 'comes after'} {a}",
                                where)
    if steps and steps[0] < 0:
        raise TokendynError(f"steps must be >= 0, got {steps[0]}", where)
    return steps


def stack_steps(f: SafetensorsFile, steps: str | Sequence[int] | None, n_frames: int) -> list[int]:
    """The steps of a stack's frames: default 0..T-1, a tensor of the file, 'a:b:c' or a sequence."""
    if steps is None:
        return list(range(n_frames))
    if isinstance(steps, str) and steps in f.tensors:
        info = f.tensors[steps]
        if len(info.shape) != 1 or info.logical not in ("int64", "int32", "int16", "int8", "uint64", "uint32",
                                                         "uint16", "uint8"):
            raise TokendynError(f"the steps tensor {steps!r} must be a 1-D integer vector, got {info.dtype}"
                                f"{list(info.shape)}", f.path)
        values: Sequence[int] = f.read(info).tolist()
    elif isinstance(steps, str):
        m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*(?::\s*(\d*)\s*)?", steps)
        if not m:
            raise TokendynError(f"--steps {steps!r} is neither a tensor of the file nor a range a:b:c; the file "
                                f"holds: {f.describe()}", f.path)
        start, stride = int(m.group(1) or 0), int(m.group(3) or 1)
        if stride < 1:
            raise TokendynError(f"--steps {steps!r}: the stride must be >= 1", f.path)
        stop = int(m.group(2)) if m.group(2) else start + stride * n_frames
        values = list(range(start, stop, stride))
    else:
        values = list(steps)
    if len(values) != n_frames:
        raise TokendynError(f"{len(values)} steps for {n_frames} frames", f.path)
    return check_steps(values, f.path)


def check_out(out: str | os.PathLike, overwrite: bool) -> str:
    """The output path, refused if it exists and ``overwrite`` is false."""
    out = os.fspath(out)
    if os.path.lexists(out) and not overwrite:
        raise TokendynError("the output already exists; pass overwrite=True (--overwrite) to replace it", out)
    return out
