import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn.errors import ConfigError  # noqa: E402
from tokendyn.trainers import GPT, TrainConfig, apply_overrides, from_preset, round_to_bf16, train  # noqa: E402
from tokendyn.trainers.data import Batches, build  # noqa: E402
from tokendyn.trainers.optim import lr_at  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_tiny_trains_below_unigram_and_records_a_valid_movie(tmp_path):
    out = str(tmp_path / "tiny.h5")
    result = train("tiny", out=out, progress=False)
    assert result.steps == 200 and not result.interrupted
    assert result.final_loss < result.unigram_entropy - 1.0
    assert result.heldout_loss < result.unigram_entropy
    report = tokendyn.check(out)
    assert report.ok, report.problems
    ds = tokendyn.open_movie(out)
    assert ds.sizes["frame"] == 201 and ds.step.values[0] == 0 and ds.step.values[-1] == 200
    for name in ("loss", "lr", "grad_norm", "heldout_loss"):
        assert name in ds
    assert np.isfinite(ds.loss.values).all() and ds.loss.values[-1] < ds.loss.values[0]
    classes = ds.token_class.values
    counts = ds.token_count.values
    assert (counts[classes == 0] > 0).all() and (counts[classes != 0] == 0).all()
    assert (classes == 2).sum() == 64 and (classes == 1).sum() > 0  # phantom rows and natural dead tokens
    assert ds.attrs["config"]["preset"] == "tiny"
    assert os.path.exists(result.checkpoint)
    assert result.sample


def test_phantom_ids_never_occur_in_a_batch():
    data = build(corpus=None, corpus_chars=100_000, foreign_chars=20_000, vocab_size=256, n_phantom=32)
    n_ids = data.tokenizer.n_ids
    assert int(np.max(data.train)) < n_ids
    batches = Batches(data.train, 8, 32, seed=0)
    for _ in range(200):
        x, y = batches.next()
        assert x.max() < n_ids and y.max() < n_ids
    assert (data.token_class[n_ids:] == 2).all()


@pytest.mark.parametrize("fused_loss", [False, True])
def test_untied_phantom_rows_get_exactly_zero_gradient(fused_loss):
    data = build(corpus=None, corpus_chars=100_000, foreign_chars=20_000, vocab_size=256, n_phantom=32)
    model = GPT(vocab_rows=data.vocab_rows, context=32, layers=1, dim=32, heads=2, ffn=64, tied=False,
                fused_loss=fused_loss)
    x, y = Batches(data.train, 4, 32, seed=0).next()
    _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
    loss.backward()
    grad = model.wte.weight.grad
    phantom = torch.from_numpy(data.token_class == 2)
    assert torch.count_nonzero(grad[phantom]) == 0
    assert torch.count_nonzero(grad[~phantom]) > 0
    assert torch.count_nonzero(model.lm_head.weight.grad[phantom]) > 0  # the unembedding still learns


def _loss_and_grads(fused: bool, tied: bool, precision: str) -> tuple[float, dict]:
    torch.manual_seed(0)
    model = GPT(vocab_rows=300, context=16, layers=1, dim=32, heads=2, ffn=64, tied=tied, fused_loss=fused)
    if precision == "bf16-pure":
        model = model.to(torch.bfloat16)
    x = torch.randint(0, 250, (6, 17), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        _, loss = model(x[:, :-1], x[:, 1:])
    (3.0 * loss).backward()  # a non-unit upstream gradient reaches the fused backward
    return float(loss.detach()), {n: p.grad.double() for n, p in model.named_parameters()}


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("bf16-mixed", 3e-2), ("bf16-pure", 3e-2)])
@pytest.mark.parametrize("tied", [True, False])
def test_fused_loss_matches_the_plain_loss_and_gradients(precision, tol, tied):
    """The chunked loss (tiny chunks here: the remainder chunk too) against F.cross_entropy on the
    full logits; in bf16 the plain way rounds logits to bf16, the fused one computes them in fp32
    on a CPU, so they agree to bf16 precision."""
    plain_loss, plain = _loss_and_grads(False, tied, precision)
    from tokendyn.trainers import loss as loss_module

    rows = loss_module.CHUNK_BYTES
    loss_module.CHUNK_BYTES = 4 * 300 * 7  # 7 rows per chunk: 96 rows = 13 full chunks + 5
    try:
        fused_loss, fused = _loss_and_grads(True, tied, precision)
    finally:
        loss_module.CHUNK_BYTES = rows
    assert fused_loss == pytest.approx(plain_loss, rel=tol / 10)
    for name, g in plain.items():
        scale = g.abs().max()
        assert (fused[name] - g).abs().max() <= tol * scale, name


