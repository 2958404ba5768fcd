"""Import the embedding snapshots a run already left on disk into a W-movie.

Four layouts, each read one frame at a time (memory is a few frames whatever the input's size):

- :func:`import_stack`: one safetensors file holding a stacked ``[T, V, d]`` tensor;
- :func:`import_snapshots`: a folder of per-step safetensors files (``*_step{N}.safetensors``);
- :func:`import_checkpoints`: a folder of Hugging Face Trainer ``checkpoint-<step>/`` folders;
- :func:`import_model`: one Hugging Face model folder (a one-frame movie).

bfloat16 is copied as its raw bits, float32 and float16 as they are: the movie holds the source's
values bit for bit (float64 is rounded to float32, with a warning). Inputs are opened read-only;
pickle-based files (``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) are refused, never opened.
"""
from __future__ import annotations

import glob as _glob
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError

from ._safetensors_io import (
    ModelFolder,
    SafetensorsFile,
    TensorInfo,
    check_out,
    check_steps,
    read_mask,
    refuse_pickle,
    refuse_pickles_in,
    stack_steps,
    tokenizer_text,
)

__all__ = ["import_stack", "import_snapshots", "import_checkpoints", "import_model", "import_path",
           "detect_kind", "parse_ids", "EMBEDDING_KEYS", "HEAD_KEYS"]

Progress = Callable[[int, int], None] | None

# Input embeddings of common Hugging Face architectures, most specific first.
EMBEDDING_KEYS = (
    "transformer.wte.weight", "model.embed_tokens.weight", "gpt_neox.embed_in.weight",
    "model.decoder.embed_tokens.weight", "transformer.word_embeddings.weight",
    "bert.embeddings.word_embeddings.weight", "roberta.embeddings.word_embeddings.weight",
    "embeddings.word_embeddings.weight", "transformer.embedding.word_embeddings.weight",
    "model.shared.weight", "shared.weight", "embed_in.weight", "embed_tokens.weight", "wte.weight",
    "tok_embeddings.weight", "word_embeddings.weight", "tok_emb.weight", "token_embedding.weight",
)
HEAD_KEYS = ("lm_head.weight", "embed_out.weight", "output.weight")
_FLOATS = ("float32", "float16", "bfloat16", "float64")


# ---------------------------------------------------------------------------------------- helpers
def parse_ids(text: str | Iterable[int] | None, n_tokens: int, what: str = "dead ids",
              where: str | None = None) -> np.ndarray:
    """``"3,5,10-20"`` (ranges inclusive) or a sequence of ints -> sorted unique ids in ``[0, n_tokens)``."""
    if text is None:
        return np.zeros(0, np.int64)
    ids: list[int] = []
    if isinstance(text, str):
        for part in filter(None, (p.strip() for p in text.split(","))):
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if not m:
                raise TokendynError(f"{what}: {part!r} is not an id or an A-B range (e.g. 3,5,10-20)", where)
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise TokendynError(f"{what}: the range {part!r} is empty", where)
            ids.extend(range(lo, hi + 1))
    else:
        ids = [int(i) for i in text]
    out = np.unique(np.asarray(ids, np.int64))
    if out.size and (out[0] < 0 or out[-1] >= n_tokens):
        raise TokendynError(f"{what}: id {out[0] if out[0] < 0 else out[-1]} is outside the {n_tokens} tokens", where)
    return out


def _classes(n_tokens: int, mask: str | None, dead_ids: Any, phantom_from: int | None,
             where: str) -> np.ndarray | None:
    if mask is None and dead_ids is None and phantom_from is None:
        return None
    cls = np.full(n_tokens, fmt.CLASS_LIVE, np.uint8)
    if mask is not None:
        cls[read_mask(mask, n_tokens)] = fmt.CLASS_DEAD
    cls[parse_ids(dead_ids, n_tokens, where=where)] = fmt.CLASS_DEAD
    if phantom_from is not None:
        if not 0 <= int(phantom_from) <= n_tokens:
            raise TokendynError(f"phantom_from must be in 0..{n_tokens}, got {phantom_from}", where)
        cls[int(phantom_from):] = fmt.CLASS_PHANTOM
    return cls


