"""Tokenizers through HF ``tokenizers``: a character-level BPE trained on the corpus (tokens decode
to readable strings), or a user's ``tokenizer.json`` truncated to its first N ids."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokendyn.errors import ConfigError

from .cache import cache_dir, digest

UNK = "[UNK]"


@dataclass
class TokenizerInfo:
    """A tokenizer and how many of its ids are live (usable); ids beyond are never produced."""

    tokenizer: Tokenizer
    n_ids: int
    source: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids of the texts, concatenated; ids >= n_ids (a truncated tokenizer) are dropped."""
        parts = []
        for enc in self.tokenizer.encode_batch(list(texts)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            parts.append(ids[ids < self.n_ids])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if 0 <= int(i) < self.n_ids])

    def token_texts(self) -> list[str]:
        """Readable text of each id (``▁`` marks a leading space)."""
        vocab = self.tokenizer.get_vocab()
        texts = [""] * self.n_ids
        for tok, i in vocab.items():
            if i < self.n_ids:
                texts[i] = tok
        return texts


def train_char_bpe(texts: Sequence[str], vocab_size: int, *, cache: bool = True) -> TokenizerInfo:
    """Train a character-level BPE of ``vocab_size`` ids on ``texts`` (cached by content hash)."""
    if vocab_size < 64:
        raise ConfigError(f"vocab_size {vocab_size} is too small for a BPE tokenizer (>= 64)")
    key = digest("char-bpe-v1", vocab_size, *(digest(t) for t in texts))
    path = os.path.join(cache_dir(), f"tokenizer-{key}.json")
    if cache and os.path.exists(path):
        tok = Tokenizer.from_file(path)
        return TokenizerInfo(tok, tok.get_vocab_size(), f"char-bpe {vocab_size} (cached)")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNK], show_progress=False)
    from .corpus import chunks

    tok.train_from_iterator((c for t in texts for c in chunks(t)), trainer=trainer)
    if cache:
        tmp = path + f".{os.getpid()}.tmp"
        tok.save(tmp)
        os.replace(tmp, path)
    return TokenizerInfo(tok, tok.get_vocab_size(), f"char-bpe {vocab_size}")


def load_tokenizer_json(path: str, n_ids: int | None) -> TokenizerInfo:
    """A user's ``tokenizer.json``, truncated to its first ``n_ids`` ids (all when None)."""
    if not os.path.exists(path):
        raise ConfigError("the tokenizer file does not exist", path)
    try:
        tok = Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type
        raise ConfigError(f"not a readable tokenizer.json ({exc})", path) from None
    size = tok.get_vocab_size()
    n = size if n_ids is None else int(n_ids)
    if not 1 <= n <= size:
        raise ConfigError(f"cannot keep {n} live ids of a tokenizer with {size}", path)
    return TokenizerInfo(tok, n, f"{os.path.basename(path)} truncated to {n}")
