"""The trainer's checkpoint is data: read with weights_only, written atomically, matched to its movie and config."""
import importlib
import os
import pickle
import shutil
import signal

import pytest

torch = pytest.importorskip("torch")

import tokendyn  # noqa: E402
from tokendyn.errors import ConfigError, TokendynError  # noqa: E402
from tokendyn.trainers import checkpoint as ckpt_mod  # noqa: E402
from tokendyn.trainers import train  # noqa: E402
from tokendyn.trainers.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402

TRAIN_MODULE = importlib.import_module("tokendyn.trainers.train")  # the package's `train` is the function
QUICK = dict(progress=False, sample_tokens=0, eval_every=0)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


class MakesADirectory:
    """Unpickling this runs os.mkdir(path): what a crafted checkpoint could do with any code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _movie_with_a_crafted_checkpoint(tmp_path, write):
    movie = tmp_path / "run.h5"
    train("tiny", out=str(movie), steps=3, **QUICK)
    marker = tmp_path / "code-ran"
    write(MakesADirectory(str(marker)), checkpoint_path(str(movie)))
    return str(movie), marker


@pytest.mark.parametrize("write", [
    lambda payload, path: torch.save({"model": payload, "optimizer": {}}, path),  # a zip checkpoint
    lambda payload, path: open(path, "wb").write(pickle.dumps({"model": payload})),  # a bare (legacy) pickle
], ids=["torch-zip", "legacy-pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, write):
    movie, marker = _movie_with_a_crafted_checkpoint(tmp_path, write)
    with pytest.raises(ConfigError, match="refusing to load the checkpoint") as caught:
        train("tiny", out=movie, steps=6, resume=True, **QUICK)
    assert caught.value.path == checkpoint_path(movie)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable tokendyn checkpoint"),
    (b"not a checkpoint at all\n", "refusing to load the checkpoint"),
    (b"\x80\x02}q\x00.", "not a readable tokendyn checkpoint"),
    ("tensor-dict", "not a tokendyn checkpoint"),
    ("version-1", "older tokendyn"),
])
def test_what_is_not_a_checkpoint_is_a_config_error_naming_the_file(tmp_path, content, message):
    path = str(tmp_path / "x.ckpt.pt")
    if content == "tensor-dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif content == "version-1":  # what tokendyn wrote before checkpoints named their movie
        torch.save({"model": {}, "optimizer": {}, "step": 3, "data_rng": {}, "torch_rng": torch.get_rng_state(),
                    "config": {}}, path)
    else:
        open(path, "wb").write(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_checkpoint(path)
    assert caught.value.path == path


def test_a_checkpoint_holds_only_plain_data_and_names_its_movie(tmp_path):
    movie = str(tmp_path / "run.h5")
    result = train("tiny", out=movie, steps=4, precision="bf16-pure", rounding="stochastic", **QUICK)
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)  # raises on anything else
    ds = tokendyn.open_movie(movie)
    assert ckpt["step"] == 4 and ckpt["frames"] == ds.sizes["frame"] == 5
    assert ckpt["run_id"] == ds.attrs["run_id"]
    assert ckpt["data_rng"]["bit_generator"] == "PCG64" and isinstance(ckpt["rounding_rng"], torch.Tensor)


def test_resume_refuses_a_checkpoint_of_another_movie(tmp_path):
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    train("tiny", out=a, steps=3, **QUICK)
    train("tiny", out=b, steps=3, **QUICK)
    shutil.copy(checkpoint_path(b), checkpoint_path(a))  # a stale checkpoint beside another run
    before = tokendyn.open_movie(a).step.values.tolist()
    with pytest.raises(ConfigError, match="belongs to another movie"):
        train("tiny", out=a, steps=6, resume=True, **QUICK)
    assert tokendyn.open_movie(a).step.values.tolist() == before  # refused before anything was truncated


def test_overwrite_then_resume_refuses_the_old_runs_checkpoint(tmp_path, monkeypatch):
    """--overwrite makes a new movie; until it writes its own checkpoint, the one beside it is the old run's."""
    movie = str(tmp_path / "run.h5")
    train("tiny", out=movie, steps=3, **QUICK)
    monkeypatch.setattr(TRAIN_MODULE, "save_checkpoint", lambda *a, **k: None)  # killed before writing one
    train("tiny", out=movie, steps=5, overwrite=True, **QUICK)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="belongs to another movie"):
        train("tiny", out=movie, steps=8, resume=True, **QUICK)


