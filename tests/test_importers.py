"""tokendyn import / tokendyn.integrations.importers: safetensors stacks, per-step snapshots, HF
Trainer checkpoints and model folders become movies bit for bit, frame by frame; bad inputs are
one-line errors naming the file; pickle files are refused without being unpickled."""
import hashlib
import json
import os
import pathlib
import pickle
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy as stn
from conftest import one_line_error

import tokendyn
from tokendyn.errors import TokendynError
from tokendyn.integrations import _safetensors_io, importers
from tokendyn.surfaces.cli import main

torch = pytest.importorskip("torch")
import safetensors.torch as stt  # noqa: E402


def _bf16(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 0.02, shape).astype(np.float32)).to(torch.bfloat16)


def _bits(t):
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def _digests(root):
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            p = os.path.join(base, n)
            with open(p, "rb") as f:
                out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------------------------ stack
@pytest.mark.filterwarnings("ignore:.*NaN/Inf:RuntimeWarning")
def test_stack_bf16_is_bit_exact_with_steps_and_classes(tmp_path):
    w = _bf16((6, 20, 4))
    w[0, 0, 0] = float("nan")
    w[1, 1, 1] = -0.0
    src = str(tmp_path / "stack.safetensors")
    stt.save_file({"emb": w, "steps": torch.tensor([0, 3, 7, 20, 21, 50])}, src)
    out = importers.import_stack(src, tmp_path / "m.h5", steps="steps", dead_ids="3,5-6", phantom_from=18)
    ds = tokendyn.open_movie(out)
    assert np.array_equal(ds.W_bits.values, _bits(w))
    assert ds.step.values.tolist() == [0, 3, 7, 20, 21, 50]
    assert ds.token_class.values.tolist() == [0, 0, 0, 1, 0, 1, 1] + [0] * 11 + [2, 2]
    assert "E" not in ds


def test_stack_float32_with_a_range_and_a_mask_via_the_cli(tmp_path, capsys):
    w = np.random.default_rng(1).normal(size=(5, 12, 3)).astype(np.float32)
    stn.save_file({"stack": w}, str(tmp_path / "s.safetensors"))
    dead = np.zeros(12, bool)
    dead[[2, 9]] = True
    stn.save_file({"dead": dead}, str(tmp_path / "mask.safetensors"))
    out = str(tmp_path / "m.h5")
    assert main(["import", str(tmp_path / "s.safetensors"), "-o", out, "--steps", "100::10",
                 "--mask", str(tmp_path / "mask.safetensors"), "-q"]) == 0
    ds = tokendyn.open_movie(out)
    assert ds.W.dtype == np.float32 and np.array_equal(ds.W.values.view(np.uint32), w.view(np.uint32))
    assert ds.step.values.tolist() == [100, 110, 120, 130, 140]
    assert np.flatnonzero(ds.token_class.values == 1).tolist() == [2, 9]
    assert "wrote" in capsys.readouterr().out


def _peak_import(tmp_path, n_frames, v=512, d=64):
    src = str(tmp_path / f"big{n_frames}.safetensors")
    stn.save_file({"w": np.random.default_rng(2).normal(size=(n_frames, v, d)).astype(np.float32)}, src)
    tracemalloc.start()
    try:
        importers.import_stack(src, tmp_path / f"m{n_frames}.h5")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_stack_is_read_one_frame_at_a_time(tmp_path, monkeypatch):
    reads = []
    real_read = _safetensors_io.SafetensorsFile.read

    def spy(self, info, index=None, out=None):
        reads.append((info.name, index))
        return real_read(self, info, index, out)

    monkeypatch.setattr(_safetensors_io.SafetensorsFile, "read", spy)
    _peak_import(tmp_path, 2)  # warm up imports
    small = _peak_import(tmp_path, 16)  # 2 MiB of float32, 128 KiB a frame
    reads.clear()
    big = _peak_import(tmp_path, 256)  # 32 MiB
    assert reads == [("w", t) for t in range(256)]  # never the whole tensor
    # The peak does not grow with the stack (the recorder's own 8 MiB disk reserve is in both).
    assert big < small + 2**20 and big < 256 * 512 * 64 * 4 / 3, (small, big)
    assert tokendyn.open_movie(str(tmp_path / "m256.h5")).sizes["frame"] == 256


