"""Analyses against planted ground truth (tokendyn.synthetic) and float64 numpy references."""
import numpy as np
import pytest
import reference
from conftest import random_bf16_frames, write_movie
from scipy import stats

import tokendyn
from tokendyn import synthetic
from tokendyn.analysis import (
    cloud_geometry,
    comoving_displacement,
    find_inhale,
    hypersphere_walk,
    inhale,
    lattice_motion,
    registry,
)
from tokendyn.analysis import geometry as geometry_module
from tokendyn.errors import AnalysisError
from tokendyn.format import float32_to_bf16_bits


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk") / "walk.h5"
    synthetic.hypersphere_walk(path, n_tokens=128, dim=16, frames=60, seed=1)
    return str(path)


def test_comoving_matches_numpy_reference(walk):
    ds = tokendyn.open_movie(walk, chunks=7)
    x = ds.W.values
    out = comoving_displacement(ds, lags=(1, 3, 8), ref_frame=5)
    step, from_ref, drift, msd = reference.comoving(x, np.ones(x.shape[1], bool), 5, (1, 3, 8))
    np.testing.assert_allclose(out.step_displacement.values, step, rtol=1e-6)
    np.testing.assert_allclose(out.displacement_from_ref.values, from_ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(out.centroid_drift.values, drift, rtol=1e-6)
    np.testing.assert_allclose(out.msd.sel(**{"class": "dead"}).values, [msd[1], msd[3], msd[8]], rtol=1e-6)
    np.testing.assert_allclose(out.step_displacement_mean.sel(**{"class": "dead"}).values[1:],
                               step[1:].mean(1), rtol=1e-6)
    np.testing.assert_allclose(out.step_displacement_median.sel(**{"class": "dead"}).values[1:],
                               np.median(step[1:], 1), rtol=1e-6)
    for name, var in out.data_vars.items():
        assert var.attrs.get("long_name") and var.attrs.get("units"), name


def test_comoving_is_lazy_per_frame(walk):
    out = comoving_displacement(tokendyn.open_movie(walk), lags=None, per_token="lazy")
    import dask.array as da
    assert isinstance(out.step_displacement.data, da.Array)
    assert "msd" not in out


_PER_TOKEN_KWARGS = {"comoving": {"lags": (1, 3), "ref_frame": 4}}  # several lags and a reference frame


@pytest.mark.parametrize("name", [name for name, spec in registry.analyses().items() if "per_token" in spec.options])
def test_per_token_results_from_the_pass_equal_the_lazy_ones(name, walk, tmp_path, monkeypatch):
    import dask.array as da

    from tokendyn.analysis import _frames

    analysis, kwargs = registry.get(name), _PER_TOKEN_KWARGS.get(name, {})
    ds = tokendyn.open_movie(walk, chunks=6)  # several blocks, each with its own context
    if not analysis.applies(ds, "all"):  # the lattice: a bf16 movie
        synthetic.lattice_freeze(tmp_path / "lf.h5", n_tokens=40, dim=12, frames=50, seed=5)
        ds = tokendyn.open_movie(tmp_path / "lf.h5", chunks=6)
    held = analysis(ds, per_token="memory", **kwargs)
    lazy = analysis(ds, per_token="lazy", **kwargs)
    per_token = [name for name, var in lazy.data_vars.items() if var.dims == ("frame", "token")]
    assert len(per_token) >= 2
    for name in per_token:
        assert isinstance(lazy[name].data, da.Array) and isinstance(held[name].data, np.ndarray), name
        assert held[name].dtype == lazy[name].dtype, name  # one dtype, whichever way they are made
        # the same arithmetic in two kernels: equal up to the order of a float sum
        np.testing.assert_allclose(held[name].values, lazy[name].values, rtol=1e-12, atol=0, err_msg=name)
    # "auto" holds them only up to the budget
    assert isinstance(analysis(ds, **kwargs)[per_token[0]].data, np.ndarray)
    monkeypatch.setattr(_frames, "IN_MEMORY_BYTES", 100)
    assert isinstance(analysis(ds, **kwargs)[per_token[0]].data, da.Array)
    with pytest.raises(AnalysisError, match="per_token"):
        analysis(ds, per_token="disk", **kwargs)


def test_global_translation_leaves_comoving_quantities_unchanged(walk, tmp_path):
    moved = str(tmp_path / "moved.h5")
    shifts = synthetic.translated(walk, moved, drift=0.3)
    a = comoving_displacement(tokendyn.open_movie(walk), lags=(1, 4))
    b = comoving_displacement(tokendyn.open_movie(moved), lags=(1, 4))
    assert np.abs(shifts).max() > 1  # the translation dwarfs the steps (~0.01)...
    # ...yet co-moving quantities agree to float32 rounding of the shifted positions
    np.testing.assert_allclose(b.step_displacement.values[1:], a.step_displacement.values[1:], atol=2e-6)
    np.testing.assert_allclose(b.msd.values, a.msd.values, rtol=2e-3)
    assert b.centroid_drift.values[1:].mean() > 100 * a.centroid_drift.values[1:].mean()


def test_lattice_motion_finds_planted_freezes_exactly(tmp_path):
    path = tmp_path / "lf.h5"
    truth = synthetic.lattice_freeze(path, n_tokens=96, dim=12, frames=90, seed=3)
    ds = tokendyn.open_movie(path, chunks=8)
    out = lattice_motion(ds)
    planted = truth["freeze_step"]
    found = out.freeze_step.values
    assert np.isnan(planted).any()
    np.testing.assert_array_equal(np.isnan(found), np.isnan(planted))
    np.testing.assert_array_equal(found[~np.isnan(found)], planted[~np.isnan(planted)])
    # numpy reference for the per-frame quantities
    changed, sites, sq = reference.lattice(ds.W_bits.values)
    np.testing.assert_array_equal(out.changed.values[1:], changed)
    np.testing.assert_array_equal(out.sites.values[1:], sites)
    live = ds.token_class.values == 0
    np.testing.assert_allclose(out.temperature.sel(**{"class": "live"}).values[1:], sq[:, live].mean(1), rtol=1e-6)
    # frozen fraction and onsets follow from the planted freezes
    f_live = planted[live]
    steps = ds.step.values
    expect = (np.nan_to_num(f_live, nan=np.inf)[None, :] <= steps[:, None]).mean(1)
    np.testing.assert_allclose(out.frozen_fraction.sel(**{"class": "live"}).values, expect)
    onset = out.freeze_onset.sel(**{"class": "live"}, threshold=0.5).item()
    assert onset == steps[np.flatnonzero(expect >= 0.5)[0]]
    # gas then solid: large moves only early
    assert (out.hop.values[1:11] == 2).any() and not (out.hop.values[11:] == 2).any()


def test_lattice_tolerance_ignores_isolated_hops(tmp_path):
    from tokendyn.format import BF16Bits
    from tokendyn.recorder import Recorder
    base = np.full((2, 4), 0x3C00, np.uint16)
    frames = [base.copy() for _ in range(10)]
    for t in range(1, 4):
        frames[t][0, 0] = frames[t - 1][0, 0] + 3  # token 0 moves until frame 3...
    for t in range(4, 10):
        frames[t][0, 0] = frames[3][0, 0]
    frames[7][0, 1] += 1  # ...then one isolated +-1 hop at frame 7, which it keeps
    for t in range(8, 10):
        frames[t][0, 1] = frames[7][0, 1]
    with Recorder(tmp_path / "tol.h5") as rec:
        for t, f in enumerate(frames):
            rec.capture(t, W=BF16Bits(f))
    ds = tokendyn.open_movie(tmp_path / "tol.h5")
    assert lattice_motion(ds).freeze_step.values.tolist() == [7, 0]
    assert lattice_motion(ds, tolerance=1).freeze_step.values.tolist() == [3, 0]


def test_lattice_motion_requires_bf16(walk):
    with pytest.raises(AnalysisError, match="needs a bfloat16 W"):
        lattice_motion(tokendyn.open_movie(walk))


def test_hypersphere_null_not_rejected_and_drift_rejected(tmp_path):
    null = tmp_path / "null.h5"
    drift = tmp_path / "drift.h5"
    synthetic.hypersphere_walk(null, n_tokens=200, dim=24, frames=80, outward=0.0, seed=4)
    synthetic.hypersphere_walk(drift, n_tokens=200, dim=24, frames=80, outward=0.04, seed=4)
    a = hypersphere_walk(tokendyn.open_movie(null))
    b = hypersphere_walk(tokendyn.open_movie(drift))
    assert bool(a.isotropic) and not bool(b.isotropic)
    assert abs(float(a.outward_excess)) < 0.01
    assert abs(float(b.outward_excess) - 0.04) < 0.01
    assert abs(float(a.rho_mean_all) - 1 / 24) < 0.002
    assert abs(float(a.step_correlation_mean)) < 0.01
    assert abs(float(a.step_correlation_sd) - 1 / np.sqrt(24)) < 0.02
    np.testing.assert_allclose(a.cos_decay.values, a.cos_decay_predicted.values, atol=2e-3)


def test_hypersphere_matches_numpy_reference(walk):
    ds = tokendyn.open_movie(walk, chunks=9)
    out = hypersphere_walk(ds, center="origin")
    x = ds.W.values.astype(np.float64)
    d = x.shape[2]
    a, rho = reference.radial_steps(x)
    np.testing.assert_allclose(out.rho_mean.values[1:], rho.mean(1), rtol=1e-6)
    np.testing.assert_allclose(out.radial_mean.values[1:], a.mean(1), rtol=1e-6)
    np.testing.assert_allclose(out.outward_fraction.values[1:], (a > 0).mean(1))
    assert float(out.radial_mean_all) == pytest.approx(a.mean(), rel=1e-6)
    assert float(out.t_pvalue) == pytest.approx(stats.ttest_1samp(a.ravel(), 0).pvalue, rel=1e-6)
    ks = stats.kstest(rho.ravel(), stats.beta(0.5, (d - 1) / 2).cdf).statistic
    assert abs(float(out.ks_statistic) - ks) < 2e-4  # the streamed histogram resolves 1/20000
    # angular decay: every token is in the sample here (128 < angle_tokens)
    np.testing.assert_allclose(out.cos_decay.values, reference.cos_decay(x, out.lag.values), rtol=1e-6)


def test_hypersphere_about_the_centroid_matches_numpy_reference(walk, tmp_path):
    """``center="centroid"``: positions about the cloud's centroid, so a translated walk gives
    the reference's numbers for the walk about its own centroid."""
    moved = tmp_path / "moved.h5"
    synthetic.translated(walk, moved, drift=0.3)
    ds = tokendyn.open_movie(moved, chunks=9)
    out = hypersphere_walk(ds, center="centroid")
    x = ds.W.values.astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    a, rho = reference.radial_steps(x)
    np.testing.assert_allclose(out.rho_mean.values[1:], rho.mean(1), rtol=1e-6)
    np.testing.assert_allclose(out.radial_mean.values[1:], a.mean(1), rtol=1e-6)
    assert float(out.radial_mean_all) == pytest.approx(a.mean(), rel=1e-6)
    np.testing.assert_allclose(out.cos_decay.values, reference.cos_decay(x, out.lag.values), rtol=1e-6)


def test_inhale_finds_the_planted_two_step_contraction(tmp_path):
    path = tmp_path / "inhale.h5"
    synthetic.inhale_cloud(path, frames=260, phases=((40, 60, 0.05), (90, 110, 0.04)), expand_from=150)
    out = inhale(tokendyn.open_movie(path))
    assert int(out.n_phases) == 2
    assert out.phase_start.values.tolist() == [41, 91] and out.phase_bottom.values.tolist() == [60, 110]
    np.testing.assert_allclose(out.phase_depth.values, [0.05, 0.04], rtol=1e-4)
    assert float(out.contraction_start) == 41 and float(out.minimum_step) in (110, 150)
    r = synthetic.planted_radius(260, 1.0, ((40, 60, 0.05), (90, 110, 0.04)), 150, 0.01)
    assert float(out.expansion_step) == np.flatnonzero(r > r[0])[0]
    np.testing.assert_allclose(out.radius.values, r, rtol=1e-5)


def test_inhale_with_noise_and_smoothing(tmp_path):
    path = tmp_path / "noisy.h5"
    synthetic.inhale_cloud(path, frames=260, noise=0.002, seed=2)
    width = 9
    out = inhale(tokendyn.open_movie(path), smooth=width, min_depth=0.01, tol=1e-4)
    assert int(out.n_phases) == 2
    assert np.all(np.abs(out.phase_start.values - [40, 90]) <= width)
    assert np.all(np.abs(out.phase_bottom.values - [60, 110]) <= width)


def test_no_inhale_gives_none_events():
    r = np.linspace(1, 2, 50)
    ev = find_inhale(r)
    assert ev["phases"] == [] and ev["expansion"] == 1


def test_cloud_geometry_matches_numpy_reference(walk):
    ds = tokendyn.open_movie(walk)
    out = cloud_geometry(ds, k=3, nn_frames=3)
    x = ds.W.values.astype(np.float64)
    centroid_norm, r_mean, r_rms, r_q = reference.geometry(x, (0.1, 0.5, 0.9))
    np.testing.assert_allclose(out.centroid_norm.values, centroid_norm, rtol=1e-6)
    np.testing.assert_allclose(out.radius_mean.values, r_mean, rtol=1e-6)
    np.testing.assert_allclose(out.radius_rms.values, r_rms, rtol=1e-6)
    np.testing.assert_allclose(out.radius_quantile.sel(quantile=0.5).values, r_q[1], rtol=1e-6)
    pv = reference.principal_variances(x, ds.token_class.values, 3)
    np.testing.assert_allclose(out.principal_variance.values, pv, rtol=1e-6)
    t = int(out.nn_frame.values[1])
    dist = np.linalg.norm(x[t][:, None] - x[t][None], axis=2)
    np.fill_diagonal(dist, np.inf)
    assert float(out.nn_distance.values[1]) == pytest.approx(dist.min(1).mean(), rel=1e-6)


def _elongated_movie(path, frames=6, n_tokens=400, dim=64, seed=3):
    """A rotated bf16 cloud whose principal variances fall over 4 decades, plus a round class."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scale = np.geomspace(1.0, 1e-2, dim)
    x = (rng.standard_normal((n_tokens, dim)) * scale) @ rotation.T + 2.0
    x[n_tokens // 2:] = rng.standard_normal((n_tokens - n_tokens // 2, dim))
    bits = []
    for _ in range(frames):
        bits.append(float32_to_bf16_bits(x.astype(np.float32)))
        x = x + rng.normal(0, 1e-3, x.shape)
    cls = np.repeat(np.array([0, 2], np.uint8), [n_tokens // 2, n_tokens - n_tokens // 2])
    cls[n_tokens // 2] = 1  # a lone dead token: in the radii and the centroid, in no class's variances
    return write_movie(str(path), np.stack(bits), token_class=cls)


def test_cloud_geometry_principal_variances_of_an_elongated_cloud(tmp_path, monkeypatch):
    """Float32 covariances are used where they hold rtol 1e-6 (the round class), float64 where the
    k-th variance is far below the first (the elongated one); float32 alone would not hold."""
    ds = tokendyn.open_movie(_elongated_movie(tmp_path / "long.h5"))
    x = ds.W.values.astype(np.float64)
    k = 40
    ref = reference.principal_variances(x, ds.token_class.values, k)
    assert (ref[:, 0, 0] / ref[:, 0, -1]).min() > 100 and (ref[:, 1, 0] / ref[:, 1, -1]).max() < 4
    redone = []
    centered = geometry_module.K.centered
    monkeypatch.setattr(geometry_module.K, "centered",
                        lambda frame, rows, out: redone.append(rows.size) or centered(frame, rows, out))
    out = cloud_geometry(ds, k=k, nn_frames=1)
    np.testing.assert_allclose(out.principal_variance.values, ref, rtol=1e-6)
    assert out["class"].values.tolist() == ["live", "phantom"]
    assert redone == [200] * ds.sizes["frame"]  # the elongated class, every frame; never the round one
    centroid_norm, r_mean, r_rms, r_q = reference.geometry(x, (0.1, 0.5, 0.9))
    np.testing.assert_allclose(out.centroid_norm.values, centroid_norm, rtol=1e-6)
    np.testing.assert_allclose(out.radius_mean.values, r_mean, rtol=1e-6)
    np.testing.assert_allclose(out.radius_rms.values, r_rms, rtol=1e-6)
    np.testing.assert_allclose(out.radius_quantile.values, r_q.T, rtol=1e-6)
    monkeypatch.setattr(geometry_module, "FLOAT32_SPREAD", np.inf)
    fast = cloud_geometry(ds, k=k, nn_frames=1).principal_variance.values
    np.testing.assert_allclose(fast[:, 1], ref[:, 1], rtol=1e-6)
    assert np.abs(fast[:, 0] / ref[:, 0] - 1).max() > 1e-6


def test_cloud_geometry_of_a_frame_with_a_nan(tmp_path):
    """A diverged frame gives NaN where its NaN reaches (the radii, its class's variances), and
    the other frames and classes are untouched."""
    bits = random_bf16_frames(6, n_tokens=40, n_dims=8, seed=4)
    bits[3, 30, 2] = 0x7FC0  # NaN, in a phantom token
    cls = np.repeat(np.array([0, 2], np.uint8), [25, 15])
    with pytest.warns(RuntimeWarning, match="1 NaN/Inf"):
        ds = tokendyn.open_movie(write_movie(str(tmp_path / "nan.h5"), bits, token_class=cls))
    out = cloud_geometry(ds, k=3, nn_frames=1)
    pv = out.principal_variance.values
    assert np.isnan(pv[3, 1]).all() and np.isfinite(pv[3, 0]).all() and np.isnan(out.radius_mean.values[3])
    x = ds.W.values.astype(np.float64)
    fine = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(pv[fine], reference.principal_variances(x[fine], cls, 3), rtol=1e-6)
    np.testing.assert_allclose(pv[3, 0], reference.principal_variances(x[3:4, :25], cls[:25], 3)[0, 0], rtol=1e-6)


def test_cloud_geometry_on_every_tenth_frame(walk):
    """A strided frame selection (the docs' advice for long movies) gives those frames' values."""
    ds = tokendyn.open_movie(walk)
    every = cloud_geometry(ds, k=3, nn_frames=2)
    tenth = cloud_geometry(ds, frames=slice(0, None, 10), k=3, nn_frames=2)
    assert tenth.step.values.tolist() == ds.step.values[::10].tolist()
    np.testing.assert_array_equal(tenth.principal_variance.values, every.principal_variance.values[::10])
    np.testing.assert_array_equal(tenth.radius_mean.values, every.radius_mean.values[::10])


def test_cloud_geometry_without_principal_variances(tmp_path, monkeypatch):
    """k=0 gives the same radii, quantiles and centroid (here with a lone token outside the
    classes) without computing a covariance; a k that is not a whole number >= 0 is refused."""
    ds = tokendyn.open_movie(_elongated_movie(tmp_path / "long.h5"))
    full = cloud_geometry(ds, k=3, nn_frames=1)
    monkeypatch.setattr(geometry_module, "_principal_variances", lambda *a: pytest.fail("covariances computed"))
    bare = cloud_geometry(ds, k=0, nn_frames=1)
    assert bare.principal_variance.shape == (ds.sizes["frame"], 2, 0)
    for name in ("centroid_norm", "radius_mean", "radius_rms", "radius_quantile", "nn_distance"):
        np.testing.assert_array_equal(bare[name].values, full[name].values, err_msg=name)
    for k in (-1, 2.5, True):
        with pytest.raises(AnalysisError, match="long.h5: cloud_geometry's k must be a whole number"):
            cloud_geometry(ds, k=k)


def test_token_and_frame_selection(walk):
    ds = tokendyn.open_movie(walk)
    out = comoving_displacement(ds, tokens=[0, 5, 9], frames=(10, 30), lags=None)
    assert out.sizes["token"] == 3 and out.sizes["frame"] == 20
    mask = np.zeros(ds.sizes["token"], bool)
    mask[:4] = True
    assert comoving_displacement(ds, tokens=mask, lags=None).sizes["token"] == 4
    with pytest.raises(AnalysisError, match="holds 0 of the movie.s 128 tokens"):
        comoving_displacement(ds, tokens="live")
    with pytest.raises(AnalysisError, match="unknown token class"):
        comoving_displacement(ds, tokens="zombie")
    with pytest.raises(AnalysisError, match="not in the movie"):
        comoving_displacement(ds, tokens=[10_000])


def test_inhale_radius_matches_numpy_reference(walk):
    ds = tokendyn.open_movie(walk, chunks=11)
    out = inhale(ds)
    np.testing.assert_allclose(out.radius.values, reference.radius(ds.W.values), rtol=1e-6)


def test_hypersphere_angular_decay_on_a_token_sample_matches_all_tokens(tmp_path):
    path = tmp_path / "iso.h5"
    synthetic.hypersphere_walk(path, n_tokens=600, dim=16, frames=60, seed=4)
    ds = tokendyn.open_movie(path)
    full = hypersphere_walk(ds, angle_tokens=10_000)
    part = hypersphere_walk(ds, angle_tokens=150, seed=1)
    # everything but the angular decay is computed on every token: identical
    for name in ("rho_mean_all", "ks_statistic", "t_pvalue", "sign_pvalue", "step_correlation_mean"):
        assert float(part[name]) == float(full[name]), name
    # a 150-token sample estimates the decay of 600 (it differs: it is a sample)
    np.testing.assert_allclose(part.cos_decay.values, full.cos_decay.values, atol=3e-3)
    assert not np.array_equal(part.cos_decay.values, full.cos_decay.values)


def test_merging_each_blocks_last_moves_keeps_the_latest():
    """lattice_motion folds each block's latest moves per token into the running ones (numba); the
    same as sorting the two lists together by frame, latest first."""
    from tokendyn.analysis._lattice_kernels import merge_last_moves

    rng = np.random.default_rng(0)
    depth = 3
    last = np.full((200, depth), -1, np.int64)
    small = np.zeros((200, depth), bool)
    for start in range(0, 100, 10):  # blocks of 10 frames, in order
        frames = np.sort(rng.choice(np.arange(start, start + 10), (200, depth)), axis=1)[:, ::-1].copy()
        frames[rng.random((200, depth)) < 0.5] = -1
        frames = -np.sort(-frames, axis=1)  # latest first, -1 padded
        flags = rng.random((200, depth)) < 0.5
        both_last = np.concatenate([frames, last], axis=1)
        both_small = np.concatenate([flags, small], axis=1)
        order = np.argsort(-both_last, axis=1, kind="stable")[:, :depth]
        expected_last = np.take_along_axis(both_last, order, axis=1)
        expected_small = np.take_along_axis(both_small, order, axis=1)
        merge_last_moves(last, small, frames, flags)
        np.testing.assert_array_equal(last, expected_last)
        valid = expected_last >= 0
        np.testing.assert_array_equal(small[valid], expected_small[valid])


def test_shared_centroids_are_those_each_block_would_compute(walk, monkeypatch):
    """Blocks share their frames' centroids with the block after them (its context), whatever order
    they run in; a copy sent elsewhere starts empty and computes its own."""
    import pickle

    from tokendyn.analysis import _kernel_base as K
    from tokendyn.analysis._centroids import KEPT_BLOCKS, SharedCentroids
    from tokendyn.analysis._frames import StoredFrames

    source = StoredFrames(tokendyn.open_movie(walk))
    bits = source.read(np.arange(source.shape[0]), np.empty(source.shape, source.dtype))
    rows = np.arange(0, source.shape[1], 2)
    lead, per = 3, 6
    starts = list(range(0, bits.shape[0] - per, per))
    computed = []
    original = K.block_centroids
    for order in (starts, starts[::-1]):  # in order (context known), then backwards (never known)
        shared = SharedCentroids(rows)
        for start in order:
            first = max(0, start - lead)
            block = bits[first:start + per]
            calls = []
            monkeypatch.setattr(K, "block_centroids", lambda b, r, calls=calls: calls.append(b.shape[0]) or original(b, r))
            got = shared.of(block, start - first, start)
            np.testing.assert_array_equal(got, original(block, rows))  # bit-identical
            computed.append(sum(calls))
    forward, backward = computed[:len(starts)], computed[len(starts):]
    assert forward == [per] * len(starts)  # the context came from the block before
    assert backward == [per + min(lead, s) for s in starts[::-1]]
    assert len(shared._blocks) <= KEPT_BLOCKS
    copy = pickle.loads(pickle.dumps(shared))
    assert not copy._blocks and np.array_equal(copy.rows, rows)