def test_fused_loss_without_grad_gives_the_same_loss():
    torch.manual_seed(0)
    model = GPT(vocab_rows=100, context=8, layers=1, dim=16, heads=2, ffn=32, fused_loss=True)
    x = torch.randint(0, 100, (3, 9))
    with torch.no_grad():
        _, quiet = model(x[:, :-1], x[:, 1:])
        logits, _ = model(x[:, :-1])
    reference = torch.nn.functional.cross_entropy(logits.reshape(-1, 100).double(), x[:, 1:].reshape(-1))
    assert float(quiet) == pytest.approx(float(reference), rel=1e-6)


def test_untied_run_records_e(tmp_path):
    out = str(tmp_path / "untied.h5")
    train("tiny", out=out, progress=False, steps=10, tied=False)
    ds = tokendyn.open_movie(out)
    assert "E" in ds and ds.E.shape == ds.W.shape
    assert not np.array_equal(ds.E.values[-1], ds.W.values[-1])


def test_same_seed_same_bits(tmp_path):
    a = train("tiny", out=str(tmp_path / "a.h5"), progress=False, steps=25, sample_tokens=0)
    b = train("tiny", out=str(tmp_path / "b.h5"), progress=False, steps=25, sample_tokens=0)
    wa = tokendyn.open_movie(a.movie).W.values
    wb = tokendyn.open_movie(b.movie).W.values
    assert np.array_equal(wa.view(np.uint32), wb.view(np.uint32))
    c = train("tiny", out=str(tmp_path / "c.h5"), progress=False, steps=25, sample_tokens=0, seed=7)
    assert not np.array_equal(tokendyn.open_movie(c.movie).W.values, wa)


def test_bf16_pure_records_the_parameter_bits_and_keeps_fp32_moments(tmp_path):
    out = str(tmp_path / "pure.h5")
    result = train("tiny", out=out, progress=False, steps=40, precision="bf16-pure", sample_tokens=0)
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    w = ckpt["model"]["wte.weight"]
    assert w.dtype == torch.bfloat16
    ds = tokendyn.open_movie(out)
    assert ds.W.attrs["stored_dtype"] == "bfloat16"
    assert np.array_equal(ds.W_bits.values[-1], w.view(torch.int16).numpy().view(np.uint16))
    states = ckpt["optimizer"]["state"]
    assert states and all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32
                          for s in states.values())
    assert result.final_loss < result.unigram_entropy


def test_stochastic_rounding_is_unbiased_and_on_the_lattice():
    x = torch.full((200_000,), 1.0 + 2.0**-9, dtype=torch.float32)  # a quarter of the way up an ulp (2^-7)
    g = torch.Generator().manual_seed(0)
    r = round_to_bf16(x, "stochastic", g).float()
    assert set(r.unique().tolist()) == {1.0, 1.0 + 2.0**-7}
    assert abs(r.mean().item() - x[0].item()) < 2e-5
    assert torch.equal(round_to_bf16(x, "nearest").float(), torch.ones_like(x))


def test_bf16_mixed_runs(tmp_path):
    result = train("tiny", out=str(tmp_path / "mixed.h5"), progress=False, steps=30, precision="bf16-mixed",
                   sample_tokens=0)
    ds = tokendyn.open_movie(result.movie)
    assert ds.W.attrs["stored_dtype"] == "float32" and ds.sizes["frame"] == 31


