"""tokendyn.integrations.hf.MovieCallback on real (tiny, CPU) transformers.Trainer runs."""
import json
import os

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import error_without  # noqa: E402
from conftest import read_recorded as read  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn import format as fmt  # noqa: E402
from tokendyn.errors import RecorderError, TokendynError  # noqa: E402
from tokendyn.integrations.classes import token_classes  # noqa: E402
from tokendyn.integrations.hf import MovieCallback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 64


class RandomIds(torch.utils.data.Dataset):
    def __init__(self, n=32, length=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB - 4, (n, length), generator=g)  # the last 4 rows never occur

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Vocab:
    """A tokenizer stand-in: 60 entries, so rows 60..63 of the embedding are phantom."""

    def get_vocab(self):
        return {f"t{i}": i for i in range(VOCAB - 4)}


def gpt2(**kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=32, **kw)
    return transformers.GPT2LMHeadModel(cfg)


def train(tmp_path, model, callback, *, steps=30, resume=None, out="out", **args):
    kw = dict(output_dir=str(tmp_path / out), max_steps=steps, gradient_accumulation_steps=2,
              per_device_train_batch_size=2, logging_steps=5, report_to=[], use_cpu=True, save_strategy="no",
              learning_rate=1e-2, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    kw.update(args)
    trainer = transformers.Trainer(model=model, args=transformers.TrainingArguments(**kw),
                                   train_dataset=RandomIds(), callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def weight(t):
    return t.detach().float().numpy() if t.dtype == torch.float32 else t.detach().view(torch.int16).numpy().view(np.uint16)


def test_trainer_run_records_every_optimizer_step_bit_exact_with_config_and_classes(tmp_path):
    path = tmp_path / "run.h5"
    ids = RandomIds().ids.numpy()
    model = gpt2()
    classes = token_classes(Vocab(), ids, n_rows=VOCAB)
    train(tmp_path, model, MovieCallback(path, classes=classes, title="tiny"))
    m = read(path)
    assert m["step"].tolist() == list(range(31))  # 30 optimizer steps (60 micro-batches) + frame 0
    assert np.array_equal(m["W"][-1], weight(model.get_input_embeddings().weight))
    assert not np.array_equal(m["W"][0], m["W"][-1])
    assert m["E"] is None  # GPT-2 ties lm_head to wte
    logged = [s for s in range(31) if s and s % 5 == 0]
    assert [s for s in range(31) if np.isfinite(m["loss"][s])] == logged
    assert [s for s in range(31) if np.isfinite(m["grad_norm"][s])] == logged
    assert np.isnan(m["lr"][0]) and np.all(np.isfinite(m["lr"][1:]))
    assert m["lr"][1] > m["lr"][-1] > 0  # the linear decay, as the Trainer scheduled it
    assert m["config"]["training_args"]["gradient_accumulation_steps"] == 2
    assert m["config"]["model_config"]["n_embd"] == 16
    assert m["token_class"].tolist() == classes.token_class.tolist()
    assert m["token_class"][-4:].tolist() == [fmt.CLASS_PHANTOM] * 4
    assert m["token_text"][:2] == ["t0", "t1"] and m["token_count"].tolist() == classes.token_count.tolist()
    assert tokendyn.check(path).ok


def test_an_untied_model_records_E(tmp_path):
    path = tmp_path / "untied.h5"
    model = gpt2(tie_word_embeddings=False)
    train(tmp_path, model, MovieCallback(path), steps=4)
    m = read(path)
    assert m["E"] is not None and m["E"].shape == m["W"].shape == (5, VOCAB, 16)
    assert np.array_equal(m["E"][-1], weight(model.get_output_embeddings().weight))
    assert np.array_equal(m["W"][-1], weight(model.get_input_embeddings().weight))
    assert not np.array_equal(m["E"][-1], m["W"][-1])


def test_a_bfloat16_model_is_recorded_bit_exact(tmp_path):
    path = tmp_path / "bf16.h5"
    model = gpt2().to(torch.bfloat16)
    train(tmp_path, model, MovieCallback(path), steps=4)
    m = read(path)
    assert m["W_dtype"] == np.uint16
    assert np.array_equal(m["W"][-1], weight(model.get_input_embeddings().weight))
    assert tokendyn.check(path).ok


def test_bf16_mixed_precision_records_the_float32_master_weights(tmp_path):
    path = tmp_path / "amp.h5"
    model = gpt2()
    try:
        train(tmp_path, model, MovieCallback(path), steps=4, bf16=True)
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - depends on the CPU / torch build
        pytest.skip(f"transformers refuses bf16=True on this CPU: {exc}")
    m = read(path)
    assert m["W_dtype"] == np.float32
    assert np.array_equal(m["W"][-1], weight(model.get_input_embeddings().weight))


def test_resume_from_checkpoint_continues_the_movie_without_duplicates_or_gaps(tmp_path):
    path = tmp_path / "resumed.h5"
    train(tmp_path, gpt2(), MovieCallback(path), save_strategy="steps", save_steps=10)
    first = read(path)
    assert first["step"].tolist() == list(range(31))
    checkpoint = tmp_path / "out" / "checkpoint-10"
    assert checkpoint.is_dir()
    model = gpt2()
    with h5py.File(path, "r") as f:
        assert json.loads((checkpoint / "tokendyn_movie.json").read_text())["run_id"] == f.attrs["run_id"]
    train(tmp_path, model, MovieCallback(path), resume=str(checkpoint))
    m = read(path)
    assert m["step"].tolist() == list(range(31))  # frames 11.. of the first run were replaced
    assert np.all(np.diff(m["step"]) > 0)
    assert np.array_equal(m["W"][:11], first["W"][:11])
    assert np.array_equal(m["W"][-1], weight(model.get_input_embeddings().weight))
    report = tokendyn.check(path)
    assert report.ok, report.problems


def test_resuming_into_another_runs_movie_is_refused(tmp_path):
    path = tmp_path / "a.h5"
    train(tmp_path, gpt2(), MovieCallback(path), steps=4, save_strategy="steps", save_steps=2)
    other = tmp_path / "b.h5"
    train(tmp_path, gpt2(), MovieCallback(other), steps=2, out="other")
    os.replace(other, path)  # the checkpoint's movie was swapped for another run's
    before = read(path)["step"].tolist()
    with pytest.raises(RecorderError, match="belongs to another movie"):
        train(tmp_path, gpt2(), MovieCallback(path), steps=4, resume=str(tmp_path / "out" / "checkpoint-2"))
    assert read(path)["step"].tolist() == before  # left as it was


def _hooks(tmp_path, model, callback, *, main=True):
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    state = transformers.TrainerState()
    state.is_world_process_zero = main
    control = transformers.TrainerControl()
    return args, state, control


def test_a_process_other_than_world_zero_writes_nothing(tmp_path):
    path = tmp_path / "rank1.h5"
    model = gpt2()
    cb = MovieCallback(path)
    args, state, control = _hooks(tmp_path, model, cb, main=False)
    cb.on_train_begin(args, state, control, model=model)
    for step in (1, 2):
        state.global_step = step
        cb.on_step_end(args, state, control, model=model)
        cb.on_log(args, state, control, model=model, logs={"loss": 1.0})
    cb.on_save(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)
    assert not os.path.lexists(path) and not os.path.lexists(f"{path}.lock")


def test_an_existing_movie_without_overwrite_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "taken.h5"
    path.write_bytes(b"not yours")
    model = gpt2()
    cb = MovieCallback(path)
    args, state, control = _hooks(tmp_path, model, cb)
    with pytest.raises(RecorderError, match="already exists") as err:
        cb.on_train_begin(args, state, control, model=model)
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"not yours"
    cb = MovieCallback(path, overwrite=True)
    cb.on_train_begin(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)
    assert read(path)["step"].tolist() == [0]


def test_a_model_without_an_input_embedding_is_a_clear_error(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    cb = MovieCallback(tmp_path / "none.h5")
    args, state, control = _hooks(tmp_path, model, cb)
    with pytest.raises(TokendynError, match="no input embedding found in Sequential.*embedding="):
        cb.on_train_begin(args, state, control, model=model)
    assert not os.path.lexists(tmp_path / "none.h5")
    cb = MovieCallback(tmp_path / "named.h5", embedding="0.weight")  # the named-parameter way out
    cb.on_train_begin(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)
    assert read(tmp_path / "named.h5")["W"].shape == (1, 4, 4)


def test_without_transformers_the_error_names_the_extra():
    assert "pip install 'tokendyn[hf]'" in error_without(["transformers"], "tokendyn.integrations.hf")