# ------------------------------------------------------------------------------------ snapshots
def test_snapshots_in_numeric_step_order_with_token_text(tmp_path):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    frames = {s: np.random.default_rng(s).normal(size=(10, 4)).astype(np.float16) for s in (5, 100, 20)}
    for s, a in frames.items():
        stn.save_file({"embed_tokens.weight": a, "other": np.zeros(3, np.float32)}, str(snaps / f"emb_step{s}.safetensors"))
    vocab = {f"tok{i}": i for i in range(8)}
    added = [{"id": 8, "content": "<eos>"}]
    (snaps / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}, "added_tokens": added}))
    ds = tokendyn.open_movie(importers.import_snapshots(snaps, tmp_path / "m.h5"))
    assert ds.step.values.tolist() == [5, 20, 100]
    assert np.array_equal(ds.W.values.astype(np.float16), np.stack([frames[s] for s in (5, 20, 100)]))
    assert list(ds.token_text.values[:9]) == [f"tok{i}" for i in range(8)] + ["<eos>"] and ds.token_text.values[9] == ""


def test_snapshots_with_a_custom_glob_and_regex(tmp_path, capsys):
    a = _bf16((3, 10, 4))
    for i, s in enumerate((1, 2, 3)):
        stt.save_file({"E": a[i]}, str(tmp_path / f"ckpt-{s:04d}.st"))
    out = str(tmp_path / "m.h5")
    assert main(["import", str(tmp_path), "-o", out, "--glob", "ckpt-*.st", "--step-regex", r"ckpt-(\d+)", "-q"]) == 0
    ds = tokendyn.open_movie(out)
    assert ds.step.values.tolist() == [1, 2, 3] and np.array_equal(ds.W_bits.values, _bits(a))


# ------------------------------------------------------------------------------------ HF checkpoints
def _marker_pickle(path, marker):
    class Boom:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(marker),))

    with open(path, "wb") as f:
        pickle.dump(Boom(), f)


def _checkpoint(folder, emb, head=None, tied=False, sharded=False, marker=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "tie_word_embeddings": tied}))
    tensors = {"model.embed_tokens.weight": emb, "model.norm.weight": torch.ones(emb.shape[1], dtype=emb.dtype)}
    if head is not None:
        tensors["lm_head.weight"] = head
    if sharded:
        stt.save_file({"model.embed_tokens.weight": emb}, str(folder / "model-00001-of-00002.safetensors"))
        rest = {k: v for k, v in tensors.items() if k != "model.embed_tokens.weight"}
        stt.save_file(rest, str(folder / "model-00002-of-00002.safetensors"))
        weight_map = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                      **{k: "model-00002-of-00002.safetensors" for k in rest}}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    else:
        stt.save_file(tensors, str(folder / "model.safetensors"))
    if marker is not None:
        for name in ("training_args.bin", "optimizer.pt", "rng_state.pth"):
            _marker_pickle(folder / name, marker)