def test_resume_continues_without_duplicate_frames(tmp_path):
    out = str(tmp_path / "r.h5")
    train("tiny", out=out, progress=False, steps=20, sample_tokens=0)
    with pytest.raises(ConfigError, match="exists"):
        train("tiny", out=out, progress=False, steps=20)
    result = train("tiny", out=out, progress=False, steps=35, resume=True, sample_tokens=0)
    assert result.steps == 35
    ds = tokendyn.open_movie(out)
    assert ds.step.values.tolist() == list(range(36))
    assert tokendyn.check(out).ok


def test_ctrl_c_stops_cleanly_with_a_valid_movie(tmp_path, monkeypatch):
    import importlib

    loop = importlib.import_module("tokendyn.trainers.loop")
    original = loop.lr_at

    def interrupting(step, **kwargs):
        if step == 11:  # every step starts with its learning rate, eager or CUDA-graphed
            raise KeyboardInterrupt
        return original(step, **kwargs)

    monkeypatch.setattr(loop, "lr_at", interrupting)
    out = str(tmp_path / "int.h5")
    result = train("tiny", out=out, progress=False, steps=100)
    assert result.interrupted and result.steps == 10
    ds = tokendyn.open_movie(out)
    assert ds.step.values.tolist() == list(range(11))
    assert tokendyn.check(out).ok
    assert torch.load(result.checkpoint, map_location="cpu", weights_only=True)["step"] == 10


def test_record_schedule(tmp_path):
    out = str(tmp_path / "sched.h5")
    train("tiny", out=out, progress=False, steps=40, record="dense:5,every:10", sample_tokens=0)
    assert tokendyn.open_movie(out).step.values.tolist() == [0, 1, 2, 3, 4, 5, 10, 20, 30, 40]