@pytest.mark.parametrize("change, named", [(dict(lr=1e-2), "lr 0.003 -> 0.01"), (dict(seed=7), "seed 42 -> 7"),
                                           (dict(tied=False), "tied True -> False")])
def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, change, named):
    movie = str(tmp_path / "run.h5")
    train("tiny", out=movie, steps=3, **QUICK)
    with pytest.raises(ConfigError, match="another config") as caught:
        train("tiny", out=movie, steps=6, resume=True, **QUICK, **change)
    assert named in str(caught.value)
    result = train("tiny", out=movie, steps=5, resume=True, **QUICK, record=2)  # steps and record may change
    assert result.steps == 5


def test_resume_refuses_a_movie_changed_since_its_checkpoint(tmp_path):
    import h5py

    from tokendyn.format.layout import frame_axis_names

    movie = str(tmp_path / "run.h5")
    train("tiny", out=movie, steps=4, **QUICK)
    with h5py.File(movie, "r+") as f:  # frames lost after the checkpoint was written
        for name in frame_axis_names(f):
            f[name].resize(3, axis=0)
    with pytest.raises(ConfigError, match="matches 5 frames up to step 4, but .* has 3"):
        train("tiny", out=movie, steps=6, resume=True, **QUICK)


def test_resume_without_a_movie_is_a_config_error():
    with pytest.raises(ConfigError, match="resume continues a movie"):
        train("tiny", out=None, resume=True, **QUICK)


def test_checkpoints_are_written_during_the_run_matching_the_flushed_movie(tmp_path, monkeypatch):
    written = []
    save = TRAIN_MODULE.save_checkpoint

    def spy(movie, *, step, movie_state, **kwargs):
        written.append((step, movie_state.frames))
        return save(movie, step=step, movie_state=movie_state, **kwargs)

    monkeypatch.setattr(TRAIN_MODULE, "save_checkpoint", spy)
    train("tiny", out=str(tmp_path / "run.h5"), steps=6, checkpoint_every=1e-9, record="dense:2,every:2", **QUICK)
    # after every step but the last, then at the end; frames 0, 1, 2, 4, 6 are recorded
    assert written == [(1, 2), (2, 3), (3, 3), (4, 4), (5, 4), (6, 5)]
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    written.clear()
    train("tiny", out=str(tmp_path / "end.h5"), steps=6, checkpoint_every=0, **QUICK)
    assert written == [(6, 7)]  # 0: only at the end


def test_a_checkpoint_write_that_fails_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    movie = str(tmp_path / "run.h5")
    result = train("tiny", out=movie, steps=3, **QUICK)
    before = open(result.checkpoint, "rb").read()
    real_save = torch.save

    def save_half_then_fail(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(TokendynError, match="cannot write the checkpoint .No space left on device"):
        ckpt_mod.write_atomically({"step": 1}, result.checkpoint)
    assert open(result.checkpoint, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt.pt", "run.h5"]


@pytest.mark.parametrize("signum, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_sigterm_and_ctrl_c_stop_after_the_step_and_close_cleanly(tmp_path, monkeypatch, signum, name):
    """The signal lands inside step 6; the step finishes, the movie is closed (no .reserve left), the
    checkpoint matches it, and the handler that was there before is put back."""
    loop = importlib.import_module("tokendyn.trainers.loop")
    original = loop.lr_at

    def signalling(step, **kwargs):
        if step == 6:
            os.kill(os.getpid(), signum)
        return original(step, **kwargs)

    def outer_handler(*_):
        raise AssertionError(f"{name} reached the handler outside the training loop")

    monkeypatch.setattr(loop, "lr_at", signalling)
    previous = signal.signal(signum, outer_handler)
    try:
        movie = str(tmp_path / "run.h5")
        result = train("tiny", out=movie, steps=50, **QUICK)
        assert signal.getsignal(signum) is outer_handler
    finally:
        signal.signal(signum, previous)
    assert result.interrupted and result.stopped_by == name and result.steps == 6
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt.pt", "run.h5"]  # no .reserve, no .lock
    assert tokendyn.open_movie(movie).step.values.tolist() == list(range(7))
    assert torch.load(result.checkpoint, weights_only=True)["step"] == 6
