"""Scaling out: analyses on a dask.distributed cluster give the local results; zarr copies."""

import numpy as np
import pytest
import xarray as xr
from conftest import random_bf16_frames, run_cli, write_movie

import tokendyn
from tokendyn.analysis import cloud_geometry, comoving_displacement, hypersphere_walk, inhale, lattice_motion


@pytest.fixture(scope="module")
def bf16_movie(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dist") / "m.h5")
    frames = random_bf16_frames(40, n_tokens=96, n_dims=8, seed=3)
    cls = np.array([0] * 60 + [1] * 20 + [2] * 16, np.uint8)
    write_movie(path, frames, token_class=cls, token_text=[f"t{i}" for i in range(96)],
                token_count=np.where(cls == 0, 3, 0), title="dist test", seed=7)
    return path


ANALYSES = [
    ("comoving", lambda ds: comoving_displacement(ds, lags=(1, 4))),
    ("hypersphere", lambda ds: hypersphere_walk(ds, "all")),
    ("lattice", lambda ds: lattice_motion(ds)),
    ("inhale", lambda ds: inhale(ds)),
    ("geometry", lambda ds: cloud_geometry(ds, k=3, nn_frames=3)),
]


def test_every_analysis_on_a_local_cluster_of_processes_equals_the_local_run(bf16_movie):
    distributed = pytest.importorskip("distributed")
    local = {name: fn(tokendyn.open_movie(bf16_movie, chunks=7)).load() for name, fn in ANALYSES}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ds = tokendyn.open_movie(bf16_movie, chunks=7)
        for name, fn in ANALYSES:
            remote = fn(ds).load()
            xr.testing.assert_identical(remote, local[name])
        # the work really ran in the worker processes
        assert sum(client.run(lambda: 1).values()) == 2


def test_cli_workers_runs_on_a_local_cluster(bf16_movie, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "lat.nc"
    r = run_cli("analyse", bf16_movie, "lattice", "--workers", "2", "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    local = lattice_motion(tokendyn.open_movie(bf16_movie)).load()
    saved = xr.open_dataset(out, engine="h5netcdf")
    np.testing.assert_array_equal(saved.freeze_step.values, local.freeze_step.values)


def test_cli_unreachable_scheduler_is_a_clear_error(bf16_movie):
    pytest.importorskip("distributed")
    r = run_cli("analyse", bf16_movie, "inhale", "--scheduler", "tcp://127.0.0.1:9", "-q", timeout=120)
    assert r.returncode == 2 and "cannot reach the dask scheduler" in r.stderr


def test_zarr_copy_opens_as_the_same_dataset_bit_for_bit_and_converts_back(bf16_movie, tmp_path):
    pytest.importorskip("zarr")
    z = str(tmp_path / "m.zarr")
    r = run_cli("convert", bf16_movie, z, "-q")
    assert r.returncode == 0, r.stderr
    a, b = tokendyn.open_movie(bf16_movie), tokendyn.open_movie(z)
    xr.testing.assert_identical(a.drop_encoding(), b.drop_encoding())
    np.testing.assert_array_equal(a.W_bits.values, b.W_bits.values)
    assert a.attrs == b.attrs
    for name in ("step", "token_class", "token_text", "token_count", "time", "loss"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    # analyses run on the zarr copy (and on a cluster: the blocks pickle as paths)
    xr.testing.assert_identical(lattice_motion(a).load(), lattice_motion(b).load())
    back = str(tmp_path / "back.h5")
    assert run_cli("convert", z, back, "-q").returncode == 0
    assert tokendyn.check(back).ok
    c = tokendyn.open_movie(back)
    np.testing.assert_array_equal(a.W_bits.values, c.W_bits.values)
    for name in ("step", "time", "loss", "token_text", "token_count"):
        np.testing.assert_array_equal(a[name].values, c[name].values)
    assert c.attrs["created"] == a.attrs["created"] and c.attrs["config"] == a.attrs["config"]


def test_zarr_copy_of_a_float32_untied_movie(tmp_path):
    pytest.importorskip("zarr")
    from tokendyn.recorder import Recorder

    path = str(tmp_path / "f.h5")
    rng = np.random.default_rng(0)
    with Recorder(path, scalars=["loss"]) as rec:
        for s in range(5):
            rec.capture(s * 10, W=rng.normal(size=(12, 4)).astype(np.float32),
                        E=rng.normal(size=(12, 4)).astype(np.float32), loss=float(s))
    from tokendyn.tools.convert import to_zarr

    z = to_zarr(path, tmp_path / "f.zarr")
    a, b = tokendyn.open_movie(path), tokendyn.open_movie(z)
    np.testing.assert_array_equal(a.W.values, b.W.values)
    np.testing.assert_array_equal(a.E.values, b.E.values)
    assert b.step.values.tolist() == [0, 10, 20, 30, 40]


def test_convert_errors(bf16_movie, tmp_path):
    r = run_cli("convert", bf16_movie, str(tmp_path / "x.h5"), "-q")
    assert r.returncode == 2 and "must be a .zarr directory" in r.stderr
    z = tmp_path / "m.zarr"
    assert run_cli("convert", bf16_movie, str(z), "-q").returncode == 0
    r = run_cli("convert", bf16_movie, str(z), "-q")
    assert r.returncode == 2 and "the output exists" in r.stderr
    r = run_cli("convert", str(tmp_path / "missing.h5"), str(tmp_path / "y.zarr"), "-q")
    assert r.returncode == 2 and "missing.h5" in r.stderr


def test_block_boundaries_and_readers_do_not_change_results(bf16_movie):
    """Many small blocks (each carrying the frames before it), one block, and a Dataset held in
    memory (read through its own arrays, not h5py) give the same results."""
    one_block = {name: fn(tokendyn.open_movie(bf16_movie)).load() for name, fn in ANALYSES}
    for ds in (tokendyn.open_movie(bf16_movie, chunks=3), tokendyn.open_movie(bf16_movie).load()):
        for name, fn in ANALYSES:
            xr.testing.assert_allclose(fn(ds).load(), one_block[name], rtol=1e-12, atol=0)
