"""CUDA-only behaviour: the graphed training step and the recorder's asynchronous copies.

Skipped on machines without a GPU (CI); run on the lent GPU machine with
``python -m pytest tests/test_cuda.py``.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

import tokendyn  # noqa: E402
from tokendyn.recorder import Recorder  # noqa: E402
from tokendyn.trainers import GPT, from_preset, train  # noqa: E402
from tokendyn.trainers.graphed import GraphedStep, make_capturable_optimizer  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _model(cfg, vocab=128):
    torch.manual_seed(0)
    model = GPT(vocab_rows=vocab, context=cfg.context, layers=cfg.layers, dim=cfg.dim, heads=cfg.heads,
                ffn=cfg.ffn_hidden, tied=cfg.tied, init_std=cfg.init_std).cuda()
    return model.to(torch.bfloat16) if cfg.precision == "bf16-pure" else model


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed", "bf16-pure"])
def test_warm_up_before_capture_leaves_no_trace(precision):
    cfg = from_preset("tiny", precision=precision)
    model = _model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    opt, lr = make_capturable_optimizer(model, cfg, torch.device("cuda"))
    ids = torch.randint(0, 128, (5000,), dtype=torch.int32, device="cuda")
    graphed = GraphedStep(model, model, opt, lr, ids, batch=cfg.batch, context=cfg.context,
                          grad_clip=cfg.grad_clip, precision=precision)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b), "the warm-up iterations changed the parameters"
    for state in opt.state.values():
        assert all(not torch.is_tensor(v) or not v.any() for v in state.values())
    graphed(1e-3)
    assert torch.isfinite(graphed.loss) and float(graphed.grad_norm) > 0
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_graphed_step_matches_eager_on_a_constant_corpus():
    cfg = from_preset("tiny", precision="fp32")
    ids = torch.full((4000,), 9, dtype=torch.int32, device="cuda")  # every window is identical
    model, twin = _model(cfg), _model(cfg)
    opt, lr = make_capturable_optimizer(model, cfg, torch.device("cuda"))
    twin_opt, twin_lr = make_capturable_optimizer(twin, cfg, torch.device("cuda"))
    graphed = GraphedStep(model, model, opt, lr, ids, batch=cfg.batch, context=cfg.context,
                          grad_clip=cfg.grad_clip, precision="fp32")
    window = torch.full((cfg.batch, cfg.context + 1), 9, device="cuda", dtype=torch.long)
    for lr_value in (1e-3, 2e-3, 5e-4):
        graphed(lr_value)
        twin_lr.fill_(lr_value)
        twin_opt.zero_grad(set_to_none=True)
        _, loss = twin(window[:, :-1], window[:, 1:])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
        twin_opt.step()
        torch.testing.assert_close(graphed.loss, loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(graphed.grad_norm, norm, rtol=1e-4, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-pure"])
def test_graphed_training_records_a_valid_movie_below_unigram(tmp_path, precision):
    out = str(tmp_path / "g.h5")
    result = train("tiny", out=out, progress=False, device="cuda", precision=precision, steps=300)
    assert result.final_loss < result.unigram_entropy - 0.5
    assert tokendyn.check(out).ok
    ds = tokendyn.open_movie(out)
    assert ds.sizes["frame"] == 301
    loss = ds.loss.values
    assert np.isfinite(loss).all() and len(np.unique(loss[1:])) > 250  # one value per step, not a reused buffer
    grad_norm = ds.grad_norm.values[1:]  # frame 0 has no gradient; a bf16 norm takes few distinct values
    assert np.isfinite(grad_norm).all() and np.mean(grad_norm[1:] != grad_norm[:-1]) > 0.5
    moved = (ds.W_bits if precision == "bf16-pure" else ds.W).values
    changed = sum(bool((moved[i] != moved[i - 1]).any()) for i in range(1, 301))
    assert changed >= 290, changed  # each frame its own step (a tiny warm-up lr may leave bf16 bits as they were)
    ckpt = torch.load(result.checkpoint, weights_only=False)
    last = ckpt["model"]["wte.weight"]
    if precision == "bf16-pure":
        assert np.array_equal(ds.W_bits.values[-1], last.view(torch.int16).cpu().numpy().view(np.uint16))
    else:
        assert np.array_equal(ds.W.values[-1], last.cpu().numpy())


def test_recorder_copies_device_scalars_at_capture_time(tmp_path):
    out = str(tmp_path / "s.h5")
    W = torch.zeros(64, 8, device="cuda")
    value = torch.zeros((), device="cuda")
    with Recorder(out, scalars=["loss"]) as rec:
        for step in range(50):
            value.fill_(float(step))  # the same tensor, overwritten each step (as a CUDA graph does)
            W.fill_(float(step))
            rec.capture(step, W=W, loss=value)
    ds = tokendyn.open_movie(out)
    assert np.array_equal(ds.loss.values, np.arange(50.0))
    assert np.array_equal(ds.W.values[:, 0, 0], np.arange(50.0, dtype=np.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nonfinite_counts_and_mixed_scalars_come_from_the_device(tmp_path, dtype):
    """The non-finite count is made on the side stream from the frame's copy; scalars of several
    dtypes travel as one stack (promoted to float64 here, so no digit of ``fine`` is lost), and the
    reused pinned buffers never mix frames."""
    import h5py

    out = str(tmp_path / "n.h5")
    W = torch.zeros(64, 8, device="cuda", dtype=dtype)
    with Recorder(out, scalars=["loss", "tokens", "fine"]) as rec:
        for step in range(20):
            W.zero_()
            W.view(-1)[:step] = float("nan")
            if step % 2:
                W[-1, -1] = float("inf")
            rec.capture(step, W=W, loss=torch.tensor(step / 2, device="cuda"),
                        tokens=torch.tensor(step * 1000, device="cuda"),
                        fine=torch.tensor(1 + step * 2.0 ** -40, dtype=torch.float64, device="cuda"))
    steps = np.arange(20)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["nonfinite_W"][:], steps + steps % 2)
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        ds = tokendyn.open_movie(out)
    assert np.array_equal(ds.loss.values, steps / 2)
    assert np.array_equal(ds.tokens.values, steps * 1000.0)
    assert np.array_equal(ds.fine.values, 1 + steps * 2.0 ** -40)


def test_resumed_graphed_run_follows_the_lr_schedule(tmp_path):
    """After a resume the graph must read the loop's lr tensor, not the checkpoint's copy of it.
    (GPU steps are not bit-reproducible here, embedding backward adds atomically, so the runs are
    compared by how far W moves: Adam's steps scale with the lr, which decays linearly to 0.)"""
    straight, split = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    kw = dict(progress=False, device="cuda", precision="fp32", eval_every=0, sample_tokens=0, warmup=0,
              schedule="linear", lr=1e-3)
    train("tiny", out=straight, steps=120, **kw)
    train("tiny", out=split, steps=60, **kw)
    train("tiny", out=split, steps=120, resume=True, **kw)
    for path in (straight, split):
        w = tokendyn.open_movie(path).W.values.astype(np.float64)
        moved = np.abs(np.diff(w, axis=0)).mean(axis=(1, 2))  # moved[i]: step i + 1
        ratio = moved[110:].mean() / moved[60:70].mean()  # lr ratio about 5 / 55
        assert ratio < 0.3, (path, ratio)


@pytest.mark.parametrize("direct", [None, True])
def test_gpu_frames_keep_buffered_writes_unless_told(tmp_path, direct):
    """Buffered writes outran the H100 machine's disk, so frames from a GPU skip O_DIRECT by
    default; ``direct_writes=True`` still takes it (where the file system does)."""
    import h5py

    import tokendyn.recorder._direct as direct_io

    path = str(tmp_path / f"g{direct}.h5")
    w = torch.randn(256, 16, device="cuda").to(torch.bfloat16)
    with Recorder(path, direct_writes=direct) as rec:
        for s in range(5):
            rec.capture(s, W=w + s)
    with h5py.File(path, "r") as f:
        preallocated = direct_io.DirectFrames.preallocated(f["W"])
    assert preallocated == (direct is True and direct_io.can_write_direct(path, 256 * 16 * 2))
    expected = torch.stack([w + s for s in range(5)]).float().cpu().numpy()
    np.testing.assert_array_equal(tokendyn.open_movie(path).W.values, expected)