def _check_float(info: TensorInfo, path: str) -> None:
    if info.logical not in _FLOATS:
        raise TokendynError(f"tensor {info.name!r} has dtype {info.dtype}; an embedding must be F32, F16 or BF16",
                            path)
    if info.logical == "float64":
        warnings.warn(f"{path}: {info.name!r} is F64; the movie stores it rounded to float32", stacklevel=3)


def _matrix(info: TensorInfo, file: SafetensorsFile, index: int | None, buf: np.ndarray) -> Any:
    bits = file.read(info, index, out=buf)
    if info.logical == "bfloat16":
        return fmt.BF16Bits(bits)
    if info.logical == "float64":
        return bits.astype(np.float32)
    return bits


# A frame to write: (step, [(file, tensor, index along the stack or None)] for W, then E if any).
Plan = list[tuple[int, list[tuple[SafetensorsFile, TensorInfo, int | None]]]]


def _write(out: str, plan: Plan, *, token_class: Any, token_text: Any, config: dict, title: str | None,
           overwrite: bool, progress: Progress) -> str:
    """Stream the planned frames into a new movie (removed again if writing fails midway).

    One reusable read buffer per matrix; the recorder copies each frame into its own host
    buffers at ``capture``, so memory stays a few frames whatever the input's size.
    """
    from tokendyn.recorder import Recorder

    bufs = [np.empty(info.frame_shape if idx is not None else info.shape, info.storage)
            for _, info, idx in plan[0][1]]
    # buffered writes: O_DIRECT spares a training loop's CPU, but an import has none to spare and
    # its source is in the page cache; buffered, a 210 MB bf16 stack imports at 1.8 GB/s, not 1.1
    rec = Recorder(out, token_class=token_class, token_text=token_text, config=config, title=title,
                   overwrite=overwrite, direct_writes=False)
    try:
        with rec:
            for done, (step, parts) in enumerate(plan, 1):
                mats = [_matrix(info, f, idx, buf) for (f, info, idx), buf in zip(parts, bufs)]
                rec.capture(step, W=mats[0], E=mats[1] if len(mats) > 1 else None, time=float(done - 1))
                if progress:
                    progress(done, len(plan))
    except BaseException:
        if os.path.exists(out):
            os.remove(out)
        raise
    return out


def _pick(f: SafetensorsFile, key: str | None) -> TensorInfo:
    """A snapshot's embedding: ``key``, a known embedding name, or the file's only 2-D tensor."""
    if key is not None:
        return f.tensor(key)
    for name in EMBEDDING_KEYS:
        if name in f.tensors and len(f.tensors[name].shape) == 2:
            return f.tensors[name]
    found = [t for t in f.tensors.values() if len(t.shape) == 2]
    if len(found) == 1:
        return found[0]
    raise TokendynError(f"{'no' if not found else 'several'} 2-D tensor(s) to use as the embedding; pass the key "
                        f"(--key); the file holds: {f.describe()}", f.path)


