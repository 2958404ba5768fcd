"""A movie's data lives in the movie: external storage, virtual datasets and links out of an HDF5
movie, and symbolic links or FIFOs in a zarr copy, are refused by every command before anything of
them is read."""
import os
import shutil

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import random_bf16_frames, run_py, write_movie

import tokendyn
from tokendyn.errors import MovieError
from tokendyn.surfaces.cli import main

SECRET = b"TOPSECRET-bytes-of-another-file!" * 8  # 256 bytes: exactly one W of 4 frames x 8 tokens x 4 dims


@pytest.fixture
def good(tmp_path):
    return write_movie(str(tmp_path / "good.h5"), random_bf16_frames(4, 8, 4))


def _replace(good, dst, name, make):
    """A copy of ``good`` whose variable ``name`` is replaced by what ``make(f, name, shape, attrs)`` puts there."""
    shutil.copy(good, dst)
    with h5py.File(dst, "r+") as f:
        shape, dtype, attrs = f[name].shape, f[name].dtype, dict(f[name].attrs)
        del f[name]
        make(f, name, shape, dtype, attrs)
    return str(dst)


def _external(target):
    def make(f, name, shape, dtype, attrs):
        nbytes = int(np.prod(shape)) * dtype.itemsize
        dset = f.create_dataset(name, shape=shape, dtype=dtype, external=[(target, 0, nbytes)])
        if "dtype" in attrs:
            dset.attrs["dtype"] = attrs["dtype"]
    return make


def _virtual(source):
    def make(f, name, shape, dtype, attrs):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(source, name, shape=shape)
        f.create_virtual_dataset(name, layout).attrs["dtype"] = attrs.get("dtype", dtype.name)
    return make


def _external_link(source):
    def make(f, name, shape, dtype, attrs):
        f[name] = h5py.ExternalLink(source, name)
    return make


def _soft_link(f, name, shape, dtype, attrs):
    f.create_dataset("hidden", data=np.zeros(shape, dtype)).attrs["dtype"] = attrs.get("dtype", dtype.name)
    f[name] = h5py.SoftLink("/hidden")


@pytest.fixture
def hostile(good, tmp_path):
    """One movie per way of keeping W outside the movie, with the words its refusal must say."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    return {
        "external": (_replace(good, tmp_path / "external.h5", "W", _external(str(secret))),
                     "'W' is stored outside the movie, in the raw file"),
        "virtual": (_replace(good, tmp_path / "virtual.h5", "W", _virtual(good)), "'W' is a virtual dataset"),
        "external link": (_replace(good, tmp_path / "elink.h5", "W", _external_link(good)), "'W' is an external link"),
        "soft link": (_replace(good, tmp_path / "soft.h5", "W", _soft_link), "'W' is a soft link to '/hidden'"),
    }


def test_the_hostile_movies_are_what_they_claim(hostile):
    """The movie with W stored externally really reads the other file's bytes through h5py."""
    with h5py.File(hostile["external"][0], "r") as f:
        assert f["W"][...].tobytes() == SECRET


@pytest.mark.parametrize("kind", ["external", "virtual", "external link", "soft link"])
def test_every_command_refuses_data_outside_the_movie(hostile, tmp_path, kind):
    path, words = hostile[kind]
    calls = {
        "open_movie": lambda: tokendyn.open_movie(path),
        "info": lambda: tokendyn.info(path),
        "repair": lambda: tokendyn.repair(path, tmp_path / "repaired.h5"),
        "convert": lambda: tokendyn.convert(path, tmp_path / "copy.zarr"),
        "xarray engine": lambda: xr.open_dataset(path, engine="tokendyn"),
        "report": lambda: tokendyn.write_report(path, tmp_path / "report", progress=False),
    }
    for what, call in calls.items():
        with pytest.raises(MovieError, match=words) as caught:
            call()
        assert os.path.basename(path) in str(caught.value) and "\n" not in str(caught.value), what
        assert "a movie's data must live in the movie" in str(caught.value)
    assert not os.path.exists(tmp_path / "repaired.h5") and not os.path.exists(tmp_path / "copy.zarr")
    report = tokendyn.check(path)
    assert not report.ok and any(words in p for p in report.problems), report.problems