def test_the_summary_says_when_recording_held_training_back(tmp_path, monkeypatch):
    """A writer slower than the loop (here 0.25 s a frame) makes captures wait; the run's summary
    says how long and what to do. A loop that outruns nothing gets no such line."""
    import tokendyn.recorder.writer as writer
    from tokendyn.trainers import result_text

    quick = train("tiny", out=str(tmp_path / "quick.h5"), progress=False, steps=20, record=10, sample_tokens=0)
    assert quick.recording_wait_seconds < 0.05 * quick.seconds
    assert "--record-every" not in result_text(quick)
    write = writer.FrameWriter._write_matrices

    def write_slowly(self, out, frame):
        import time

        time.sleep(0.25)
        write(self, out, frame)

    monkeypatch.setattr(writer.FrameWriter, "_write_matrices", write_slowly)
    slow = train("tiny", out=str(tmp_path / "slow.h5"), progress=False, steps=10, sample_tokens=0)
    assert slow.recording_wait_seconds > 0.5  # 11 frames at 0.25 s, 4 buffered: about 1.5 s waited
    assert "--record-every" in result_text(slow) and "waited" in result_text(slow)


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=3), "heads \\(3\\) must divide dim \\(64\\)"),
    (dict(precision="fp8"), "precision must be one of"),
    (dict(record="whenever"), "bad record schedule"),
    (dict(corpus="/nonexistent/corpus.txt"), "corpus does not exist"),
    (dict(device="tpu"), "device must be"),
])
def test_bad_configs_fail_before_training(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train("tiny", out=str(tmp_path / "x.h5"), progress=False, **kwargs)
    assert not os.path.exists(tmp_path / "x.h5")


def test_unknown_preset_and_fields():
    with pytest.raises(ConfigError, match="unknown preset 'goose'"):
        from_preset("goose")
    with pytest.raises(ConfigError, match="unknown config field 'colour'"):
        train("tiny", out=None, progress=False, set_values=["colour=blue"])


@pytest.mark.parametrize("pair, field, value", [
    ("betas=0.8,0.99", "betas", (0.8, 0.99)),
    ("betas=(0.8,0.99)", "betas", (0.8, 0.99)),
    ("steps=1e3", "steps", 1000),
    ("tied=false", "tied", False),
    ("record=dense:100,every:10", "record", "dense:100,every:10"),
    ("lr=1e-3", "lr", 1e-3),
    ("ffn=none", "ffn", None),
    ("notes=a b, c", "notes", "a b, c"),
])
def test_set_reads_each_value_as_its_fields_type(pair, field, value):
    """``--set`` reads values as ``-O`` does (tokendyn.keyvalue), then makes them the field's type."""
    base = from_preset("duckling")
    cfg = apply_overrides(base, [pair])
    assert getattr(cfg, field) == value and type(getattr(cfg, field)) is type(value)
    assert getattr(base, field) != value  # the override changed something
    cfg.validate()


def test_set_overrides_reach_the_run(tmp_path):
    out = str(tmp_path / "set.h5")
    train("tiny", out=out, progress=False, sample_tokens=0,
          set_values=["steps=2e1", "record=dense:2,every:10", "tied=false", "betas=0.8,0.9"])
    ds = tokendyn.open_movie(out)
    assert ds.step.values.tolist() == [0, 1, 2, 10, 20] and "E" in ds
    assert ds.attrs["config"]["betas"] == [0.8, 0.9] and ds.attrs["config"]["tied"] is False


@pytest.mark.parametrize("pair, message", [
    ("steps=1.5", "cannot read steps=1.5 as int"),
    ("lr=abc", "cannot read lr='abc' as float"),
    ("tied=maybe", "cannot read tied='maybe' as bool"),
    ("betas=0.9", "cannot read betas=0.9 as tuple"),
    ("nokey", "--set takes KEY=VALUE, got 'nokey'"),
    ("=3", "--set takes KEY=VALUE"),
    ("colour=blue", "unknown config field 'colour'; fields: batch, betas"),
    ("preset=duckling", "unknown config field 'preset'"),
])
def test_set_errors_name_the_pair(pair, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        apply_overrides(from_preset("tiny"), [pair])
    fields = str(caught.value).partition("fields: ")[2].split(", ")
    assert "preset" not in fields and "extra" not in fields  # only what --set can change is offered


def test_cli_set_errors_print_without_a_traceback(tmp_path):
    for pair, message in (("lr=abc", "cannot read lr='abc'"), ("nokey", "--set takes KEY=VALUE")):
        out = run_cli("train", "--preset", "tiny", "--out", str(tmp_path / "x.h5"), "-q", "--set", pair)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "x.h5")


def test_corpus_too_small_for_one_batch(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("Tom saw a cat. " * 3)
    with pytest.raises(ConfigError, match="too small for one batch"):
        train("tiny", out=str(tmp_path / "s.h5"), progress=False, corpus=str(corpus))
    assert not os.path.exists(tmp_path / "s.h5")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the output folder"):
        train("tiny", out=str(blocker / "sub" / "x.h5"), progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if not os.access(ro, os.W_OK):  # root can write anywhere; then only the case above applies
            with pytest.raises(ConfigError, match="not writable"):
                train("tiny", out=str(ro / "x.h5"), progress=False)
    finally:
        os.chmod(ro, 0o755)


def test_user_corpus_folder(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    from tokendyn.trainers.corpus import stories
    (folder / "a.txt").write_text(stories(60_000, seed=3))
    (folder / "b.txt").write_text(stories(60_000, seed=4))
    result = train("tiny", out=str(tmp_path / "u.h5"), progress=False, steps=20, corpus=str(folder),
                   foreign_chars=0, sample_tokens=0)
    assert tokendyn.open_movie(result.movie).sizes["frame"] == 21


def test_lr_schedule():
    assert lr_at(5, base=1.0, warmup=10, total=100, schedule="linear") == 0.5
    assert lr_at(10, base=1.0, warmup=10, total=100, schedule="linear") == 1.0
    assert lr_at(100, base=1.0, warmup=10, total=100, schedule="linear") == 0.0
    assert abs(lr_at(55, base=1.0, warmup=10, total=100, schedule="cosine") - 0.5) < 1e-12
    assert lr_at(70, base=1.0, warmup=0, total=100, schedule="constant") == 1.0


def test_cli_train_and_bad_config(tmp_path):
    env_out = str(tmp_path / "cli.h5")
    out = run_cli("train", "--preset", "tiny", "--steps", "30", "--out", env_out, "-q")
    assert out.returncode == 0, out.stderr
    assert "below the unigram baseline" in out.stdout and "movie summary" in out.stdout
    out = run_cli("train", "--preset", "tiny", "--out", env_out, "-q", "--set", "heads=5")
    assert out.returncode == 2 and "must divide dim" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("train", "--preset", "nope", "--out", str(tmp_path / "n.h5"))
    assert out.returncode == 2 and "unknown preset" in out.stderr


def test_every_preset_builds_a_valid_config():
    from tokendyn.trainers import PRESETS
    for name in PRESETS:
        cfg = from_preset(name)
        cfg.validate()
        assert isinstance(cfg, TrainConfig)
    assert from_preset("duckling2").vocab_size + from_preset("duckling2").n_phantom == 8192
    assert from_preset("flannel-untied").tied is False


def test_user_tokenizer_json_truncated_to_n_live_ids(tmp_path):
    from tokendyn.trainers.corpus import stories
    from tokendyn.trainers.tokenizer import train_char_bpe
    tok = train_char_bpe([stories(200_000, seed=9)], 400, cache=False)
    path = str(tmp_path / "tokenizer.json")
    tok.tokenizer.save(path)
    result = train("tiny", out=str(tmp_path / "tj.h5"), progress=False, steps=15, sample_tokens=0,
                   tokenizer_json=path, vocab_size=300, n_phantom=20)
    ds = tokendyn.open_movie(result.movie)
    assert ds.sizes["token"] == 320
    assert (ds.token_class.values[300:] == 2).all() and (ds.token_count.values[300:] == 0).all()
    with pytest.raises(ConfigError, match="cannot keep 5000 live ids"):
        train("tiny", out=None, progress=False, tokenizer_json=path, vocab_size=5000)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a readable tokenizer.json"):
        train("tiny", out=None, progress=False, tokenizer_json=str(bad))


def test_device_auto_resolves_to_an_available_device():
    from tokendyn.trainers import resolve_device
    dev = resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_pure_bf16_adamw_with_a_tensor_lr_matches_a_float_lr_and_a_float64_reference():
    from tokendyn.trainers.optim import PureBF16AdamW

    torch.manual_seed(0)
    p0 = torch.randn(32, 16).to(torch.bfloat16)
    grads = [torch.randn(32, 16).to(torch.bfloat16) for _ in range(5)]
    results = []
    for lr in (1e-2, torch.tensor(1e-2)):
        p = torch.nn.Parameter(p0.clone())
        opt = PureBF16AdamW([{"params": [p], "weight_decay": 0.1}], lr=lr, betas=(0.9, 0.95))
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append(p.detach().clone())
        assert opt.state[p]["exp_avg"].dtype == torch.float32
    assert torch.equal(results[0], results[1])
    # float64 reference of AdamW, rounding to bf16 after each step as the optimizer does
    x = p0.double()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    for t, g in enumerate(grads, 1):
        g = g.double()
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        x = x * (1 - 1e-2 * 0.1) - 1e-2 * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.95 ** t)).sqrt() + 1e-8)
        x = x.to(torch.bfloat16).double()
    assert (results[0].double() - x).abs().max() <= 2 ** -7 * x.abs().max()


def _two_group_model():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 8))
    return model.to(torch.bfloat16)