# ---------------------------------------------------------------------------------------- importers
def import_stack(path: str | os.PathLike, out: str | os.PathLike, *, key: str | None = None,
                 steps: str | Sequence[int] | None = None, mask: str | None = None, dead_ids: Any = None,
                 phantom_from: int | None = None, title: str | None = None, overwrite: bool = False,
                 progress: Progress = None) -> str:
    """Import a safetensors file holding a stacked ``[T, V, d]`` embedding tensor, one frame at a time.

    Parameters
    ----------
    path
        The safetensors file (opened read-only).
    out
        The movie to write.
    key
        The stacked tensor; default the file's only 3-D tensor.
    steps
        The frames' steps: a key of the file (a 1-D integer tensor of T), ``"a:b:c"`` (a range,
        ``b`` may be empty) or a sequence of T ints; default ``0 .. T-1``.
    mask, dead_ids, phantom_from
        Token classes: a safetensors ``FILE`` or ``FILE:KEY`` holding a boolean/0-1 vector of V
        (true = dead); ids like ``"3,5,10-20"`` that are dead; the first phantom row. Default all live.
    title, overwrite, progress
        The movie's title; replace an existing ``out``; ``progress(done, total)`` per frame.

    Returns
    -------
    str
        The movie's path.

    Raises
    ------
    TokendynError
        A missing key (the message lists those that exist), not a 3-D stack, bad steps, a mask of
        the wrong length, a corrupt file, a pickle file, or an existing ``out``.
    """
    path = os.fspath(path)
    out = check_out(out, overwrite)
    if not os.path.isfile(path):
        raise TokendynError("not a file", path)
    f = SafetensorsFile(path)
    if key is not None:
        info = f.tensor(key)
    else:
        stacks = [t for t in f.tensors.values() if len(t.shape) == 3]
        if len(stacks) != 1:
            raise TokendynError(f"{'no' if not stacks else 'several'} 3-D tensor(s) to import; pass --key; the file "
                                f"holds: {f.describe()}", path)
        info = stacks[0]
    if len(info.shape) != 3 or 0 in info.shape:
        raise TokendynError(f"tensor {info.name!r} has shape {list(info.shape)}; a stack must be 3-D [T, V, d] "
                            "with no empty axis", path)
    _check_float(info, path)
    n_frames, n_tokens = info.shape[0], info.shape[1]
    plan: Plan = [(s, [(f, info, t)]) for t, s in enumerate(stack_steps(f, steps, n_frames))]
    return _write(out, plan, token_class=_classes(n_tokens, mask, dead_ids, phantom_from, path),
                  token_text=tokenizer_text(os.path.dirname(os.path.abspath(path)), n_tokens),
                  config={"imported_from": os.path.abspath(path), "key": info.name, "importer": "stack"},
                  title=title, overwrite=overwrite, progress=progress)


def import_snapshots(folder: str | os.PathLike, out: str | os.PathLike, *, glob: str = "*_step*.safetensors",
                     step_regex: str = r"_step(\d+)\.safetensors$", key: str | None = None,
                     mask: str | None = None, dead_ids: Any = None, phantom_from: int | None = None,
                     title: str | None = None, overwrite: bool = False, progress: Progress = None) -> str:
    """Import a folder of per-step safetensors snapshots (``emb_step100.safetensors``, ...) in step order.

    ``glob`` selects the files, ``step_regex`` (its first group) reads each one's step from its
    name; ``key`` is the embedding tensor (default a known embedding name, or the only 2-D tensor).
    Every snapshot must hold it with the same shape and dtype. The other arguments are those of
    :func:`import_stack`. Raises :class:`~tokendyn.errors.TokendynError` naming the offending file.
    """
    folder = os.fspath(folder)
    out = check_out(out, overwrite)
    if not os.path.isdir(folder):
        raise TokendynError("not a folder of snapshots", folder)
    try:
        pattern = re.compile(step_regex)
    except re.error as exc:
        raise TokendynError(f"--step-regex {step_regex!r} is not a regular expression: {exc}") from None
    files = sorted(_glob.glob(os.path.join(_glob.escape(folder), glob)))
    if not files:
        refuse_pickles_in(folder)
        raise TokendynError(f"no file matches {glob!r}", folder)
    found: dict[int, str] = {}
    for p in files:
        refuse_pickle(p)
        m = pattern.search(os.path.basename(p))
        if not m or not m.groups() or not (m.group(1) or "").isdigit():
            raise TokendynError(f"cannot read a step from the name with {step_regex!r}", p)
        step = int(m.group(1))
        if step in found:
            raise TokendynError(f"duplicate step {step}: also in {os.path.basename(found[step])}", p)
        found[step] = p
    plan: Plan = []
    first: TensorInfo | None = None
    for step in sorted(found):
        f = SafetensorsFile(found[step])
        info = _pick(f, key if first is None else first.name)
        if first is None:
            _check_float(info, f.path)
            first = info
        elif (info.shape, info.dtype) != (first.shape, first.dtype):
            raise TokendynError(f"{info.name!r} is {info.dtype}{list(info.shape)} but the first snapshot's is "
                                f"{first.dtype}{list(first.shape)}: inconsistent shapes", f.path)
        plan.append((step, [(f, info, None)]))
    assert first is not None
    if len(first.shape) != 2 or 0 in first.shape:
        raise TokendynError(f"{first.name!r} has shape {list(first.shape)}, not a 2-D (token, dim) matrix",
                            plan[0][1][0][0].path)
    n_tokens = first.shape[0]
    return _write(out, plan, token_class=_classes(n_tokens, mask, dead_ids, phantom_from, folder),
                  token_text=tokenizer_text(folder, n_tokens),
                  config={"imported_from": os.path.abspath(folder), "key": first.name, "importer": "snapshots"},
                  title=title, overwrite=overwrite, progress=progress)


