"""Where trained tokenizers and tokenized corpora are cached (``$TOKENDYN_CACHE`` or ~/.cache)."""
from __future__ import annotations

import hashlib
import os


def cache_dir() -> str:
    root = os.environ.get("TOKENDYN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokendyn"
    )
    os.makedirs(root, exist_ok=True)
    return root


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
