"""The embedded default corpus: seeded generators of simple children's stories (the training text)
and of a made-up foreign script (seen by the tokenizer, never by the model, so its tokens are
naturally dead). Nothing is downloaded; the same seed and size give the same text."""
from __future__ import annotations

import os
import random
from collections.abc import Iterator

NAMES = """Lily Tom Mia Ben Sam Anna Max Lucy Leo Emma Jack Zoe Finn Ella Noah Ruby Oscar Daisy Milo Rosa
Theo Ivy Hugo Nora Felix Alice Jasper Hazel Otto Pip Clara Eli Molly Arlo Bella Toby Iris Jonah Maya
Kit Luna Ned Poppy Rex Sky Tilly Wren Abby Bo Cora Dot Ezra Fern Gus Hope Ike June Kai""".split()
ANIMALS = """dog cat bird fish rabbit duck frog bear fox owl mouse horse cow pig sheep goat lion tiger
turtle snail bee ant butterfly squirrel deer wolf hen chick puppy kitten pony dragon whale seal
crab hedgehog badger otter beaver goose swan crow robin""".split()
THINGS = """ball kite box hat cake apple book toy boat car train drum cup spoon shoe sock key ring bell
flower tree stone shell leaf stick rope blanket pillow lamp map coin star cookie pie candle bucket
basket feather button jar sandwich umbrella""".split()
PLACES = """park garden forest river beach house school farm town hill lake pond meadow cave castle
kitchen yard barn shop library village bridge field island mountain""".split()
ADJECTIVES = """big small happy sad red blue green yellow little old new soft loud quiet shiny warm cold
brave kind funny sleepy hungry fast slow tall tiny bright dark pretty gentle silly clever curious
shy proud busy lucky""".split()
VERBS_PAST = """found saw liked wanted took gave made lost shared painted hugged carried opened
cleaned fixed kept held chased followed hid""".split()
FEELINGS = "happy sad scared excited proud tired surprised angry calm glad".split()
MOVES = "ran walked jumped hopped flew swam danced skipped climbed rolled".split()
TIMES = ["One day", "Once upon a time", "In the morning", "After lunch", "Later", "At night",
         "On a sunny day", "On a rainy day", "The next day", "Long ago"]


def _story(rng: random.Random) -> str:
    hero, friend = rng.sample(NAMES, 2)
    animal, thing, thing2 = rng.choice(ANIMALS), rng.choice(THINGS), rng.choice(THINGS)
    place, place2 = rng.sample(PLACES, 2)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    feeling = rng.choice(FEELINGS)
    move = rng.choice(MOVES)
    verb = rng.choice(VERBS_PAST)
    pick = rng.random()
    sentences = [f"{rng.choice(TIMES)}, {hero} went to the {place}."]
    if pick < 0.33:
        sentences += [
            f"{hero} saw a {adj} {animal} near a {thing}.",
            f'"Hello, little {animal}," said {hero}. "Do you want to play?"',
            f"The {animal} {move} around the {place} and {hero} laughed.",
            f"They played with the {thing} all day.",
        ]
    elif pick < 0.66:
        sentences += [
            f"{hero} {verb} a {adj} {thing} under a tree.",
            f"{hero} showed the {thing} to {friend}.",
            f'"It is so {adj2}!" said {friend}. {friend} felt {feeling}.',
            f"Then they {move} to the {place2} together.",
        ]
    else:
        sentences += [
            f"{hero} lost a {adj} {thing} and felt {feeling}.",
            f"{friend} and a {animal} helped {hero} look for it.",
            f"They looked in the {place2} and behind the {thing2}.",
            f"At last the {animal} found the {thing}. {hero} said, \"Thank you, {animal}!\"",
        ]
    ending = rng.choice([
        f"{hero} and {friend} were best friends.",
        f"That night {hero} slept with the {thing}.",
        f"The {animal} was {adj2} and {feeling} too.",
        f"{hero} learned to be {rng.choice(ADJECTIVES)} and kind.",
        "The end.",
    ])
    sentences.append(ending)
    return " ".join(sentences)


def stories(n_chars: int, seed: int = 0) -> str:
    """Children's-story English of about ``n_chars`` characters, reproducible from ``seed``."""
    rng = random.Random(f"tokendyn-stories-{seed}")
    parts: list[str] = []
    total = 0
    while total < n_chars:
        s = _story(rng)
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