def _embedding(model: ModelFolder, key: str | None) -> tuple[str, str | None]:
    """The input embedding's key and, when untied, the output embedding's (else ``None``)."""
    if key is None:
        key = next((k for k in EMBEDDING_KEYS if k in model.where), None)
        if key is None:
            arch = ", ".join(model.config.get("architectures") or []) or "unknown architecture"
            raise TokendynError(f"no known embedding tensor ({arch}); pass --key; the weights hold: "
                                f"{model.describe()}", model.folder)
    wf, w = model.tensor(key)
    if len(w.shape) != 2 or 0 in w.shape:
        raise TokendynError(f"{key!r} has shape {list(w.shape)}, not a 2-D (token, dim) matrix", wf.path)
    _check_float(w, wf.path)
    head = next((k for k in HEAD_KEYS if k in model.where and k != key), None)
    tied = model.config.get("tie_word_embeddings")
    if head is None or tied is True:
        return key, None
    hf, h = model.tensor(head)
    if (h.shape, h.dtype) != (w.shape, w.dtype):
        return key, None  # a head of another shape/dtype is not an unembedding of W (e.g. a classifier)
    if tied is None and np.array_equal(wf.read(w), hf.read(h)):
        return key, None  # tying unknown: tied if the bytes are the same
    return key, head


def import_checkpoints(folder: str | os.PathLike, out: str | os.PathLike, *, key: str | None = None,
                       mask: str | None = None, dead_ids: Any = None, phantom_from: int | None = None,
                       title: str | None = None, overwrite: bool = False, progress: Progress = None) -> str:
    """Import a folder of Hugging Face Trainer checkpoints (``checkpoint-<step>/``) in step order.

    Each checkpoint's weights are ``model.safetensors`` or sharded ``model-0000k-of-0000n.safetensors``
    with ``model.safetensors.index.json``; the embedding is found by its name (``EMBEDDING_KEYS``,
    e.g. ``transformer.wte.weight``, ``model.embed_tokens.weight``) or ``key``; an untied
    ``lm_head.weight`` is recorded as ``E``. Token texts come from a ``tokenizer.json`` in the
    folder or the last checkpoint. Other arguments as :func:`import_stack`. Pickle-only checkpoints
    are refused (the optimizer's ``*.pt`` and ``training_args.bin`` are ignored, never opened).
    """
    folder = os.fspath(folder)
    out = check_out(out, overwrite)
    if not os.path.isdir(folder):
        raise TokendynError("not a folder of checkpoints", folder)
    found: dict[int, str] = {}
    for name in sorted(os.listdir(folder)):
        m = re.fullmatch(r"checkpoint-(\d+)", name)
        if m and os.path.isdir(os.path.join(folder, name)):
            step = int(m.group(1))
            if step in found:
                raise TokendynError(f"duplicate step {step}: {name} and {os.path.basename(found[step])}", folder)
            found[step] = os.path.join(folder, name)
    if not found:
        raise TokendynError("no checkpoint-<step> folders here", folder)
    plan: Plan = []
    keys: list[str] = []
    layout: list[tuple] = []
    for step in sorted(found):
        model = ModelFolder(found[step])
        if not keys:
            keys = [k for k in _embedding(model, key) if k]
            layout = [(model.tensor(k)[1].shape, model.tensor(k)[1].dtype) for k in keys]
        parts = [(*model.tensor(k), None) for k in keys]
        for (f, info, _), (shape, dtype) in zip(parts, layout):
            if (info.shape, info.dtype) != (shape, dtype):
                raise TokendynError(f"{info.name!r} is {info.dtype}{list(info.shape)} here but {dtype}{list(shape)} "
                                    "in the first checkpoint: inconsistent shapes", f.path)
        plan.append((step, parts))
    n_tokens = layout[0][0][0]
    text_dir = folder if os.path.isfile(os.path.join(folder, "tokenizer.json")) else found[max(found)]
    return _write(out, plan, token_class=_classes(n_tokens, mask, dead_ids, phantom_from, folder),
                  token_text=tokenizer_text(text_dir, n_tokens),
                  config={"imported_from": os.path.abspath(folder), "key": keys[0],
                          "head": keys[1] if len(keys) > 1 else None, "importer": "checkpoints"},
                  title=title, overwrite=overwrite, progress=progress)