def test_flat_pure_bf16_adamw_equals_the_per_tensor_update_bit_for_bit():
    from tokendyn.trainers.optim import PureBF16AdamW, param_groups

    models = [_two_group_model(), _two_group_model()]
    opts = [PureBF16AdamW(param_groups(m, 0.1), lr=torch.tensor(3e-3), betas=(0.9, 0.95), flat=flat)
            for m, flat in zip(models, (True, False))]
    flat_params = list(models[0].parameters())
    assert flat_params[0].untyped_storage().data_ptr() == flat_params[4].untyped_storage().data_ptr()  # both matrices
    torch.manual_seed(4)
    for step in range(6):
        x = torch.randn(64, 16).to(torch.bfloat16)
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            model(x).float().square().mean().backward()
            if step == 3:  # a parameter without a gradient: skipped, as AdamW does
                model[1].bias.grad = None
            opt.step()
        for p, q in zip(*(m.parameters() for m in models)):
            assert torch.equal(p.view(torch.int16), q.view(torch.int16)), f"step {step}"
    extra = [torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16)) for _ in models]
    for opt, p in zip(opts, extra):  # a group added later is updated too
        opt.add_param_group({"params": [p], "weight_decay": 0.0})
        p.grad = torch.full((4,), 0.5, dtype=torch.bfloat16)
        opt.step()
    assert torch.equal(extra[0], extra[1]) and not torch.equal(extra[0], torch.ones(4, dtype=torch.bfloat16))
    for p, q in zip(*(m.parameters() for m in models)):
        a, b = opts[0].state[p], opts[1].state[q]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
        assert a["exp_avg"].dtype == torch.float32 and float(a["step"]) == 7.0


