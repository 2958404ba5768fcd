"""Token classes of a run trained elsewhere: live (seen in the training data), dead (a tokenizer
entry never seen) and phantom (an embedding row beyond the tokenizer), with each token's text and
count, from the tokenizer and the training token ids alone (no corpus pass by hand)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError

_CHUNK = 1 << 22  # ids counted at once from an array or memmap (bounded memory)


@dataclass(frozen=True)
class TokenClasses:
    """Per embedding row: ``token_class`` (uint8, ``format.CLASS_*``), ``token_count`` (int64, how
    often the id occurs in the training ids) and ``token_text`` (the tokenizer's string, ``""``
    for a phantom row). Pass them to :class:`tokendyn.Recorder` (``**classes.recorder_kwargs()``)."""

    token_class: np.ndarray
    token_count: np.ndarray
    token_text: list[str]

    def recorder_kwargs(self) -> dict[str, Any]:
        return {"token_class": self.token_class, "token_count": self.token_count, "token_text": self.token_text}

    def counts_by_class(self) -> dict[str, int]:
        return {name: int(np.sum(self.token_class == code)) for code, name in enumerate(fmt.TOKEN_CLASSES)}


def _vocab(tokenizer: Any) -> dict[str, int]:
    """The token -> id map of an HF ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if not callable(get_vocab):
        raise TokendynError(f"not a tokenizer (no get_vocab()): {type(tokenizer).__name__}")
    try:
        return dict(get_vocab(with_added_tokens=True))  # tokenizers.Tokenizer
    except TypeError:  # a transformers tokenizer: get_vocab() takes no argument, added tokens included
        return dict(get_vocab())


def _batches(ids: Any) -> Iterable[np.ndarray]:
    """The training ids in bounded pieces: an array or memmap (any shape), a sequence of id lists,
    or a ``datasets``-style iterable of rows (dicts with ``input_ids``, or id lists)."""
    if hasattr(ids, "__array__") and not isinstance(ids, (list, tuple)):  # numpy arrays, memmaps, tensors
        flat = np.asarray(ids).reshape(-1)
        for i in range(0, flat.size, _CHUNK):
            yield np.asarray(flat[i:i + _CHUNK])
        return
    for row in ids:
        if isinstance(row, dict):
            row = row.get("input_ids")
            if row is None:
                raise TokendynError("a row of the training data has no 'input_ids'")
        yield np.asarray(row).reshape(-1)


def token_classes(tokenizer: Any, ids: Any, n_rows: int | None = None) -> TokenClasses:
    """Classify every embedding row of a run from its tokenizer and its training token ids.

    Parameters
    ----------
    tokenizer
        An HF ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer; its vocabulary (added
        tokens included) gives the rows that are tokenizer entries and their text.
    ids
        Every token id the model is trained on: an array or memmap (any shape), a list of id lists,
        or an iterable of ``datasets`` rows with ``input_ids``. Read once, in bounded pieces.
    n_rows
        Rows of the embedding matrix (default: the tokenizer's size). Rows at or beyond the
        tokenizer's size are phantom.

    Returns
    -------
    TokenClasses
        live where the id occurs in ``ids``, dead where it is a tokenizer entry that never
        occurs, phantom beyond the tokenizer.

    Raises
    ------
    TokendynError
        An id outside ``[0, n_rows)``, a negative ``n_rows``, or no tokenizer.
    """
    vocab = _vocab(tokenizer)
    n_ids = max(vocab.values(), default=-1) + 1
    rows = n_ids if n_rows is None else int(n_rows)
    if rows < 1:
        raise TokendynError(f"n_rows must be >= 1, got {n_rows}")
    counts = np.zeros(rows, np.int64)
    for piece in _batches(ids):
        if piece.size == 0:
            continue
        if not np.issubdtype(piece.dtype, np.integer):
            raise TokendynError(f"training ids must be integers, got {piece.dtype}")
        lo, hi = int(piece.min()), int(piece.max())
        if lo < 0 or hi >= rows:
            raise TokendynError(f"a training id ({lo if lo < 0 else hi}) is outside the {rows} embedding rows")
        counts += np.bincount(piece.astype(np.int64), minlength=rows)
    token_class = np.full(rows, fmt.CLASS_PHANTOM, np.uint8)
    entries = min(n_ids, rows)
    token_class[:entries] = np.where(counts[:entries] > 0, fmt.CLASS_LIVE, fmt.CLASS_DEAD)
    text = [""] * rows
    for token, i in vocab.items():
        if 0 <= i < rows:
            text[i] = token
    return TokenClasses(token_class=token_class, token_count=counts, token_text=text)
