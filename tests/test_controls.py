"""Control runs (``control=`` / ``--control``): runs built to learn nothing, on every path of the trainer."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import one_line_error, run_cli  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn import format as fmt  # noqa: E402
from tokendyn.errors import ConfigError  # noqa: E402
from tokendyn.trainers import from_preset, train  # noqa: E402
from tokendyn.trainers.config import CONTROLS  # noqa: E402
from tokendyn.trainers.controls import (  # noqa: E402
    TargetControl,
    control_targets,
    decay_only_step,
    effective_weight_decay,
    graph_safe,
)
from tokendyn.trainers.optim import PureBF16AdamW, lr_at  # noqa: E402
from tokendyn.trainers.train import build_data, build_model, build_optimizer, resolve_config  # noqa: E402

QUICK = dict(progress=False, sample_tokens=0, log=lambda text: None)
# Measured on the tiny preset's data (batch 16 x context 64): a model that predicts the unigram
# distribution exactly scores 5.224 +- 0.030 (std over 2000 training batches; lowest 5.119) against
# the baseline 5.223, and 5.188 on the 4 fixed held-out batches. 4 standard deviations of one batch:
TOL = 0.12
# ... while the same run without a control is at 4.49 after 60 steps: 0.7 below the baseline.


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    try:
        yield build_data(from_preset("tiny"))
    finally:
        mp.undo()


# -- the config ---------------------------------------------------------------------------------------

def test_control_is_a_validated_config_field():
    assert from_preset("tiny").control == "none"
    for name in CONTROLS:
        cfg = from_preset("tiny", control=name)
        cfg.validate()
        assert cfg.control == name and cfg.to_dict()["control"] == name
    with pytest.raises(ConfigError, match="unknown control 'bogus'; choose one of none, shuffled-targets"):
        from_preset("tiny", control="bogus").validate()
    with pytest.raises(ConfigError, match="needs batch >= 2"):
        from_preset("tiny", control="shuffled-targets", batch=1).validate()
    assert resolve_config("tiny", ["control=none"], {}).control == "none"  # the word, not None
    assert resolve_config("tiny", ["control=lr-zero"], {}).control == "lr-zero"


# -- the target functions -----------------------------------------------------------------------------

def test_shuffled_targets_are_a_derangement_of_the_rows():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8, dtype=np.int64)[:, None], 5, axis=1)  # row i holds i
    shifts = set()
    for _ in range(300):
        out = control_targets("shuffled-targets", y, rng)
        assert out.shape == y.shape and out.dtype == y.dtype
        rows = out[:, 0]
        assert (out == rows[:, None]).all()  # whole rows move
        assert sorted(rows.tolist()) == list(range(8))  # a permutation of the rows ...
        assert (rows != np.arange(8)).all()  # ... where no row keeps its own targets
        shifts.add(int(-rows[0] % 8))  # np.roll by k puts row -k first
    assert shifts == set(range(1, 8))  # every non-zero roll occurs
    with pytest.raises(ValueError, match="at least 2"):
        control_targets("shuffled-targets", y[:1], rng)


def test_random_targets_are_only_live_ids_and_cover_them(tiny_data):
    live = np.flatnonzero(tiny_data.token_class == fmt.CLASS_LIVE)
    control = TargetControl("random-targets", 42, live)
    y = np.zeros((16, 64), np.int64)
    seen = np.concatenate([control.targets(y).ravel() for _ in range(100)])
    assert np.isin(seen, live).all()
    assert (tiny_data.token_class[seen] == fmt.CLASS_LIVE).all()  # never a dead or phantom id
    assert len(np.unique(seen)) == len(live)  # 102400 draws over ~300 ids: every live id comes up
    counts = np.bincount(seen, minlength=tiny_data.vocab_rows)[live]
    assert counts.min() > 0.5 * counts.mean()  # uniform, not the corpus's frequencies
    with pytest.raises(ValueError, match="live ids"):
        control_targets("random-targets", y, np.random.default_rng(0), np.zeros(0, np.int64))


def test_a_target_controls_stream_survives_its_state():
    a, b = TargetControl("random-targets", 1, np.arange(10)), TargetControl("random-targets", 1, np.arange(10))
    y = np.zeros((4, 6), np.int64)
    a.targets(y)
    b.set_state(a.state())
    assert np.array_equal(a.targets(y), b.targets(y))
    with pytest.raises(ValueError):
        b.set_state({"bit_generator": "MT19937"})


# -- runs ---------------------------------------------------------------------------------------------

def test_shuffled_targets_stay_at_the_unigram_baseline_while_a_normal_run_goes_below(tmp_path):
    normal = train("tiny", out=None, steps=60, **QUICK)
    out = str(tmp_path / "shuffled.h5")
    control = train("tiny", out=out, steps=60, control="shuffled-targets", **QUICK)
    unigram = control.unigram_entropy
    assert normal.final_loss < unigram - 0.5 and normal.heldout_loss < unigram - 0.5
    assert control.final_loss >= unigram - TOL, (control.final_loss, unigram)
    assert control.heldout_loss >= unigram - TOL, (control.heldout_loss, unigram)  # true held-out targets
    losses = tokendyn.open_movie(out).loss.values
    assert losses[-10:].mean() >= unigram - TOL / 2
    assert control.control == "shuffled-targets"


def test_random_targets_stay_near_log_n_live(tmp_path):
    result = train("tiny", out=None, steps=60, control="random-targets", **QUICK)
    log_live = math.log(result.tokens_per_class["live"])
    assert log_live > result.unigram_entropy + 0.3
    # the best prediction of uniform targets is uniform: log(n_live), whatever the batch
    assert log_live - 0.02 <= result.final_loss <= log_live + 0.1, (result.final_loss, log_live)
    assert result.heldout_loss >= result.unigram_entropy + 0.3  # learnt nothing of the true held-out text


def _initial_model(cfg):
    """The model a run starts from, built as train() builds it."""
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    return build_model(cfg, data, torch.device("cpu"))


@pytest.mark.parametrize("precision, wd", [("fp32", 1.0), ("bf16-pure", 20.0)])
def test_lr_zero_moves_w_by_weight_decay_alone_exactly(tmp_path, precision, wd):
    """Each frame is W_0 * prod_s (1 - lr_s * wd), recomputed step by step in the parameter's arithmetic
    (fp32, or the fp32 product rounded to nearest bf16); parameters without decay never move."""
    steps = 24
    out = str(tmp_path / "lrzero.h5")
    result = train("tiny", out=out, steps=steps, control="lr-zero", precision=precision, weight_decay=wd,
                   record="dense:5,every:4", **QUICK)
    cfg = resolve_config("tiny", [], dict(steps=steps, control="lr-zero", precision=precision, weight_decay=wd))
    ds = tokendyn.open_movie(out)
    recorded = dict(zip(ds.step.values.tolist(), range(ds.sizes["frame"])))
    initial = _initial_model(cfg)
    bf16 = precision == "bf16-pure"

    def movie_w(frame):
        if bf16:
            return torch.from_numpy(ds.W_bits.values[frame].astype(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.asarray(ds.W.values[frame], dtype=np.float32))

    params = {name: p.detach().clone() for name, p in initial.named_parameters()}
    assert torch.equal(movie_w(0), params["wte.weight"])  # the rebuilt model is the run's
    for step in range(1, steps + 1):
        factor = 1 - lr_at(step, base=cfg.lr, warmup=cfg.warmup, total=cfg.steps, schedule=cfg.schedule,
                           min_ratio=cfg.min_lr_ratio) * wd
        for name, p in params.items():
            if p.dim() >= 2:
                params[name] = (p.float() * torch.tensor(factor, dtype=torch.float32)).to(p.dtype)
        if step in recorded:
            assert torch.equal(movie_w(recorded[step]), params["wte.weight"]), f"W differs at step {step}"
    assert sorted(recorded) == [0, 1, 2, 3, 4, 5, 8, 12, 16, 20, 24]
    assert not torch.equal(movie_w(-1), movie_w(0))  # the decay did move W, even on the bf16 lattice
    final = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"]
    for name, p in initial.named_parameters():
        if p.dim() < 2:  # biases and LayerNorm gains: no decay, no gradient step
            assert torch.equal(final[name], p.detach()), name
        else:
            assert torch.equal(final[name], params[name]), name
    assert math.isfinite(result.final_loss) and result.final_loss > result.unigram_entropy


def test_decay_only_step_leaves_groups_without_decay_and_keeps_optimizer_state_empty():
    w, b = torch.nn.Parameter(torch.ones(3, 3)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    decay_only_step(opt, 0.1)
    assert torch.equal(w.detach(), torch.full((3, 3), np.float32(1 - 0.1 * 0.5)))
    assert torch.equal(b.detach(), torch.ones(3)) and not opt.state
    pure = PureBF16AdamW([{"params": [torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))],
                           "weight_decay": 10.0}], lr=0.1)
    decay_only_step(pure, 0.01)  # 1 * 0.9 rounds to bf16 0.8984375
    assert torch.equal(pure.param_groups[0]["params"][0].detach(), torch.full((4,), 0.9).to(torch.bfloat16))


def test_no_weight_decay_zeroes_every_group_and_differs_from_none(tmp_path):
    for control, decay in (("none", 0.5), ("no-weight-decay", 0.0)):
        cfg = from_preset("tiny", control=control, weight_decay=0.5)
        optimizer, _ = build_optimizer(_initial_model(cfg), cfg, torch.device("cpu"), capturable=False)
        assert [g["weight_decay"] for g in optimizer.param_groups] == [decay, 0.0]
    assert effective_weight_decay("no-weight-decay", 0.3) == 0.0 and effective_weight_decay("lr-zero", 0.3) == 0.3
    assert graph_safe("no-weight-decay") and graph_safe("none")
    assert not any(graph_safe(c) for c in ("shuffled-targets", "random-targets", "lr-zero"))
    runs = {}
    for control in ("none", "no-weight-decay"):
        result = train("tiny", out=str(tmp_path / f"{control}.h5"), steps=8, weight_decay=0.5, control=control,
                       **QUICK)
        ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
        runs[control] = (ckpt, tokendyn.open_movie(result.movie).W.values[-1])
    assert [g["weight_decay"] for g in runs["no-weight-decay"][0]["optimizer"]["param_groups"]] == [0.0, 0.0]
    assert [g["weight_decay"] for g in runs["none"][0]["optimizer"]["param_groups"]] == [0.5, 0.0]
    assert not np.array_equal(runs["none"][1], runs["no-weight-decay"][1])


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed", "bf16-pure"])
@pytest.mark.parametrize("control", ["shuffled-targets", "random-targets", "lr-zero", "no-weight-decay"])
def test_every_control_runs_on_every_precision(precision, control):
    result = train("tiny", out=None, steps=6, control=control, precision=precision, eval_every=3, **QUICK)
    assert result.steps == 6 and math.isfinite(result.final_loss) and math.isfinite(result.heldout_loss)
    assert result.control == control


# -- the movie, the summary, the command line -------------------------------------------------------------

def test_the_control_is_in_the_movie_and_the_summary(tmp_path):
    from tokendyn.trainers import result_text

    out = str(tmp_path / "c.h5")
    result = train("tiny", out=out, steps=5, control="random-targets", **QUICK)
    ds = tokendyn.open_movie(out)
    assert ds.attrs["config"]["control"] == "random-targets"
    assert "control random-targets" in str(ds.attrs.get("title"))
    text = result_text(result)
    assert text.splitlines()[0].startswith("control          random-targets (targets uniform over the live ids")
    plain = train("tiny", out=str(tmp_path / "n.h5"), steps=3, **QUICK)
    assert tokendyn.open_movie(plain.movie).attrs["config"]["control"] == "none"
    assert not any(line.startswith("control") for line in result_text(plain).splitlines())


def test_cli_control_and_a_bad_control(tmp_path, capsys):
    out = run_cli("train", "--preset", "tiny", "--steps", "12", "--out", str(tmp_path / "cli.h5"), "-q",
                  "--control", "shuffled-targets", "--no-summary")
    assert out.returncode == 0, out.stderr
    assert "control          shuffled-targets (targets permuted across the batch" in out.stdout
    assert "control run: shuffled-targets" in out.stderr
    assert tokendyn.open_movie(str(tmp_path / "cli.h5")).attrs["config"]["control"] == "shuffled-targets"
    line = one_line_error(capsys, ["train", "--out", str(tmp_path / "bad.h5"), "-q", "--control", "bogus"], "bogus")
    assert "choose one of none, shuffled-targets, random-targets, lr-zero, no-weight-decay" in line
    assert not (tmp_path / "bad.h5").exists()


# -- resume ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("control", ["shuffled-targets", "random-targets"])
def test_a_resumed_control_run_continues_the_same_stream(tmp_path, control):
    """A run split by a checkpoint equals the unbroken run bit for bit: the control's generator resumes.
    (A constant schedule after the warm-up, so the split run's first half has the same learning rates.)"""
    kw = dict(control=control, schedule="constant", warmup=4, eval_every=0, **QUICK)
    whole = str(tmp_path / "whole.h5")
    train("tiny", out=whole, steps=16, **kw)
    split = str(tmp_path / "split.h5")
    first = train("tiny", out=split, steps=8, **kw)
    assert "control_rng" in torch.load(first.checkpoint, map_location="cpu", weights_only=True)
    train("tiny", out=split, steps=16, resume=True, **kw)
    a, b = tokendyn.open_movie(whole), tokendyn.open_movie(split)
    assert b.step.values.tolist() == list(range(17))
    assert np.array_equal(a.W.values.view(np.uint32), b.W.values.view(np.uint32))
    assert np.array_equal(a.loss.values, b.loss.values)
    with pytest.raises(ConfigError, match="another config .*control"):
        train("tiny", out=split, steps=20, resume=True, **{**kw, "control": "none"})


def test_a_normal_runs_checkpoint_hash_is_unchanged_by_the_control_field():
    from tokendyn.trainers.checkpoint import _resume_config_json

    cfg = from_preset("tiny")
    assert '"control"' not in _resume_config_json(cfg)  # checkpoints written before controls still resume
    assert '"control": "lr-zero"' in _resume_config_json(from_preset("tiny", control="lr-zero"))