def test_checkpoints_with_an_untied_head_and_shards(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "UNPICKLED"
    ws = {s: _bf16((16, 8), seed=s) for s in (2, 10, 100)}
    es = {s: _bf16((16, 8), seed=s + 1000) for s in ws}
    for s in ws:
        _checkpoint(run / f"checkpoint-{s}", ws[s], es[s], sharded=(s == 10), marker=marker)
    before = _digests(run)
    ds = tokendyn.open_movie(importers.import_checkpoints(run, tmp_path / "m.h5"))
    assert ds.step.values.tolist() == [2, 10, 100]
    assert np.array_equal(ds.W_bits.values, np.stack([_bits(ws[s]) for s in (2, 10, 100)]))
    assert np.array_equal(ds.E_bits.values, np.stack([_bits(es[s]) for s in (2, 10, 100)]))
    assert not marker.exists() and _digests(run) == before


def test_a_tied_head_is_not_recorded_and_a_model_folder_is_one_frame(tmp_path, capsys):
    w = _bf16((16, 8))
    _checkpoint(tmp_path / "model", w, head=w.clone(), tied=True)
    out = str(tmp_path / "m.h5")
    assert main(["import", str(tmp_path / "model"), "-o", out, "-q"]) == 0
    ds = tokendyn.open_movie(out)
    assert ds.sizes["frame"] == 1 and "E" not in ds and np.array_equal(ds.W_bits.values[0], _bits(w))


# ------------------------------------------------------------------------------------ pickle refusal
def test_pickle_files_are_refused_without_being_unpickled(tmp_path, capsys):
    marker = tmp_path / "UNPICKLED"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    _marker_pickle(model / "pytorch_model.bin", marker)
    line = one_line_error(capsys, ["import", str(model), "-o", str(tmp_path / "a.h5")], "pytorch_model.bin")
    assert "pickle" in line and "safe_serialization=True" in line
    _marker_pickle(tmp_path / "stack.pt", marker)
    assert "pickle" in one_line_error(capsys, ["import", str(tmp_path / "stack.pt"), "-o", str(tmp_path / "b.h5")],
                                       "stack.pt")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    _marker_pickle(snaps / "emb_step1.ckpt", marker)
    assert "pickle" in one_line_error(capsys, ["import", str(snaps), "-o", str(tmp_path / "c.h5")], "emb_step1.ckpt")
    assert not marker.exists() and not list(tmp_path.glob("*.h5"))


# ------------------------------------------------------------------------------------ bad inputs
def _bad(tmp_path, case):
    """Write one bad input; return (argv after 'import', the name the error must hold, text it must hold)."""
    st = str(tmp_path / "in" / "s.safetensors")
    os.makedirs(os.path.dirname(st))
    w = np.zeros((3, 6, 2), np.float32)
    if case == "missing key":
        stn.save_file({"a": w, "b2": w}, st)
        return [st, "--key", "nope"], "s.safetensors", "a F32[3, 6, 2], b2 F32[3, 6, 2]"
    if case == "not 3-D":
        stn.save_file({"flat": w[0]}, st)
        return [st, "--key", "flat"], "s.safetensors", "must be 3-D"
    if case == "several stacks":
        stn.save_file({"a": w, "b": w}, st)
        return [st], "s.safetensors", "several 3-D"
    if case == "non-monotonic steps":
        stn.save_file({"a": w, "steps": np.array([0, 5, 2])}, st)
        return [st, "--steps", "steps"], "s.safetensors", "strictly increase"
    if case == "mask of the wrong length":
        stn.save_file({"a": w}, st)
        stn.save_file({"m": np.zeros(5, bool)}, str(tmp_path / "in" / "mask.safetensors"))
        return [st, "--mask", str(tmp_path / "in" / "mask.safetensors")], "mask.safetensors", "expected [6]"
    if case == "truncated":
        stn.save_file({"a": w}, st)
        data = open(st, "rb").read()
        open(st, "wb").write(data[:-8])
        return [st], "s.safetensors", "past the end of the file"
    if case == "corrupt header":
        open(st, "wb").write((2**40).to_bytes(8, "little") + b"{}")
        return [st], "s.safetensors", "truncated"
    if case == "output exists":
        stn.save_file({"a": w}, st)
        (tmp_path / "m.h5").write_bytes(b"keep")
        return [st], "m.h5", "already exists"
    folder = tmp_path / "in" / "snaps"
    folder.mkdir()
    if case == "inconsistent shapes":
        stn.save_file({"e": w[0]}, str(folder / "x_step1.safetensors"))
        stn.save_file({"e": np.zeros((7, 2), np.float32)}, str(folder / "x_step2.safetensors"))
        return [str(folder)], "x_step2.safetensors", "inconsistent shapes"
    if case == "duplicate steps":
        stn.save_file({"e": w[0]}, str(folder / "x_step5.safetensors"))
        stn.save_file({"e": w[0]}, str(folder / "x_step05.safetensors"))
        return [str(folder)], "x_step5.safetensors", "duplicate step 5"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing key", "not 3-D", "several stacks", "non-monotonic steps",
                                  "mask of the wrong length", "truncated", "corrupt header", "output exists",
                                  "inconsistent shapes", "duplicate steps"])
