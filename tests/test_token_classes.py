"""token_classes: live / dead / phantom rows of a run trained elsewhere, from its tokenizer and ids,
against a float64-free numpy reference (a plain Python count) on every input form."""
import numpy as np
import pytest

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.integrations.classes import token_classes


@pytest.fixture(scope="module")
def tokenizer():
    from tokendyn.trainers.corpus import stories
    from tokendyn.trainers.tokenizer import train_char_bpe

    return train_char_bpe([stories(40_000, seed=5)], 160, cache=False).tokenizer


def reference(ids, n_ids, rows):
    counts = [0] * rows
    for i in np.asarray(ids).reshape(-1).tolist():
        counts[i] += 1
    cls = [fmt.CLASS_PHANTOM if r >= n_ids else fmt.CLASS_LIVE if counts[r] else fmt.CLASS_DEAD for r in range(rows)]
    return np.array(cls, np.uint8), np.array(counts, np.int64)


@pytest.mark.parametrize("form", ["array", "memmap", "2d", "lists", "rows", "tensor"])
def test_classes_from_every_form_of_ids(tokenizer, tmp_path, form):
    from tokendyn.trainers.corpus import stories

    ids = np.array(tokenizer.encode(stories(3_000, seed=6)).ids, np.int64)
    ids = ids[: ids.size // 10 * 10]
    n_ids, rows = tokenizer.get_vocab_size(), tokenizer.get_vocab_size() + 12
    if form == "memmap":
        path = tmp_path / "ids.npy"
        np.save(path, ids.astype(np.uint16))
        given = np.load(path, mmap_mode="r")
    elif form == "2d":
        given = ids.reshape(10, -1)
    elif form == "lists":
        given = [ids[i:i + 50].tolist() for i in range(0, ids.size, 50)]
    elif form == "rows":
        given = ({"input_ids": ids[i:i + 50].tolist()} for i in range(0, ids.size, 50))
    elif form == "tensor":
        torch = pytest.importorskip("torch")
        given = torch.from_numpy(ids)
    else:
        given = ids
    got = token_classes(tokenizer, given, rows)
    cls, counts = reference(ids, n_ids, rows)
    np.testing.assert_array_equal(got.token_class, cls)
    np.testing.assert_array_equal(got.token_count, counts)
    c = got.counts_by_class()
    assert c["phantom"] == 12 and c["live"] > 0 and c["dead"] > 0 and sum(c.values()) == rows
    vocab = tokenizer.get_vocab()
    assert all(got.token_text[i] == t for t, i in vocab.items())
    assert got.token_text[-1] == ""


def test_a_transformers_tokenizer_and_the_recorder_take_them(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    import tokendyn
    from tokendyn.recorder import Recorder

    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    ids = np.array([1, 2, 3, 3, 5], np.int64)
    got = token_classes(fast, ids, 170)
    assert got.counts_by_class()["live"] == 4
    with Recorder(tmp_path / "m.h5", **got.recorder_kwargs()) as rec:
        rec.capture(0, W=np.zeros((170, 4), np.float32))
    ds = tokendyn.open_movie(tmp_path / "m.h5")
    np.testing.assert_array_equal(ds.token_class.values, got.token_class)


def test_bad_inputs(tokenizer):
    with pytest.raises(TokendynError, match="outside the"):
        token_classes(tokenizer, np.array([0, 500]), 200)
    with pytest.raises(TokendynError, match="outside the"):
        token_classes(tokenizer, np.array([-1]), 200)
    with pytest.raises(TokendynError, match="integers"):
        token_classes(tokenizer, np.array([0.5]), 200)
    with pytest.raises(TokendynError, match="not a tokenizer"):
        token_classes(object(), np.array([0]), 200)
    with pytest.raises(TokendynError, match="input_ids"):
        token_classes(tokenizer, [{"text": "x"}], 200)
    with pytest.raises(TokendynError, match="n_rows"):
        token_classes(tokenizer, np.array([0]), 0)
