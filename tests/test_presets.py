"""Every preset against its card (the model cards and lab log in shared/seeds), field by field.

A row is ``preset: {field: card's figure}``; a field the card does not name is left out (the
preset's own choice, e.g. the learning rate of Duckling). The live fractions are measured on the
embedded corpus and tokenizer at the preset's full size, against the card's figure +/- 5 points.
"""
import numpy as np
import pytest

from tokendyn.format import CLASS_DEAD, CLASS_LIVE, CLASS_PHANTOM
from tokendyn.trainers import PRESETS
from tokendyn.trainers.config import from_preset
from tokendyn.trainers.data import build

# 004 Duckling: 8 layers, dim 128, 2 heads, FFN 512, context 512; GPT-2 truncated to its 8,000 live
# ids, embedding padded to 10,000 rows (2,000 phantom, "20% dead by design"); 10 % of Chinchilla:
# 1,427 steps of batch 8.
DUCKLING = dict(layers=8, dim=128, heads=2, ffn_hidden=512, context=512, vocab_size=8000, n_phantom=2000,
                batch=8, steps=1427)
# 003 Duckling II: 2 layers, dim 128, 2 heads, FFN 512, context 512, bf16 mixed; 8,192 rows of which
# 6,144 live and 2,048 never in the data; batch 2, lr 1e-4, wd 0.01, AdamW, linear decay, seed 42;
# the Quick start's 10K steps.
DUCKLING2 = dict(layers=2, dim=128, heads=2, ffn_hidden=512, context=512, precision="bf16-mixed", vocab_size=6144,
                 n_phantom=2048, batch=2, lr=1e-4, weight_decay=0.01, schedule="linear", min_lr_ratio=0.0,
                 seed=42, steps=10_000)
# 000/001 Goldilocks: Lean 2L/64D/1H FFN 2x, batch x context 256 x 64; Balanced 3L/96D/2H 2x,
# 128 x 128; Rich 4L/128D/2H 2x, 128 x 128; 5,000 steps; bf16 weights; dead tokens from a foreign
# script the model never sees.
GOLDILOCKS = {
    "goldilocks-lean": dict(layers=2, dim=64, heads=1, ffn_ratio=2.0, batch=256, context=64),
    "goldilocks-balanced": dict(layers=3, dim=96, heads=2, ffn_ratio=2.0, batch=128, context=128),
    "goldilocks-rich": dict(layers=4, dim=128, heads=2, ffn_ratio=2.0, batch=128, context=128),
}
# 002 lab log, Flannel: a 10,000-id character-level BPE over English + Thai, a 5 MB English corpus,
# 1,000 steps; Flannel 1 tied, Flannel 2 "an exact copy except that it doesn't have tied weights".
FLANNEL = dict(vocab_size=10_000, n_phantom=0, corpus_chars=5_000_000, steps=1000)

CARDS = {
    "duckling": DUCKLING,
    "duckling2": DUCKLING2,
    **{name: {**row, "steps": 5000, "precision": "bf16-pure", "n_phantom": 0} for name, row in GOLDILOCKS.items()},
    "flannel": {**FLANNEL, "tied": True, "precision": "bf16-pure"},
    "flannel-untied": {**FLANNEL, "tied": False, "precision": "bf16-pure"},
}

# the card's live fraction of the embedding rows, where it gives one: Flannel 6,301 of 10,000
# (002, 10:37); Duckling 8,000 of 10,000 rows; Duckling II 6,144 of 8,192 rows
LIVE_FRACTION = {"flannel": 6301 / 10_000, "duckling": 8000 / 10_000, "duckling2": 6144 / 8192}


def test_every_preset_has_a_card_row_or_is_tiny():
    assert set(PRESETS) == set(CARDS) | {"tiny"}


@pytest.mark.parametrize("preset", sorted(CARDS))
def test_preset_matches_its_card(preset):
    cfg = from_preset(preset)
    got = {field: getattr(cfg, field) for field in CARDS[preset]}
    assert got == CARDS[preset], {f: (got[f], card) for f, card in CARDS[preset].items() if got[f] != card}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_schedule_ends_above_zero_unless_the_card_names_one(preset):
    """A freeze in the last steps must be the lattice's doing, not a learning rate of zero: every
    preset decays to a floor, except where its card names a schedule ending at zero (Duckling II's
    linear decay, as HF Trainer's)."""
    cfg = from_preset(preset)
    if preset == "duckling2":
        assert cfg.schedule == "linear" and cfg.min_lr_ratio == 0.0
    else:
        assert cfg.schedule == "constant" or cfg.min_lr_ratio >= 0.1


@pytest.mark.parametrize("preset", sorted(LIVE_FRACTION))
def test_live_fraction_matches_the_card(preset, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path))
    cfg = from_preset(preset)
    data = build(corpus=None, corpus_chars=cfg.corpus_chars, foreign_chars=cfg.foreign_chars,
                 vocab_size=cfg.vocab_size, n_phantom=cfg.n_phantom, seed=cfg.seed)
    classes = np.asarray(data.token_class)
    live = float(np.mean(classes == CLASS_LIVE))
    assert abs(live - LIVE_FRACTION[preset]) <= 0.05, (preset, live, LIVE_FRACTION[preset])
    assert np.sum(classes == CLASS_PHANTOM) == cfg.n_phantom
    assert np.sum(classes == CLASS_DEAD) + np.sum(classes == CLASS_LIVE) == cfg.vocab_size
    # a realistic vocabulary: thousands of distinct live tokens, Zipf-like (the most frequent
    # token is well under a tenth of the text)
    counts = np.sort(np.asarray(data.token_count)[classes == CLASS_LIVE])[::-1]
    assert counts.size >= 5000 and counts[0] / counts.sum() < 0.1


def test_token_ids_are_keyed_by_what_they_are_made_from(tmp_path, monkeypatch):
    """A change to the corpus text reuses no cached ids, even at the same size and seed."""
    import tokendyn.trainers.corpus as corpus

    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path))
    first = build(corpus=None, corpus_chars=50_000, foreign_chars=0, vocab_size=128, n_phantom=0, seed=0)
    original = corpus.stories
    monkeypatch.setattr(corpus, "stories", lambda n, seed=0: original(n, seed).replace("e", "q"))
    second = build(corpus=None, corpus_chars=50_000, foreign_chars=0, vocab_size=128, n_phantom=0, seed=0)
    assert "q" in second.tokenizer.decode(np.asarray(second.train[:2000]))
    assert "e" not in second.tokenizer.decode(np.asarray(second.train[:2000]))
    assert not np.array_equal(np.asarray(first.train[:500]), np.asarray(second.train[:500]))