def test_flat_pure_bf16_adamw_state_survives_a_checkpoint(tmp_path):
    from tokendyn.trainers.optim import PureBF16AdamW, param_groups

    model = _two_group_model()
    opt = PureBF16AdamW(param_groups(model, 0.1), lr=1e-2)
    x = torch.randn(64, 16).to(torch.bfloat16)

    def step(m, o):
        o.zero_grad(set_to_none=True)
        m(x).float().square().mean().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "c.pt")
    twin = _two_group_model()
    twin_opt = PureBF16AdamW(param_groups(twin, 0.1), lr=1e-2)
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    twin.load_state_dict(saved["model"])
    twin_opt.load_state_dict(saved["opt"])
    for _ in range(2):
        step(model, opt)
        step(twin, twin_opt)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    state = twin_opt.state[next(twin.parameters())]
    assert float(state["step"]) == 5.0 and state["exp_avg_sq"].dtype == torch.float32  # not cast to bf16 on load


@pytest.mark.filterwarnings("ignore:.*NaN/Inf:RuntimeWarning")  # the diverged frame, which the movie keeps
def test_a_diverged_run_stops_with_one_clear_error_and_keeps_its_movie(tmp_path):
    from tokendyn.trainers.checkpoint import checkpoint_path
    from tokendyn.trainers.stopping import TrainingDiverged

    out = str(tmp_path / "diverged.h5")
    with pytest.raises(TrainingDiverged, match=r"loss diverged at step (\d+)") as caught:
        train("tiny", out=out, progress=False, steps=30, lr=1e6, sample_tokens=0, checkpoint_every=1e-9)
    step = int(re.search(r"diverged at step (\d+)", str(caught.value)).group(1))
    assert caught.value.path == out and 0 < step < 30
    ds = tokendyn.open_movie(out)
    assert ds.step.values.tolist() == list(range(step + 1))  # every frame up to the diverged one, closed cleanly
    w = ds.W.values
    assert np.isfinite(w[:step]).all() and not np.isfinite(w[step]).all()
    ckpt = torch.load(checkpoint_path(out), map_location="cpu", weights_only=True)
    assert ckpt["step"] == step - 1  # the last checkpoint is of finite weights; none of the diverged ones
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_cli_diverged_run_is_one_line(tmp_path):
    out = run_cli("train", "--out", str(tmp_path / "d.h5"), "-q", "--steps", "20", "--set", "lr=1e6", "--no-summary")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "loss diverged at step" in out.stderr.strip().splitlines()[-1]


