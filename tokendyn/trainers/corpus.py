"""The embedded default corpus: seeded generators of simple children's stories over a real English
lexicon (the training text)
and of a made-up foreign script (seen by the tokenizer, never by the model, so its tokens are
naturally dead). Nothing is downloaded; the same seed and size give the same text."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator

from .lexicon import lexicon

TIMES = ["One day", "Once upon a time", "In the morning", "After lunch", "Later", "At night",
         "On a sunny day", "On a rainy day", "The next day", "Long ago", "That winter", "In the evening"]


class _Words:
    """Draws words of each part of speech with the frequencies of the lexicon (a Zipf law)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.classes = lexicon()

    def __call__(self, tag: str) -> str:
        c = self.classes[tag]
        return self.rng.choices(c.words, cum_weights=c.cum_weights)[0]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _story(rng: random.Random, w: _Words) -> str:
    hero, friend = w("NNP"), w("NNP")
    thing, thing2, place, animal = w("NN"), w("NN"), w("NN"), w("NN")
    things = w("NNS")
    adj, adj2, feeling = w("JJ"), w("JJ"), w("JJ")
    verb, verb2, move = w("VBD"), w("VBD"), w("VBD")
    sentences = [f"{rng.choice(TIMES)}, {hero} went to the {place}."]
    middles = [
        [f"{hero} saw {_article(adj)} {adj} {animal} near the {thing}.",
         f'"Hello, little {animal}," said {hero}. "Do you want to {w("VB")}?"',
         f"The {animal} {move} {w('RB')} and {hero} laughed."],
        [f"{hero} {verb} {_article(adj)} {adj} {thing} under the {thing2}.",
         f"{hero} showed the {thing} to {friend}.",
         f'"It is so {adj2}!" said {friend}. {friend} felt {feeling}.'],
        [f"{hero} lost the {thing} and felt {feeling}.",
         f"{friend} and the {animal} helped {hero} look for it among the {things}.",
         f"At last the {animal} found it. {hero} said, \"Thank you, {animal}!\""],
        [f"There were many {things} in the {place}, and {hero} was {w('VBG')} them.",
         f"{friend} {verb2} the {adj2} ones and {move} home {w('RB')}.",
         f"{hero} thought the {things} were {adj} and {w('JJ')}."],
        [f"The {adj} {thing} of {friend} was {w('RB')} {w('JJ')}.",
         f"{hero} {verb} it, then {verb2} the {thing2} too.",
         f"Everyone in the {place} was {w('VBG')} and {feeling}."],
    ]
    sentences += rng.choice(middles)
    sentences.append(rng.choice([
        f"{hero} and {friend} were best friends.",
        f"That night {hero} slept next to the {thing}.",
        f"The {animal} was {adj2} and {feeling} too.",
        f"{hero} learned to be {w('JJ')} and kind.",
        "The end.",
    ]))
    return " ".join(sentences)


def stories(n_chars: int, seed: int = 0) -> str:
    """Children's-story English of about ``n_chars`` characters, reproducible from ``seed``.

    The grammar is a handful of story templates; its nouns, names, adjectives, verbs and adverbs
    are drawn from a lexicon of about 19,000 English words with their frequencies in public-domain
    books (:func:`tokendyn.trainers.lexicon.lexicon`), so the text has a realistic, Zipf-like
    vocabulary of thousands of word types.
    """
    rng = random.Random(f"tokendyn-stories-v2-{seed}")
    words = _Words(rng)
    parts: list[str] = []
    total = 0
    while total < n_chars:
        s = _story(rng, words)
        parts.append(s)
        total += len(s) + 1
    return "\n".join(parts)


# A made-up syllabic script in the Thai block: readable to the tokenizer, never seen by the model.
_CONSONANTS = [chr(c) for c in range(0x0E01, 0x0E2F)]
_VOWELS = ["\u0E30", "\u0E32", "\u0E34", "\u0E35", "\u0E36", "\u0E37", "\u0E38", "\u0E39", "\u0E40", "\u0E41", "\u0E42"]
_TONES = ["", "", "\u0E48", "\u0E49"]


def foreign(n_chars: int, seed: int = 0) -> str:
    """Text in a made-up script (Thai letters in random syllables) of about ``n_chars`` characters.

    Words repeat with a Zipf-like law so BPE learns many multi-character tokens from it.
    """
    rng = random.Random(f"tokendyn-foreign-{seed}")
    lexicon = []
    for _ in range(3000):
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) + rng.choice(_TONES)
                       for _ in range(rng.randint(1, 3)))
        lexicon.append(word)
    weights = [1.0 / (i + 1) for i in range(len(lexicon))]
    out: list[str] = []
    total = 0
    while total < n_chars:
        sentence = " ".join(rng.choices(lexicon, weights, k=rng.randint(4, 12)))
        out.append(sentence)
        total += len(sentence) + 1
    return "\n".join(out)


def read_user_corpus(path: str | os.PathLike) -> str:
    """Text of a file, or of every ``.txt``/``.md`` file below a folder (sorted, for determinism)."""
    from tokendyn.errors import ConfigError

    path = os.fspath(path)
    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if name.endswith((".txt", ".md", ".text"))
        )
        if not files:
            raise ConfigError("the corpus folder holds no .txt or .md files", path)
    else:
        raise ConfigError("the corpus does not exist", path)
    texts = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as fh:
                texts.append(fh.read())
        except UnicodeDecodeError:
            raise ConfigError("the corpus file is not UTF-8 text", name) from None
    return "\n".join(texts)


def chunks(text: str, size: int = 1 << 16) -> Iterator[str]:
    """Split text into pieces for batch tokenization."""
    for i in range(0, len(text), size):
        yield text[i:i + size]