def import_model(folder: str | os.PathLike, out: str | os.PathLike, *, key: str | None = None, step: int = 0,
                 mask: str | None = None, dead_ids: Any = None, phantom_from: int | None = None,
                 title: str | None = None, overwrite: bool = False, progress: Progress = None) -> str:
    """Import one Hugging Face model folder (``config.json`` + ``model.safetensors`` or shards) as a
    one-frame movie at ``step``. Arguments as :func:`import_checkpoints`."""
    folder = os.fspath(folder)
    out = check_out(out, overwrite)
    if not os.path.isdir(folder):
        raise TokendynError("not a model folder", folder)
    model = ModelFolder(folder)
    keys = [k for k in _embedding(model, key) if k]
    parts = [(*model.tensor(k), None) for k in keys]
    n_tokens = parts[0][1].shape[0]
    return _write(out, [(check_steps([step], folder)[0], parts)],
                  token_class=_classes(n_tokens, mask, dead_ids, phantom_from, folder),
                  token_text=tokenizer_text(folder, n_tokens),
                  config={"imported_from": os.path.abspath(folder), "key": keys[0],
                          "head": keys[1] if len(keys) > 1 else None, "importer": "model"},
                  title=title, overwrite=overwrite, progress=progress)


def detect_kind(source: str | os.PathLike) -> str:
    """What ``source`` is: ``"stack"`` (a file), ``"checkpoints"`` (a folder of ``checkpoint-*``
    folders), ``"model"`` (a folder with ``model.safetensors``, its index or ``config.json``) or
    ``"snapshots"`` (any other folder). A pickle file or a missing path is an error."""
    source = os.fspath(source)
    refuse_pickle(source)
    if not os.path.exists(source):
        raise TokendynError("does not exist", source)
    if os.path.isfile(source):
        return "stack"
    names = os.listdir(source)
    if any(re.fullmatch(r"checkpoint-\d+", n) for n in names):
        return "checkpoints"
    if any(n in names for n in ("model.safetensors", "model.safetensors.index.json", "config.json")):
        return "model"
    return "snapshots"


def import_path(source: str | os.PathLike, out: str | os.PathLike, *, kind: str = "auto", **kwargs: Any) -> str:
    """Import ``source`` with the importer of ``kind`` (auto: :func:`detect_kind`; stack, snapshots,
    checkpoints, model); ``kwargs`` go to that importer."""
    importers: dict[str, Callable[..., str]] = {"stack": import_stack, "snapshots": import_snapshots,
                                                "checkpoints": import_checkpoints, "model": import_model}
    kind = detect_kind(source) if kind == "auto" else kind
    if kind not in importers:
        raise TokendynError(f"unknown kind {kind!r}; use auto, {', '.join(importers)}")
    return importers[kind](source, out, **kwargs)