def test_an_error_in_the_loop_is_not_hidden_by_closing_an_empty_movie(tmp_path, monkeypatch):
    import importlib

    loop = importlib.import_module("tokendyn.trainers.loop")

    def failing(step, **kwargs):
        raise RuntimeError("the user's loop failed here")

    monkeypatch.setattr(loop, "lr_at", failing)
    with pytest.raises(RuntimeError, match="the user's loop failed here"):  # not "closed before any frame"
        train("tiny", out=str(tmp_path / "x.h5"), progress=False, steps=5, record="steps:3")


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(steps=2**63), "steps must be below 2\\*\\*63"),
    (dict(set_values=["lr=inf"]), "lr must be a finite number, got 'inf'"),
    (dict(set_values=["lr=nan"]), "lr must be a finite number"),
    (dict(set_values=["lr=1e999"]), "lr must be a finite number, got inf"),
    (dict(lr=float("nan")), "lr must be a finite number, got nan"),
    (dict(grad_clip=float("inf")), "grad_clip must be a finite number"),
    (dict(betas=(2.0, 3.0)), "betas must be in \\[0, 1\\)"),
    (dict(weight_decay=-1.0), "weight_decay must be >= 0"),
    (dict(seed=-1), "seed must be in \\[0, 2\\*\\*63\\)"),
    (dict(eval_every=-1), "eval_every must be >= 0"),
    (dict(batch=-1), "batch must be >= 1"),
    (dict(batch=10**9), "needs at least .* GiB"),
    (dict(context=10**7), "needs at least .* GiB"),
    (dict(dim=10**8), "needs at least .* GiB"),
    (dict(layers=10**7), "needs at least .* GiB"),
    (dict(n_phantom=10**8, dim=512), "needs at least .* GiB"),
    (dict(vocab_size=10**10), "vocab_size \\+ n_phantom must be below 2\\*\\*31"),
    (dict(heads=3), "heads \\(3\\) must divide dim \\(64\\)"),
    (dict(set_values=["precision=fp8"]), "precision must be one of"),
    (dict(record="dense:x"), "bad record schedule 'dense:x'"),
    (dict(record="steps:500", steps=10), "records no step of this run"),
    (dict(checkpoint_every=-1), "checkpoint_every is seconds >= 0"),
    (dict(checkpoint_every=float("nan")), "checkpoint_every is seconds >= 0"),
])
def test_hostile_values_fail_before_training(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train("tiny", out=str(tmp_path / "x.h5"), progress=False, **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("values, message", [
    (dict(steps="text"), "cannot read steps='text' as int"),
    (dict(lr={"a": 1}), "cannot read lr={'a': 1} as float"),
    (dict(steps=[3]), "cannot read steps=\\[3\\] as int"),
    (dict(betas={"x": 1}), "cannot read betas="),
    (dict(corpus={"x": 1}), "cannot read corpus="),
    (dict(device={"a": 1}), "cannot read device="),
    (dict(record={"a": 1}), "record must be a schedule"),
    (dict(extra=3), "extra must be a table"),
])
def test_config_values_of_the_wrong_type_name_the_field(values, message):
    """What a TOML or YAML spec can hold: text for a number, a table where a value is expected."""
    with pytest.raises(ConfigError, match=message):
        from_preset("tiny", **values).validate()
    assert from_preset("tiny", steps=3.0, lr=1, betas=[0.8, 0.9]).betas == (0.8, 0.9)  # what is one is taken


@pytest.mark.parametrize("body, field", [
    ('steps = "text"', "steps"),
    ("steps = 3\n[set.lr]\nx = 1", "lr"),
    ("steps = 3\n[set.betas]\nx = 1", "betas"),
])
def test_a_toml_sweep_spec_with_a_wrong_value_names_the_key(tmp_path, body, field):
    from tokendyn.runs.sweep import expand, load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(f'preset = "tiny"\n{body}\n')
    with pytest.raises(ConfigError, match=f"cannot read {field}="):
        expand(load_spec(str(spec)))


def test_cli_hostile_values_are_one_line_errors(tmp_path):
    for args, message in ((["--steps", "0"], "steps must be >= 1"),
                          (["--set", "batch=1000000000"], "needs at least"),
                          (["--record-every", "dense:x", "--checkpoint-every", "30"], "bad record schedule")):
        out = run_cli("train", "--out", str(tmp_path / "x.h5"), "-q", *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr, args
    assert os.listdir(tmp_path) == []
