"""The zarr copy (``tokendyn convert``): plain xarray reads the values tokendyn reads, a missing chunk
is an error naming it, info/check/report/analyse take a ``.zarr`` as they take a ``.h5``, and a
broken store is a one-line error."""
import json
import os
import shutil

import numpy as np
import pytest
import xarray as xr
from conftest import random_bf16_frames, write_movie

import tokendyn
from tokendyn.errors import MovieError
from tokendyn.surfaces.cli import main

zarr = pytest.importorskip("zarr")


def _bf16_movie(tmp_path, nan=False):
    frames = random_bf16_frames(7, 16, 4)
    if nan:
        frames[1, 5, 2] = 0x7FC1  # a NaN with a payload
    frames[2, 6, 0] = 0x8000  # -0.0
    cls = np.array([0] * 10 + [1] * 4 + [2] * 2, np.uint8)  # class 0 (live) is zarr's old fill value
    path = write_movie(str(tmp_path / "m.h5"), frames, token_class=cls, token_text=[f"t{i}" for i in range(16)],
                       token_count=np.where(cls == 0, 0, 3))  # counts of 0, and a step 0, too
    return path, frames


@pytest.fixture
def bf16_movie(tmp_path):
    return _bf16_movie(tmp_path)


@pytest.fixture
def nan_movie(tmp_path):
    return _bf16_movie(tmp_path, nan=True)


def _plain(z):
    return xr.open_zarr(z, consolidated=False)


def test_plain_xarray_reads_the_values_open_movie_reads(nan_movie, tmp_path):
    path, frames = nan_movie
    z = tokendyn.convert(path, tmp_path / "m.zarr")
    with pytest.warns(RuntimeWarning, match="1 NaN/Inf"):
        ours = tokendyn.open_movie(z)
    plain = _plain(z)
    assert plain.W.dtype == np.float32 and plain.W.attrs["dtype"] == "bfloat16"
    # bit for bit, NaN payload and -0.0 included
    np.testing.assert_array_equal(plain.W.values.view(np.uint32), ours.W.values.view(np.uint32))
    np.testing.assert_array_equal(plain.W.values.view(np.uint32), frames.astype(np.uint32) << 16)
    for name in ("step", "token_class", "token_count", "time", "loss", "token_text"):
        theirs = plain[name].values
        assert theirs.dtype.kind == ours[name].values.dtype.kind or name == "token_text", name
        np.testing.assert_array_equal(theirs, ours[name].values)
    assert plain.step.values[0] == 0 and not np.isnan(plain.time.values).any()


def test_a_float32_movie_with_zeros_reads_the_same_in_plain_xarray(tmp_path):
    from tokendyn.recorder import Recorder

    path = str(tmp_path / "f.h5")
    w = np.zeros((5, 3), np.float32)
    w[1] = [1.5, -2.0, 0.25]
    with Recorder(path, scalars=["loss"]) as rec:
        for s in range(3):
            rec.capture(s, W=w * s, loss=0.0)
    z = tokendyn.convert(path, tmp_path / "f.zarr")
    plain = _plain(z)
    np.testing.assert_array_equal(plain.W.values, tokendyn.open_movie(path).W.values)
    assert plain.loss.values.tolist() == [0.0, 0.0, 0.0]
    assert plain.W.values[0].tolist() == np.zeros((5, 3)).tolist()  # zeros, not NaN


def test_bf16_comes_back_bit_exact_through_tokendyn_and_from_zarr(nan_movie, tmp_path):
    path, frames = nan_movie
    z = tokendyn.convert(path, tmp_path / "m.zarr")
    stored = zarr.open_group(z, mode="r")["W"]
    assert stored.dtype == np.float32 and stored.attrs["dtype"] == "bfloat16"
    with pytest.warns(RuntimeWarning, match="NaN"):
        np.testing.assert_array_equal(tokendyn.open_movie(z).W_bits.values, frames)
    back = tokendyn.convert(z, tmp_path / "back.h5")
    with pytest.warns(RuntimeWarning, match="NaN"):
        np.testing.assert_array_equal(tokendyn.open_movie(back).W_bits.values, frames)
    assert tokendyn.check(back).problems == ["W holds 1 NaN/Inf entries in 1 frame(s) (frames 1)"]


def test_a_widened_bf16_array_that_is_not_bf16_is_an_error(bf16_movie, tmp_path):
    z = tokendyn.convert(bf16_movie[0], tmp_path / "m.zarr")
    arr = zarr.open_group(z, mode="r+")["W"]
    arr[3] = np.full(arr.shape[1:], 1.0 + 2**-20, np.float32)  # low bits set: no bf16 is that
    with pytest.raises(MovieError, match="'W' declares dtype bfloat16 but holds float32 values that are not"):
        tokendyn.open_movie(z).W.values