def test_bad_inputs_are_one_line_errors_and_inputs_stay_unchanged(tmp_path, capsys, case):
    argv, name, text = _bad(tmp_path, case)
    before = _digests(tmp_path)
    line = one_line_error(capsys, ["import", *argv, "-o", str(tmp_path / "m.h5")], name)
    assert text in line, line
    assert _digests(tmp_path) == before
    if case != "output exists":
        assert not (tmp_path / "m.h5").exists()


def test_the_python_api_raises_tokendyn_errors(tmp_path):
    stn.save_file({"a": np.zeros((2, 3, 2), np.float32)}, str(tmp_path / "s.safetensors"))
    with pytest.raises(TokendynError, match="no tensor 'x'.*a F32"):
        importers.import_stack(tmp_path / "s.safetensors", tmp_path / "m.h5", key="x")
    with pytest.raises(TokendynError, match="3 steps for 2 frames"):
        importers.import_stack(tmp_path / "s.safetensors", tmp_path / "m.h5", steps="0:3")
    with pytest.raises(TokendynError, match="outside the 3 tokens"):
        importers.import_stack(tmp_path / "s.safetensors", tmp_path / "m.h5", dead_ids="1,3")
    assert not (tmp_path / "m.h5").exists()


def test_head_tying_unknown_is_decided_by_the_bytes(tmp_path):
    w = _bf16((16, 8))
    for name, head, has_e in (("same", w.clone(), False), ("other", _bf16((16, 8), seed=9), True)):
        folder = tmp_path / name
        folder.mkdir()
        stt.save_file({"transformer.wte.weight": w, "lm_head.weight": head}, str(folder / "model.safetensors"))
        ds = tokendyn.open_movie(importers.import_model(folder, tmp_path / f"{name}.h5", step=7))
        assert ("E" in ds) is has_e and ds.step.values.tolist() == [7]
        if has_e:
            assert np.array_equal(ds.E_bits.values[0], _bits(head))


def test_more_bad_inputs_name_their_file(tmp_path, capsys):
    stn.save_file({"a": np.zeros((2, 3, 2), np.int32)}, str(tmp_path / "ints.safetensors"))
    assert "must be F32, F16 or BF16" in one_line_error(
        capsys, ["import", str(tmp_path / "ints.safetensors"), "-o", str(tmp_path / "m.h5")], "ints.safetensors")
    stn.save_file({"a": np.zeros((2, 3, 2), np.float32)}, str(tmp_path / "s.safetensors"))
    assert "'x' is not an id" in one_line_error(
        capsys, ["import", str(tmp_path / "s.safetensors"), "-o", str(tmp_path / "m.h5"), "--dead-ids", "1,x"],
        "s.safetensors")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../s.safetensors"}}))
    assert "not a .safetensors file in this folder" in one_line_error(
        capsys, ["import", str(model), "-o", str(tmp_path / "m.h5")], "model.safetensors.index.json")
    run = tmp_path / "run"
    _checkpoint(run / "checkpoint-1", _bf16((16, 8)))
    _checkpoint(run / "checkpoint-2", _bf16((17, 8)))
    assert "inconsistent shapes" in one_line_error(
        capsys, ["import", str(run), "-o", str(tmp_path / "m.h5")], "checkpoint-2")
    assert not (tmp_path / "m.h5").exists()


def test_float64_is_rounded_to_float32_with_a_warning(tmp_path):
    w = np.random.default_rng(3).normal(size=(2, 5, 3))
    stn.save_file({"a": w}, str(tmp_path / "s.safetensors"))
    with pytest.warns(UserWarning, match="F64; the movie stores it rounded to float32"):
        out = importers.import_stack(tmp_path / "s.safetensors", tmp_path / "m.h5")
    assert np.array_equal(tokendyn.open_movie(out).W.values, w.astype(np.float32))
