import json
import pickle

import numpy as np
import pytest
import xarray as xr
from conftest import random_bf16_frames, run_cli, write_movie

import tokendyn
from tokendyn.sources.h5 import H5Block


def test_open_movie_structure(movie):
    path, frames, cls = movie
    ds = tokendyn.open_movie(path)
    assert dict(ds.sizes) == {"frame": 12, "token": 64, "dim": 8}
    assert ds.W.dtype == np.float32 and ds.W_bits.dtype == np.uint16
    assert ds.step.values.tolist() == list(range(12))
    assert np.array_equal(ds.token_class.values, cls)
    assert ds.token_text.values[0] == "t0" and ds.token_text.values[-1] == ""
    assert ds.token_count.values[0] == 5
    assert ds.attrs["config"] == {"test": True}
    assert ds.attrs["format"] == "tokendyn.wmovie"
    assert "loss" in ds and "time" in ds
    # the format's rule, written out here: a bf16 pattern b is the float32 whose bits are b << 16
    assert np.array_equal(ds.W.values.view(np.uint32), frames.astype(np.uint32) << 16)
    assert ds.movie.path == str(path)


def test_nothing_is_read_at_open(movie, monkeypatch):
    path, frames, _ = movie
    reads = []
    original = H5Block.__getitem__
    monkeypatch.setattr(H5Block, "__getitem__", lambda self, key: reads.append(key) or original(self, key))
    ds = tokendyn.open_movie(path, chunks=4)
    sub = ds.W.isel(frame=slice(0, 8)).mean("dim")
    assert reads == []
    sub.values
    assert len(reads) == 2  # only the two blocks holding frames 0..7
    assert ds.W.data.chunks[0] == (4, 4, 4)


def test_dataset_pickles_without_h5_handles(movie):
    path, frames, _ = movie
    ds = tokendyn.open_movie(path)
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.W_bits.values, frames)


def test_plain_xarray_opens_a_movie(movie):
    path, frames, cls = movie
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds.W.dims == ("frame", "token", "dim")
        assert ds.W.attrs["dtype"] == "bfloat16"
        assert np.array_equal(ds.W.values, frames)
        assert ds.step.values.tolist() == list(range(12))
        assert json.loads(ds.attrs["config"]) == {"test": True}
        assert np.array_equal(ds.token_class.values, cls)


def test_trailing_incomplete_frames_are_dropped(tmp_path):
    import h5py
    path = write_movie(str(tmp_path / "t.h5"), random_bf16_frames(5, 8, 2))
    with h5py.File(path, "r+") as f:
        for name in ("frame", "step", "time", "W", "nonfinite_W", "loss"):
            f[name].resize(7, axis=0)  # two frames whose step was never written (fill -1)
    ds = tokendyn.open_movie(path)
    assert ds.sizes["frame"] == 5
    assert tokendyn.info(path)["incomplete_frames"] == 2
    assert tokendyn.check(path).ok


def test_float32_movie_has_no_bits_variable(tmp_path):
    from tokendyn.recorder import Recorder
    with Recorder(tmp_path / "f.h5") as rec:
        rec.capture(0, W=np.ones((4, 3), np.float32))
    ds = tokendyn.open_movie(tmp_path / "f.h5")
    assert "W_bits" not in ds and ds.W.dtype == np.float32


def test_refresh_requires_an_opened_movie():
    with pytest.raises(tokendyn.MovieFormatError):
        tokendyn.refresh(xr.Dataset())


def test_info_and_cli_info(movie):
    path, _, _ = movie
    data = tokendyn.info(path)
    assert data["frames"] == 12 and data["steps"] == [0, 11]
    assert data["tokens_per_class"] == {"live": 40, "dead": 14, "phantom": 10}
    assert data["dtype"] == "bfloat16" and data["bytes_per_frame"] == 64 * 8 * 2
    assert data["compression"] == "none" and "loss" in data["scalars"]
    out = run_cli("info", path)
    assert out.returncode == 0
    assert "40 live, 14 dead, 10 phantom" in out.stdout and "bfloat16" in out.stdout
    out = run_cli("info", path, "--json")
    assert json.loads(out.stdout)["frames"] == 12


def test_cli_check_ok(movie):
    out = run_cli("check", movie[0], "-q")
    assert out.returncode == 0 and "OK" in out.stdout


def test_compressed_movie_round_trip(tmp_path):
    frames = random_bf16_frames(8, 64, 8)
    path = write_movie(str(tmp_path / "z.h5"), frames, compression="gzip")
    assert tokendyn.info(path)["compression"].startswith("gzip")
    assert np.array_equal(tokendyn.open_movie(path).W_bits.values, frames)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert np.array_equal(ds.W.values, frames)


def _rewrite(path):
    """Rewrite the movie file in place, as a rerun of a training in the same process does."""
    import h5py

    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)


def test_closing_the_dataset_releases_the_file(tmp_path):
    path = write_movie(str(tmp_path / "c.h5"), random_bf16_frames(3, 8, 2))
    other = tokendyn.open_movie(path)
    ds = tokendyn.open_movie(path)
    ds.W.values  # the reads leave a cached handle open
    ds.close()
    _rewrite(path)  # "unable to truncate a file which is already open" while a handle is left
    write_movie(path, random_bf16_frames(3, 8, 2, seed=1), overwrite=True)
    # a Dataset still open on the path reads the file that is there now
    np.testing.assert_array_equal(other.W_bits.values, random_bf16_frames(3, 8, 2, seed=1))


def test_open_movie_is_a_context_manager_that_releases_the_file(tmp_path):
    path = write_movie(str(tmp_path / "w.h5"), random_bf16_frames(3, 8, 2))
    with tokendyn.open_movie(path) as ds:
        assert ds.W.values.shape == (3, 8, 2)
    _rewrite(path)
    with xr.open_dataset(write_movie(str(tmp_path / "e.h5"), random_bf16_frames(3, 8, 2)), engine="tokendyn") as ds:
        ds.W.values
    _rewrite(str(tmp_path / "e.h5"))