def test_a_missing_chunk_is_an_error_naming_it(bf16_movie, tmp_path):
    z = tokendyn.convert(bf16_movie[0], tmp_path / "m.zarr")
    os.remove(os.path.join(z, "W", "3.0.0"))
    ds = tokendyn.open_movie(z, chunks=1)  # nothing of W is read at open
    ds.W.isel(frame=slice(0, 3)).values  # the frames that are there read
    with pytest.raises(MovieError, match=r"m.zarr: chunk W/3.0.0 of 'W' is missing"):
        ds.W.values
    report = tokendyn.check(z)
    assert report.problems == ["'W' lacks 1 of its 7 chunk(s) (W/3.0.0): the zarr store is incomplete"]
    # a chunk read at open
    os.remove(os.path.join(z, "token_class", "0"))
    with pytest.raises(MovieError, match="chunk token_class/0 of 'token_class' is missing"):
        tokendyn.open_movie(z)


def test_info_check_analyse_and_report_take_a_zarr_copy(bf16_movie, tmp_path, capsys):
    path, _ = bf16_movie
    z = tokendyn.convert(path, tmp_path / "m.zarr")
    a, b = tokendyn.info(path), tokendyn.info(z)
    for key in ("frames", "steps", "tokens", "dim", "dtype", "tokens_per_class", "matrices", "scalars", "bytes_per_frame"):
        assert a[key] == b[key], key
    assert b["path"] == os.path.abspath(z) and b["bytes_on_disk"] > 0
    report = tokendyn.check(z)
    assert report.ok, report.problems
    assert main(["info", z]) == 0 and "16  (10 live, 4 dead, 2 phantom)" in capsys.readouterr().out
    assert main(["check", z, "-q"]) == 0 and "OK, a valid W-movie" in capsys.readouterr().out
    out = str(tmp_path / "inhale.nc")
    assert main(["analyse", z, "inhale", "-o", out, "-q"]) == 0, capsys.readouterr().err
    assert os.path.exists(out)
    written = tokendyn.write_report(z, tmp_path / "report", progress=False)
    assert all(os.path.exists(p) for p in written.values())


def _edit_json(path, edit):
    with open(path) as fh:
        data = json.load(fh)
    edit(data)
    with open(path, "w") as fh:
        json.dump(data, fh)


_BROKEN = {
    "no .zgroup": (lambda z: os.remove(os.path.join(z, ".zgroup")), "not a zarr copy of a movie"),
    "no .zattrs": (lambda z: os.remove(os.path.join(z, ".zattrs")), "zarr group without the W-movie attributes"),
    "bad JSON in .zattrs": (lambda z: open(os.path.join(z, ".zattrs"), "w").write("{nope"),
                            "the zarr movie is corrupted or unreadable"),
    "bad JSON in W/.zarray": (lambda z: open(os.path.join(z, "W", ".zarray"), "w").write("[1, 2"),
                              "the zarr movie is corrupted or unreadable"),
    "no W array": (lambda z: shutil.rmtree(os.path.join(z, "W")), "the movie has no 'W' variable"),
    "W shape 2-D": (lambda z: _edit_json(os.path.join(z, "W", ".zarray"),
                                         lambda d: d.update(shape=d["shape"][1:], chunks=d["chunks"][1:])),
                    r"W must be 3-D \(frame, token, dim\)"),
    "token_class shape": (lambda z: _edit_json(os.path.join(z, "token_class", ".zarray"),
                                               lambda d: d.update(shape=[3], chunks=[3])),
                          r"'token_class' has shape \(3,\), expected \(16,\)"),
    "missing step chunk": (lambda z: os.remove(os.path.join(z, "step", "0")), "chunk step/0 of 'step' is missing"),
    "garbage chunk": (lambda z: open(os.path.join(z, "token_class", "0"), "wb").write(b"\x00garbage"),
                      "the zarr movie is corrupted or unreadable"),
}


@pytest.mark.parametrize("kind", list(_BROKEN))
def test_a_broken_zarr_store_is_a_one_line_error(bf16_movie, tmp_path, capsys, kind):
    z = tokendyn.convert(bf16_movie[0], tmp_path / "m.zarr")
    breakage, words = _BROKEN[kind]
    breakage(z)
    for call in (tokendyn.open_movie, tokendyn.info, lambda p: tokendyn.convert(p, tmp_path / "back.h5")):
        with pytest.raises(MovieError, match=words) as caught:
            call(z)
        assert "m.zarr" in str(caught.value) and "\n" not in str(caught.value)
    try:
        report = tokendyn.check(z)
    except MovieError as exc:  # a store check cannot open or decode (as an HDF5 file that is not one, or corrupted)
        assert kind in ("no .zgroup", "bad JSON in .zattrs", "bad JSON in W/.zarray", "garbage chunk")
        assert "m.zarr" in str(exc)
    else:
        assert not report.ok, report.problems
    for command in (["info", z], ["check", z, "-q"]):
        code = main(command)
        captured = capsys.readouterr()
        assert code in (1, 2) and "Traceback" not in captured.err
        if code == 2:
            assert captured.err.count("\n") == 1 and "m.zarr" in captured.err
