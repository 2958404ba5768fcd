"""Derive tokendyn/trainers/data/lexicon.tsv.gz, the word list the embedded corpus draws from.

The source is TextBlob 0.20.1 (MIT licence; https://github.com/sloria/TextBlob), which ships two
tables: ``en-spelling.txt``, word counts over Peter Norvig's ``big.txt`` (public-domain books from
Project Gutenberg plus frequency lists from Wiktionary and the British National Corpus), and
``en-lexicon.txt``, the part-of-speech lexicon of Eric Brill's rule-based tagger (Brown corpus and
Penn Treebank). A word of the first table is kept with the most specific tag the second gives it,
for the eight tags the story grammar fills (nouns, plural nouns, proper names, adjectives, verbs in
the base form, past tense and -ing form, adverbs), with its count.

Run once by hand (the output is committed; nothing is downloaded when tokendyn runs)::

    pip download --no-deps textblob==0.20.1 -d /tmp/tb && unzip -q /tmp/tb/textblob-*.whl -d /tmp/tb
    python scripts/make_lexicon.py /tmp/tb/textblob/en tokendyn/trainers/data/lexicon.tsv.gz
"""
from __future__ import annotations

import gzip
import os
import re
import sys

TAGS = ("NN", "NNS", "NNP", "JJ", "VB", "VBD", "VBG", "RB")
WORD = re.compile(r"^[a-z]+$")


def _table(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as fh:
        return [line.split() for line in fh if line.strip() and not line.startswith(";;;")]


def main(source: str, out: str) -> None:
    counts = {w: int(c) for w, c in _table(os.path.join(source, "en-spelling.txt")) if WORD.match(w)}
    tags: dict[str, str] = {}
    names: dict[str, str] = {}
    for word, tag, *_ in _table(os.path.join(source, "en-lexicon.txt")):
        if tag not in TAGS:
            continue
        if WORD.match(word):
            tags.setdefault(word, tag)
        elif tag == "NNP" and WORD.match(word.lower()) and word[0].isupper() and word[1:].islower():
            names.setdefault(word.lower(), word)
    rows = []
    for word, count in counts.items():
        if word in tags:
            rows.append((word, tags[word], count))
        elif word in names:
            rows.append((names[word], "NNP", count))
    rows.sort(key=lambda r: (-r[2], r[0]))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as gz:  # mtime 0: the same bytes on every run
        gz.write("".join(f"{w}\t{t}\t{c}\n" for w, t, c in rows).encode())
    by_tag = {t: sum(1 for r in rows if r[1] == t) for t in TAGS}
    print(f"{len(rows)} words: {by_tag}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
