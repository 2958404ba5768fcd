"""The training data: corpus text -> tokenizer -> token ids cached on disk (memmap) by hash."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import ConfigError

from . import corpus as corpus_mod
from .cache import cache_dir, digest
from .tokenizer import TokenizerInfo, load_tokenizer_json, train_char_bpe


@dataclass
class TokenData:
    """Token ids of the training and held-out text, and the tokens' classes and counts."""

    train: np.ndarray
    heldout: np.ndarray
    tokenizer: TokenizerInfo
    vocab_rows: int  # tokenizer ids + phantom rows
    token_class: np.ndarray
    token_count: np.ndarray
    token_text: list[str]
    unigram_entropy: float  # nats/token: the loss of the best context-free model


def _cached_ids(key: str, make) -> np.ndarray:
    path = os.path.join(cache_dir(), f"tokens-{key}.npy")
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    ids = make()
    dtype = np.uint16 if ids.size == 0 or ids.max() < 65535 else np.uint32
    tmp = path + f".{os.getpid()}.tmp.npy"
    np.save(tmp, ids.astype(dtype))
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def build(
    *,
    corpus: str | None,
    corpus_chars: int,
    foreign_chars: int,
    vocab_size: int,
    n_phantom: int,
    tokenizer_json: str | None = None,
    seed: int = 0,
    heldout_fraction: float = 0.05,
) -> TokenData:
    """Make (or load from cache) the tokenizer and token ids for a run."""
    text = corpus_mod.read_user_corpus(corpus) if corpus else corpus_mod.stories(corpus_chars, seed=seed)
    if not text.strip():
        raise ConfigError("the corpus is empty", corpus)
    if tokenizer_json:
        tok = load_tokenizer_json(tokenizer_json, vocab_size)
    else:
        foreign_text = corpus_mod.foreign(foreign_chars, seed=seed) if foreign_chars > 0 else ""
        tok = train_char_bpe([t for t in (text, foreign_text) if t], vocab_size)
    # keyed by what the ids are made from: the text itself and the tokenizer's every merge and id,
    # so a change to the corpus generator or to the BPE can never reuse old ids
    key = digest("ids-v2", digest(text), digest(tok.tokenizer.to_str()), tok.n_ids)
    ids = _cached_ids(key, lambda: tok.encode(list(corpus_mod.chunks(text))))
    n_ids = tok.n_ids
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=n_ids)[:n_ids]
    vocab_rows = n_ids + int(n_phantom)
    token_class = np.full(vocab_rows, fmt.CLASS_PHANTOM, np.uint8)
    token_class[:n_ids] = np.where(counts > 0, fmt.CLASS_LIVE, fmt.CLASS_DEAD)
    token_count = np.zeros(vocab_rows, np.int64)
    token_count[:n_ids] = counts
    split = int(len(ids) * (1 - heldout_fraction))
    p = counts[counts > 0] / counts.sum()
    return TokenData(
        train=ids[:split],
        heldout=ids[split:],
        tokenizer=tok,
        vocab_rows=vocab_rows,
        token_class=token_class,
        token_count=token_count,
        token_text=tok.token_texts() + [""] * int(n_phantom),
        unigram_entropy=float(-(p * np.log(p)).sum()),
    )


class Batches:
    """Random windows of ``context + 1`` tokens, reproducible from a numpy Generator."""

    def __init__(self, ids: np.ndarray, batch: int, context: int, seed: int):
        if len(ids) < context + 2:
            raise ConfigError(
                f"the corpus is too small for one batch: {len(ids)} tokens, a window needs {context + 2}"
            )
        self.ids = ids
        self.batch = batch
        self.context = context
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        starts = self.rng.integers(0, len(self.ids) - self.context - 1, self.batch)
        window = np.stack([np.asarray(self.ids[s:s + self.context + 1], dtype=np.int64) for s in starts])
        return window[:, :-1], window[:, 1:]

    def state(self) -> dict:
        """The generator's state as plain Python data (str, int, list, dict), which a checkpoint read
        with ``weights_only=True`` keeps."""
        return _plain(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        """Continue from a :meth:`state`; a state of another bit generator is a ``ValueError``."""
        if not isinstance(state, dict) or state.get("bit_generator") != type(self.rng.bit_generator).__name__:
            raise ValueError(f"not a {type(self.rng.bit_generator).__name__} state")
        self.rng.bit_generator.state = state


def _plain(value):
    """numpy scalars and arrays inside a bit generator's state, as Python ints and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
