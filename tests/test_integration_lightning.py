"""tokendyn.integrations.lightning.MovieCallback on real (tiny, CPU) Lightning fits."""
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pl = pytest.importorskip("lightning.pytorch")

from conftest import error_without  # noqa: E402
from conftest import read_recorded as read  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn.errors import RecorderError, TokendynError  # noqa: E402
from tokendyn.integrations.classes import token_classes  # noqa: E402
from tokendyn.integrations.lightning import MovieCallback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 64
IDS = torch.randint(0, VOCAB - 4, (40, 16), generator=torch.Generator().manual_seed(0))


class Vocab:
    def get_vocab(self):
        return {f"t{i}": i for i in range(VOCAB - 4)}


class TinyGPT(pl.LightningModule):
    def __init__(self, tie=True):
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=32,
                                      tie_word_embeddings=tie)
        self.model = transformers.GPT2LMHeadModel(cfg)

    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch, labels=batch).loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Bare(pl.LightningModule):
    """No get_input_embeddings anywhere: the embedding is found by name or callable."""

    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, 8)
        self.head = torch.nn.Linear(8, VOCAB)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.head(self.tok(batch)).flatten(0, 1), batch.flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, module, callback, *, steps=20, ckpt_path=None, save_every=None):
    callbacks = [callback]
    if save_every:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), filename="{step}",
                                                      every_n_train_steps=save_every, save_top_k=-1))
    trainer = pl.Trainer(max_steps=steps, accumulate_grad_batches=2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=bool(save_every), enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=callbacks)
    loader = torch.utils.data.DataLoader(IDS, batch_size=2, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers
        trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def test_fit_records_every_optimizer_step_bit_exact_with_scalars_and_classes(tmp_path):
    path = tmp_path / "run.h5"
    module = TinyGPT()
    classes = token_classes(Vocab(), IDS.numpy(), n_rows=VOCAB)
    fit(tmp_path, module, MovieCallback(path, classes=classes))
    m = read(path)
    assert m["step"].tolist() == list(range(21))  # 20 optimizer steps (40 micro-batches) + frame 0
    assert np.array_equal(m["W"][-1], module.model.get_input_embeddings().weight.detach().numpy())
    assert m["E"] is None
    assert np.all(np.isfinite(m["loss"][1:])) and np.all(np.isfinite(m["grad_norm"][1:]))
    assert np.isnan(m["loss"][0]) and np.isnan(m["lr"][0])
    np.testing.assert_allclose(m["lr"][1:], [1e-2 / (1 + s) for s in range(20)], rtol=1e-6)
    assert m["config"]["trainer"]["accumulate_grad_batches"] == 2 and m["config"]["model_config"]["n_embd"] == 16
    assert m["token_class"].tolist() == classes.token_class.tolist()
    assert tokendyn.check(path).ok


def test_untied_E_and_resume_from_a_checkpoint_continue_the_movie(tmp_path):
    path = tmp_path / "resumed.h5"
    fit(tmp_path, TinyGPT(tie=False), MovieCallback(path), save_every=10)
    first = read(path)
    assert first["step"].tolist() == list(range(21)) and first["E"] is not None
    ckpt = tmp_path / "ckpt" / "step=10.ckpt"
    assert ckpt.is_file()
    module = TinyGPT(tie=False)
    fit(tmp_path, module, MovieCallback(path), ckpt_path=str(ckpt))
    m = read(path)
    assert m["step"].tolist() == list(range(21))
    assert np.array_equal(m["W"][:11], first["W"][:11]) and np.array_equal(m["E"][:11], first["E"][:11])
    assert np.array_equal(m["W"][-1], module.model.get_input_embeddings().weight.detach().numpy())
    assert np.array_equal(m["E"][-1], module.model.get_output_embeddings().weight.detach().numpy())
    report = tokendyn.check(path)
    assert report.ok, report.problems


def test_a_resume_into_another_runs_movie_is_refused(tmp_path):
    path = tmp_path / "a.h5"
    fit(tmp_path, TinyGPT(), MovieCallback(path), steps=4, save_every=2)
    other = tmp_path / "b.h5"
    fit(tmp_path / "b", TinyGPT(), MovieCallback(other), steps=4)
    os.replace(other, path)  # the checkpoint's movie was swapped for another run's
    with pytest.raises(TokendynError, match="belongs to another movie"):
        fit(tmp_path, TinyGPT(), MovieCallback(path), steps=4, ckpt_path=str(tmp_path / "ckpt" / "step=2.ckpt"))


def test_the_embedding_argument_by_name_or_callable(tmp_path):
    module = Bare()
    fit(tmp_path, module, MovieCallback(tmp_path / "named.h5", embedding="tok.weight"), steps=3)
    assert np.array_equal(read(tmp_path / "named.h5")["W"][-1], module.tok.weight.detach().numpy())
    fit(tmp_path, Bare(), MovieCallback(tmp_path / "called.h5", embedding=lambda m: m.tok), steps=3)
    assert read(tmp_path / "called.h5")["step"].tolist() == [0, 1, 2, 3]
    with pytest.raises(TokendynError, match="no input embedding found in Bare"):
        fit(tmp_path, Bare(), MovieCallback(tmp_path / "none.h5"), steps=3)
    with pytest.raises(TokendynError, match="no parameter 'tok.wieght'"):
        fit(tmp_path, Bare(), MovieCallback(tmp_path / "typo.h5", embedding="tok.wieght"), steps=3)
    assert not os.path.lexists(tmp_path / "none.h5") and not os.path.lexists(tmp_path / "typo.h5")


def test_an_existing_file_without_overwrite_is_refused_naming_it(tmp_path):
    path = tmp_path / "taken.h5"
    path.write_bytes(b"not yours")
    with pytest.raises(RecorderError, match="already exists") as err:
        fit(tmp_path, Bare(), MovieCallback(path, embedding="tok.weight"), steps=2)
    assert str(path) in str(err.value) and path.read_bytes() == b"not yours"


def test_only_global_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(pl.Trainer, "is_global_zero", property(lambda self: False))
    path = tmp_path / "rank1.h5"
    fit(tmp_path, Bare(), MovieCallback(path, embedding="tok.weight"), steps=3)
    assert not os.path.lexists(path) and not os.path.lexists(f"{path}.lock")


def test_without_lightning_the_error_names_the_extra():
    blocked = ["lightning", "lightning.pytorch"]
    assert "pip install 'tokendyn[lightning]'" in error_without(blocked, "tokendyn.integrations.lightning")
