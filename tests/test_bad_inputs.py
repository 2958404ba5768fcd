"""Every bad input gets a tokendyn exception naming the file, and a clean CLI error."""
import os
import shutil

import h5py
import numpy as np
import pytest
from conftest import random_bf16_frames, run_cli, write_movie

import tokendyn
from tokendyn.errors import MovieError, MovieFormatError, MovieVersionError


def _mutate(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return str(dst)


def _all_entry_points(path):
    """open_movie, info and check (check may report instead of raising)."""
    return [lambda: tokendyn.open_movie(path), lambda: tokendyn.info(path)]


@pytest.fixture
def good(tmp_path):
    return write_movie(str(tmp_path / "good.h5"), random_bf16_frames(6, 32, 4))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.h5")
    for call in _all_entry_points(path) + [lambda: tokendyn.check(path)]:
        with pytest.raises(MovieError, match="nope.h5: no such file"):
            call()
    out = run_cli("info", path)
    assert out.returncode == 2 and "nope.h5: no such file" in out.stderr and "Traceback" not in out.stderr


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("just text, not HDF5\n")
    for call in _all_entry_points(str(path)) + [lambda: tokendyn.check(path)]:
        with pytest.raises(MovieError, match="notes.h5: not an HDF5 file"):
            call()
    out = run_cli("check", str(path))
    assert out.returncode == 2 and "not an HDF5 file" in out.stderr and "Traceback" not in out.stderr


def test_empty_file_and_folder(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(MovieError, match="empty"):
        tokendyn.open_movie(tmp_path / "empty.h5")
    with pytest.raises(MovieError, match="folder"):
        tokendyn.open_movie(tmp_path)


def test_hdf5_without_format_attributes(tmp_path):
    path = str(tmp_path / "plain.h5")
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    for call in _all_entry_points(path):
        with pytest.raises(MovieFormatError, match="plain.h5: HDF5 file without the W-movie attributes"):
            call()
    report = tokendyn.check(path)
    assert not report.ok and "without the W-movie attributes" in report.problems[0]
    out = run_cli("check", path)
    assert out.returncode == 1 and "W-movie attributes" in out.stdout


def test_newer_major_version(good, tmp_path):
    path = _mutate(good, tmp_path / "v2.h5", lambda f: f.attrs.__setitem__("format_version", "2.0"))
    for call in _all_entry_points(path):
        with pytest.raises(MovieVersionError, match="v2.h5: written with W-movie format 2.0"):
            call()
    out = run_cli("info", path)
    assert out.returncode == 2 and "upgrade tokendyn" in out.stderr
    # a newer minor version is fine
    ok = _mutate(good, tmp_path / "v11.h5", lambda f: f.attrs.__setitem__("format_version", "1.1"))
    assert tokendyn.open_movie(ok).sizes["frame"] == 6


@pytest.mark.parametrize("version, message", [("0.9", "format_version '0.9' is not a released version"),
                                              ("banana", "unreadable format_version 'banana'")])
def test_unreleased_and_unreadable_versions(good, tmp_path, version, message):
    path = _mutate(good, tmp_path / f"v{version}.h5", lambda f: f.attrs.__setitem__("format_version", version))
    for call in _all_entry_points(path) + [lambda: tokendyn.repair(path, tmp_path / "out.h5")]:
        with pytest.raises(MovieFormatError, match=f"v{version}.h5: {message}") as caught:
            call()
        assert type(caught.value) is MovieFormatError
    # check reports it and goes on checking the rest of the file
    assert tokendyn.check(path).problems == [message]
    out = run_cli("info", path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_check_stops_at_a_newer_major_version(good, tmp_path):
    def newer(f):
        f.attrs["format_version"] = "2.0"
        del f.attrs["created"]  # a v1 rule: not one to hold a newer version to
    report = tokendyn.check(_mutate(good, tmp_path / "v2.h5", newer))
    assert len(report.problems) == 1 and "written with W-movie format 2.0" in report.problems[0]


def test_truncated_file(good, tmp_path):
    path = tmp_path / "cut.h5"
    data = open(good, "rb").read()
    path.write_bytes(data[: len(data) // 3])
    for call in _all_entry_points(str(path)):
        with pytest.raises(MovieError, match="cut.h5: the HDF5 file is truncated or corrupted"):
            call()
    out = run_cli("check", str(path))
    assert out.returncode == 2 and "truncated or corrupted" in out.stderr


def test_corrupted_metadata(good, tmp_path):
    path = tmp_path / "bad.h5"
    data = bytearray(open(good, "rb").read())
    rng = np.random.default_rng(0)
    for i in rng.integers(100, 4000, 400):  # the superblock survives, the object headers do not
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tokendyn.TokendynError, match="bad.h5"):
        tokendyn.open_movie(path).W.values


def test_zero_frames(tmp_path):
    path = str(tmp_path / "zero.h5")
    full = write_movie(str(tmp_path / "src.h5"), random_bf16_frames(3, 16, 4))
    def empty(f):
        for name in ("frame", "step", "time", "W", "nonfinite_W", "loss"):
            f[name].resize(0, axis=0)
    _mutate(full, path, empty)
    for call in [lambda: tokendyn.open_movie(path)]:
        with pytest.raises(MovieFormatError, match="zero.h5: the movie holds zero complete frames"):
            call()
    assert "zero complete frames" in " ".join(tokendyn.check(path).problems)
    assert run_cli("check", path).returncode == 1


def test_mismatched_shapes(good, tmp_path):
    def add_e(f):
        f.create_dataset("E", data=np.zeros((6, 31, 4), np.uint16), maxshape=(None, 31, 4))
        f["E"].attrs["dtype"] = "bfloat16"
    path = _mutate(good, tmp_path / "shape.h5", add_e)
    with pytest.raises(MovieFormatError, match="shape.h5: E has shape"):
        tokendyn.open_movie(path)
    problems = tokendyn.check(path).problems
    assert any("E has shape" in p for p in problems)

    def short_step(f):
        f["step"].resize(4, axis=0)
    path2 = _mutate(good, tmp_path / "frames.h5", short_step)
    assert any("has 6 frames but 'step' has 4" in p for p in tokendyn.check(path2).problems)

    def bad_class(f):
        del f["token_class"]
        f["token_class"] = np.zeros(5, np.uint8)
    path3 = _mutate(good, tmp_path / "cls.h5", bad_class)
    assert any("token_class" in p for p in tokendyn.check(path3).problems)


def test_steps_not_increasing(good, tmp_path):
    def swap(f):
        s = f["step"][...]
        s[3], s[4] = s[4], s[3]
        f["step"][...] = s
    path = _mutate(good, tmp_path / "steps.h5", swap)
    report = tokendyn.check(path)
    assert any("not strictly increasing (frame 4" in p for p in report.problems)
    out = run_cli("check", path, "-q")
    assert out.returncode == 1 and "not strictly increasing" in out.stdout


def test_nan_in_w_is_reported_and_warned(tmp_path):
    frames = random_bf16_frames(5, 16, 4)
    frames[2, 3, 1] = 0x7FC0  # NaN
    frames[4, 0, 0] = 0x7F80  # +Inf
    path = write_movie(str(tmp_path / "nan.h5"), frames)
    report = tokendyn.check(path)
    assert any("2 NaN/Inf entries in 2 frame(s) (frames 2, 4)" in p for p in report.problems)
    with pytest.warns(RuntimeWarning, match="nan.h5: the movie holds 2 NaN/Inf"):
        tokendyn.open_movie(path)
    out = run_cli("check", path, "-q")
    assert out.returncode == 1 and "NaN/Inf" in out.stdout


def test_bad_config_attribute(good, tmp_path):
    path = _mutate(good, tmp_path / "cfg.h5", lambda f: f.attrs.__setitem__("config", "{not json"))
    with pytest.raises(MovieFormatError, match="cfg.h5: the config attribute is not valid JSON"):
        tokendyn.open_movie(path)
    assert any("config" in p for p in tokendyn.check(path).problems)


def test_readers_never_modify_the_input(good):
    before = (os.stat(good).st_mtime_ns, open(good, "rb").read())
    ds = tokendyn.open_movie(good)
    ds.W.values
    tokendyn.info(good)
    tokendyn.check(good)
    assert run_cli("info", good).returncode == 0
    assert (os.stat(good).st_mtime_ns, open(good, "rb").read()) == before


def test_readers_open_read_only_files(good):
    os.chmod(good, 0o444)
    try:
        assert tokendyn.open_movie(good).W.values.shape == (6, 32, 4)
        assert tokendyn.check(good).ok
    finally:
        os.chmod(good, 0o644)
