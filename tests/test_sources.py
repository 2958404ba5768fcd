"""The movie sources: one MovieSource interface, one header check, the direct-read record, the
xarray engine, and the arrows between readers and writers."""
import ast
import os
import pickle

import numpy as np
import pytest
import xarray as xr
from conftest import ROOT, random_bf16_frames, run_py, write_movie

import tokendyn
from tokendyn.errors import MovieFormatError, MovieVersionError
from tokendyn.format.header import check_header
from tokendyn.sources import open_source
from tokendyn.sources.base import MovieSource
from tokendyn.sources.dataset import direct_frames
from tokendyn.sources.h5 import H5Source
from tokendyn.sources.zarr import ZarrSource


@pytest.fixture
def h5_movie(tmp_path):
    return write_movie(str(tmp_path / "m.h5"), random_bf16_frames(7, 16, 4))


@pytest.fixture
def zarr_movie(h5_movie, tmp_path):
    pytest.importorskip("zarr")
    from tokendyn.tools.convert import to_zarr

    return to_zarr(h5_movie, tmp_path / "m.zarr")


def test_both_sources_implement_the_interface(h5_movie, zarr_movie):
    with pytest.raises(TypeError, match="abstract"):
        MovieSource()

    class Partial(MovieSource):  # a backend that forgot most of the interface cannot be made
        def close(self):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()
    for path, kind in ((h5_movie, H5Source), (zarr_movie, ZarrSource)):
        with open_source(path) as source:
            assert type(source) is kind and isinstance(source, MovieSource)
            assert source.header == (1, 0) and source.path == os.path.abspath(path)
            assert "W" in source and "nope" not in source
            assert source.attrs["format"] == "tokendyn.wmovie"
            assert {"step", "time", "loss", "W"} <= set(source.frame_series())
            block = source.block("W", (7, 16, 4), np.uint16)
            # a block reader travels as a path and a name and reads where it lands
            np.testing.assert_array_equal(pickle.loads(pickle.dumps(block))[2:4], source["W"][2:4])


def test_check_header_rules():
    def attrs(version):
        return {"format": "tokendyn.wmovie", "format_version": version}

    assert check_header(attrs("1.0"), "m.h5") == (1, 0)
    assert check_header(attrs(b"1.3"), "m.h5") == (1, 3)  # a newer minor version is read
    with pytest.raises(MovieVersionError, match="m.h5: written with W-movie format 2.0"):
        check_header(attrs("2.0"), "m.h5")
    with pytest.raises(MovieFormatError, match="m.h5: format_version '0.9' is not a released version"):
        check_header(attrs("0.9"), "m.h5")
    for bad in ("banana", "1", "1.0.0", None):
        with pytest.raises(MovieFormatError, match=f"m.h5: unreadable format_version {bad!r}"):
            check_header(attrs(bad), "m.h5")
    with pytest.raises(MovieFormatError, match="m.zarr: zarr group without the W-movie attributes"):
        check_header({"format": "other"}, "m.zarr", container="zarr group")


def _set_zarr_version(path, version):
    import zarr

    zarr.open_group(path, mode="r+").attrs["format_version"] = version


@pytest.mark.parametrize("version, error, message", [
    ("0.9", MovieFormatError, "format_version '0.9' is not a released version"),
    ("banana", MovieFormatError, "unreadable format_version 'banana'"),
    ("2.0", MovieVersionError, "written with W-movie format 2.0"),
])
def test_a_zarr_copy_is_held_to_the_same_header_rules_as_hdf5(zarr_movie, version, error, message):
    _set_zarr_version(zarr_movie, version)
    with pytest.raises(error, match=f"m.zarr: {message}") as caught:
        tokendyn.open_movie(zarr_movie)
    assert type(caught.value) is error


def test_a_newer_minor_version_of_a_zarr_copy_opens(zarr_movie):
    _set_zarr_version(zarr_movie, "1.4")
    assert tokendyn.open_movie(zarr_movie).sizes["frame"] == 7


