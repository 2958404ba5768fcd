"""The English lexicon the embedded corpus draws its words from: about 19,000 words with a part of
speech and a count over public-domain books (``data/lexicon.tsv.gz``; how it was made and from
what: ``scripts/make_lexicon.py`` and ``data/NOTICE``)."""
from __future__ import annotations

import functools
import gzip
import itertools
from dataclasses import dataclass
from importlib import resources

# words the grammar writes itself, or that read wrongly in its slots (auxiliaries, contractions' tails)
_LEFT_OUT = frozenset("""was were had did be been being is are am have has do does done could would
should might must shall will may can let got get gets ll re ve don isn didn wasn couldn wouldn""".split())


@dataclass(frozen=True)
class WordClass:
    """The words of one part of speech and the cumulative weights to draw them by their counts."""

    words: tuple[str, ...]
    cum_weights: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.words)


@functools.cache
def lexicon() -> dict[str, WordClass]:
    """The lexicon by Penn Treebank tag (``NN``, ``NNS``, ``NNP``, ``JJ``, ``VB``, ``VBD``, ``VBG``,
    ``RB``), each class's words most frequent first."""
    raw = resources.files("tokendyn.trainers").joinpath("data/lexicon.tsv.gz").read_bytes()
    by_tag: dict[str, list[tuple[str, int]]] = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        word, tag, count = line.split("\t")
        if len(word) < 2 or word.lower() in _LEFT_OUT:
            continue
        by_tag.setdefault(tag, []).append((word, int(count)))
    return {tag: WordClass(tuple(w for w, _ in rows), tuple(itertools.accumulate(float(c) for _, c in rows)))
            for tag, rows in by_tag.items()}