def test_the_cli_prints_one_line_and_check_lists_the_violation(hostile, capsys):
    path, words = hostile["external"]
    assert main(["info", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err and SECRET[:9].decode() not in err
    assert main(["check", path, "-q"]) == 1
    out = capsys.readouterr().out
    assert f"problem: {words}" in out and SECRET[:9].decode() not in out


def test_any_variable_and_links_in_groups_are_found(good, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    path = _replace(good, tmp_path / "step.h5", "step", _external(str(secret)))
    with pytest.raises(MovieError, match="'step' is stored outside the movie"):
        tokendyn.open_movie(path)
    path = str(tmp_path / "group.h5")
    shutil.copy(good, path)
    with h5py.File(path, "r+") as f:
        f.create_group("extra")["deep"] = h5py.ExternalLink(good, "W")
    with pytest.raises(MovieError, match="'extra/deep' is an external link"):
        tokendyn.info(path)


_FIFO_SCRIPT = """
import sys
import tokendyn
path, out = sys.argv[1], sys.argv[2]
calls = [("open", lambda: tokendyn.open_movie(path).W.values), ("info", lambda: tokendyn.info(path)),
         ("repair", lambda: tokendyn.repair(path, out + ".h5")), ("convert", lambda: tokendyn.convert(path, out + ".zarr"))]
for name, call in calls:
    try:
        call()
        print(name, "read it")
    except tokendyn.MovieError as exc:
        print(name, "refused:", exc.problem)
print("check", tokendyn.check(path).problems)
"""


@pytest.mark.parametrize("name", ["W", "step"])
def test_an_external_fifo_is_refused_without_being_read(good, tmp_path, name):
    """Reading an external FIFO blocks until a writer comes: refusing it must not read it."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    path = _replace(good, tmp_path / "fifo.h5", name, _external(fifo))
    script = tmp_path / "script.py"
    script.write_text(_FIFO_SCRIPT)
    out = run_py(f"import runpy, sys; sys.argv = ['x', {path!r}, {str(tmp_path / 'out')!r}]; "
                 f"runpy.run_path({str(script)!r})", timeout=90)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["open", "info", "repair", "convert", "check"]
    for line in lines[:4]:
        assert f"refused: '{name}' is stored outside the movie, in the raw file '{fifo}'" in line
    assert f"'{name}' is stored outside the movie" in lines[4]


def _zarr_copy(good, tmp_path):
    pytest.importorskip("zarr")
    return tokendyn.convert(good, tmp_path / "m.zarr")


def test_a_zarr_entry_linking_out_of_the_store_is_refused(good, tmp_path):
    z = _zarr_copy(good, tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    chunk = os.path.join(z, "W", "1.0.0")
    os.remove(chunk)
    os.symlink(secret, chunk)
    calls = [lambda: tokendyn.open_movie(z), lambda: tokendyn.info(z),
             lambda: tokendyn.convert(z, tmp_path / "back.h5"), lambda: xr.open_dataset(z, engine="tokendyn")]
    for call in calls:
        with pytest.raises(MovieError, match=r"'W' \(store entry 'W/1.0.0'\) is a symbolic link to .*secret.bin"):
            call()
    assert not os.path.exists(tmp_path / "back.h5")
    assert any("symbolic link" in p for p in tokendyn.check(z).problems)
    # a link that stays inside the store is fine
    os.remove(chunk)
    shutil.copy(os.path.join(z, "W", "0.0.0"), os.path.join(z, "W", "elsewhere"))
    os.symlink(os.path.join(z, "W", "elsewhere"), chunk)
    assert tokendyn.open_movie(z).W.shape == (4, 8, 4)


def test_a_fifo_in_a_zarr_store_is_refused_without_being_read(good, tmp_path):
    z = _zarr_copy(good, tmp_path)
    os.remove(os.path.join(z, ".zattrs"))
    os.mkfifo(os.path.join(z, ".zattrs"))
    code = (f"import tokendyn\n"
            f"for call in (tokendyn.open_movie, tokendyn.info):\n"
            f"    try:\n        call({z!r})\n    except tokendyn.MovieError as exc:\n        print(exc.problem)\n"
            f"print(tokendyn.check({z!r}).problems)")
    out = run_py(code, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("'.zattrs' (store entry '.zattrs') is a FIFO") == 3, out.stdout