def test_only_a_straight_hdf5_open_is_recorded_for_direct_reads(h5_movie, zarr_movie, tmp_path):
    ds = tokendyn.open_movie(h5_movie)
    record = direct_frames(ds)
    assert record is not None
    assert (record.path, record.dataset, record.variable, record.dtype) == (os.path.abspath(h5_movie), "W", "W_bits",
                                                                          "uint16")
    assert record.array == ds.W_bits.data.name and record.shape == (7, 16, 4)
    assert direct_frames(pickle.loads(pickle.dumps(ds))) == record  # a pickled Dataset keeps it
    assert direct_frames(ds.isel(frame=slice(1, 5))) is None
    assert direct_frames(ds.isel(token=[0, 3])) is None
    assert direct_frames(ds.copy().load()) is None
    assert direct_frames(tokendyn.open_movie(zarr_movie)) is None
    assert direct_frames(xr.Dataset()) is None
    from tokendyn.recorder import Recorder

    for dtype, variable in ((np.float32, "W"), (np.float16, None)):
        path = str(tmp_path / f"{np.dtype(dtype).name}.h5")
        with Recorder(path) as rec:
            rec.capture(0, W=np.ones((4, 3), dtype))
        found = direct_frames(tokendyn.open_movie(path))
        # float16 frames are only shown converted to float32: no variable holds the stored ones
        assert (found.variable if found else None) == variable


def test_different_chunkings_get_different_dask_names(h5_movie):
    a, b = tokendyn.open_movie(h5_movie, chunks=2), tokendyn.open_movie(h5_movie, chunks=3)
    assert a.W_bits.data.name != b.W_bits.data.name
    assert a.W_bits.data.name == tokendyn.open_movie(h5_movie, chunks=2).W_bits.data.name
    np.testing.assert_array_equal((a.W_bits - b.W_bits).values, 0)


def test_xarray_engine_opens_movies_as_open_movie_does(h5_movie, zarr_movie):
    assert "tokendyn" in xr.backends.list_engines()
    for path in (h5_movie, zarr_movie):
        ours = tokendyn.open_movie(path)
        with xr.open_dataset(path, engine="tokendyn") as ds:
            xr.testing.assert_identical(ds.load().drop_encoding(), ours.load().drop_encoding())
        with xr.open_dataset(path, engine="tokendyn", drop_variables=["loss"], frames_per_chunk=3) as ds:
            assert "loss" not in ds and "W" in ds
            assert ds.W.data.chunks[0] == (3, 3, 1)
    # straight from the engine, the analyses still read the frames in place
    assert direct_frames(xr.open_dataset(h5_movie, engine="tokendyn")) is not None


def test_xarray_engine_claims_movies_only(h5_movie, zarr_movie, tmp_path):
    import h5py

    from tokendyn.sources.backend import TokendynBackend

    plain = str(tmp_path / "plain.h5")
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    (tmp_path / "notes.txt").write_text("text")
    backend = TokendynBackend()
    assert backend.guess_can_open(h5_movie) and backend.guess_can_open(zarr_movie)
    for other in (plain, str(tmp_path / "notes.txt"), str(tmp_path / "missing.h5"), str(tmp_path)):
        assert not backend.guess_can_open(other)
    with pytest.raises(MovieFormatError, match="plain.h5: HDF5 file without the W-movie attributes"):
        xr.open_dataset(plain, engine="tokendyn")


def test_ds_movie_comes_with_open_movie_in_a_fresh_process(h5_movie):
    code = (f"import tokendyn; ds = tokendyn.open_movie({h5_movie!r}); "
            "print(ds.movie.path, ds.movie.refresh().sizes['frame'])")
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [os.path.abspath(h5_movie), "7"]


def _imports(path):
    """Every ``tokendyn...`` name ``path`` imports (``from a import b`` gives ``a.b``)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: inside the file's own package
                package = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
                module = f"{package}.{module}" if module else package
            found.update(f"{module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("tokendyn")}


def test_readers_import_no_writer_and_the_format_imports_nothing_of_ours():
    readers = [os.path.join(ROOT, "tokendyn", "sources", n) for n in os.listdir(os.path.join(ROOT, "tokendyn", "sources"))
               if n.endswith(".py")] + [os.path.join(ROOT, "tokendyn", "tools", "inspect.py")]
    writers = ("tokendyn.recorder", "tokendyn.tools.convert", "tokendyn.tools.repair")
    for path in readers:
        bad = [m for m in _imports(path) if m.startswith(writers)]
        assert not bad, f"{path} imports {bad}"
    fmt_dir = os.path.join(ROOT, "tokendyn", "format")
    ours = set().union(*(_imports(os.path.join(fmt_dir, n)) for n in os.listdir(fmt_dir) if n.endswith(".py")))
    assert "tokendyn.errors.MovieFormatError" in ours  # the header check's (so the scan sees imports)
    assert all(m.startswith(("tokendyn.format", "tokendyn.errors")) for m in ours), ours
