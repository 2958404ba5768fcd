"""What ``tokendyn compare`` reads from each analysis (curves, token values, events, the tokens it
runs on) and the uncertainty of every headline number, against planted ground truth
(tokendyn.synthetic) and float64 numpy references."""
import importlib
import math

import numpy as np
import pytest
from conftest import random_bf16_frames, write_movie

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import _hypersphere_kernels as HK
from tokendyn.analysis import comoving as comoving_module
from tokendyn.analysis import hypersphere as hypersphere_module
from tokendyn.analysis import registry
from tokendyn.analysis.base import token_mask
from tokendyn.analysis.hypersphere import beta_edges
from tokendyn.recorder import Recorder
from tokendyn.stats import block_average

inhale_module = importlib.import_module("tokendyn.analysis.inhale")  # the package exports the function
NAMES = ("comoving", "geometry", "hypersphere", "inhale", "lattice")
CLASSES = np.array([0] * 40 + [1] * 14 + [2] * 10, np.uint8)


def write_float(path, x, cls=None):
    """A float32 movie of positions ``x`` (frames, tokens, dim)."""
    cls = np.full(x.shape[1], fmt.CLASS_DEAD, np.uint8) if cls is None else cls
    with Recorder(path, token_class=cls, config={"model": "test"}, overwrite=True, title="test", flush_every=50) as rec:
        for t, frame in enumerate(x):
            rec.capture(t, W=frame.astype(np.float32))
    return str(path)


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    d = tmp_path_factory.mktemp("uncertainty")
    out = {"bf16": write_movie(str(d / "bf16.h5"), random_bf16_frames(30), token_class=CLASSES)}
    out["lattice"] = str(d / "lattice.h5")
    out["freeze"] = synthetic.lattice_freeze(out["lattice"], n_tokens=80, dim=12, frames=60, seed=5)["freeze_step"]
    out["inhale"] = str(d / "inhale.h5")
    out["inhale_truth"] = synthetic.inhale_cloud(out["inhale"], frames=200)
    out["noisy"] = str(d / "noisy.h5")
    synthetic.inhale_cloud(out["noisy"], frames=200, noise=0.002)
    out["iso"] = str(d / "iso.h5")
    synthetic.hypersphere_walk(out["iso"], n_tokens=300, dim=16, frames=80, seed=3)
    out["outward"] = str(d / "outward.h5")
    synthetic.hypersphere_walk(out["outward"], n_tokens=300, dim=16, frames=80, outward=0.2, seed=4)
    return out


def run(name, path, tokens=None):
    spec = registry.get(name)
    ds = tokendyn.open_movie(path, chunks=7)  # several blocks, each with its context
    tokens = spec.tokens_to_compare(ds) if tokens is None else tokens
    return spec, ds, spec.standard_run(ds, tokens)


def movie_of(name, movies):
    return movies["lattice"] if name == "lattice" else movies["bf16"]


# --- curves, token values, events: shapes, coordinates, units -----------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_curves_and_token_values_have_the_dims_coords_and_units_compare_needs(name, movies):
    spec, ds, result = run(name, movie_of(name, movies))
    assert spec.curves is not None and spec.token_values is not None or name == "inhale"
    for key, curve in spec.curves(result).items():
        assert curve.dims[0] == "frame" and set(curve.dims) <= {"frame", "class"}, key
        np.testing.assert_array_equal(curve["step"].values, ds["step"].values)
        assert curve.attrs.get("long_name") and curve.attrs.get("units"), key
        assert curve.sizes["frame"] == ds.sizes["frame"]
    if spec.token_values is None:
        return
    tokens = token_mask(ds, spec.tokens_to_compare(ds))
    for key, values in spec.token_values(result).items():
        assert values.dims == ("token",), key
        np.testing.assert_array_equal(values["token"].values, ds["token"].values[tokens])
        np.testing.assert_array_equal(values["token_class"].values, ds["token_class"].values[tokens])
        assert values.attrs.get("long_name") and values.attrs.get("units"), key


def test_the_expected_curves_token_values_and_events(movies):
    want = {"comoving": ({"step_displacement_mean"}, {"displacement", "step_displacement"}, None),
            "geometry": ({"radius_mean", "centroid_norm"}, {"radius"}, None),
            "hypersphere": ({"rho_mean", "outward_fraction"}, {"outward_excess", "rho_mean"}, None),
            "inhale": ({"radius"}, None, {"inhale": bool, "phases": int, "first_phase_start": float,
                                          "first_phase_bottom": float, "expansion_step": float}),
            "lattice": ({"temperature", "frozen_fraction"}, {"freeze_step", "frozen"},
                        {"half_frozen": bool, "freeze_onset_half": float})}
    for name, (curves, values, events) in want.items():
        spec, _, result = run(name, movie_of(name, movies))
        assert set(spec.curves(result)) == curves, name
        assert (set(spec.token_values(result)) if spec.token_values else None) == values, name
        got = spec.events(result) if spec.events else None
        assert (None if got is None else {k: type(v) for k, v in got.items()}) == events, name
    assert run("comoving", movies["bf16"])[2].step_displacement_mean.dims == ("frame", "class")
    assert run("lattice", movies["lattice"])[2].frozen_fraction.dims == ("frame", "class")


def test_comoving_token_values_are_the_last_frame_and_lazy_arrays_compute_only_its_block(movies, monkeypatch):
    ds = tokendyn.open_movie(movies["bf16"], chunks=4)
    x = ds.W.values.astype(np.float64)
    y = x - x.mean(1, keepdims=True)
    held = comoving_module.comoving_displacement(ds, per_token="memory")
    np.testing.assert_allclose(held.displacement_last.values, np.linalg.norm(y[-1] - y[0], axis=1), rtol=1e-6)
    np.testing.assert_allclose(held.step_displacement_last.values, np.linalg.norm(y[-1] - y[-2], axis=1), rtol=1e-6)
    calls = []
    kernel = comoving_module._tokens_block
    monkeypatch.setattr(comoving_module, "_tokens_block", lambda *a: calls.append(a[2]) or kernel(*a))
    lazy = comoving_module.comoving_displacement(ds, per_token="lazy")
    assert calls == [28]  # one block of 30 frames in blocks of 4: the last, not the whole movie
    np.testing.assert_array_equal(lazy.displacement_last.values, held.displacement_last.values)


# --- per-token values against numpy and planted truth --------------------------------------------

def reference_walk(x, center="centroid"):
    """Per token: mean radial step component over RMS step length, and mean radial fraction."""
    x = x.astype(np.float64)
    y = x - x.mean(1, keepdims=True) if center == "centroid" else x
    step = np.diff(y, axis=0)
    rhat = y[:-1] / np.linalg.norm(y[:-1], axis=2, keepdims=True)
    a = (step * rhat).sum(2)
    dd = (step ** 2).sum(2)
    return a.mean(0) / np.sqrt(dd.mean(0)), (a ** 2 / dd).mean(0)


@pytest.mark.parametrize("center", ["centroid", "origin"])
def test_per_token_outward_excess_and_radial_fraction_equal_numpy(movies, tmp_path, center):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(25, 40, 6)) * 0.05 + rng.normal(size=(1, 40, 6))
    ds = tokendyn.open_movie(write_float(tmp_path / "small.h5", x), chunks=6)
    out = hypersphere_module.hypersphere_walk(ds, "all", center=center, max_lag=3)
    excess, rho = reference_walk(ds.W.values, center)
    np.testing.assert_allclose(out.outward_excess_token.values, excess, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(out.rho_mean_token.values, rho, rtol=1e-6)
    np.testing.assert_array_equal(out.outward_excess_token["token"].values, np.arange(40))


def test_per_token_sums_add_up_to_the_kernels_totals(movies):
    ds = tokendyn.open_movie(movies["iso"])
    block = ds.W.values[:12]
    block.flags.writeable = False  # as the kernels get their blocks
    rows = np.arange(block.shape[1], dtype=np.int64)
    cents = block.astype(np.float64).mean(1)
    fields = HK.sphere_walk_block(block, 0, 0, rows, cents, False, rows[:0], np.array([1], np.int64),
                                  beta_edges(16, 4096), 200)
    acc, per_token = fields[3], fields[7]
    np.testing.assert_allclose(per_token.sum(0)[[0, 1, 3]], acc[[0, 2, 11]], rtol=1e-12)
    assert per_token[:, 2].sum() == acc[3] and per_token[:, 4].sum() == acc[12] == 11 * rows.size


def test_per_token_outward_excess_is_zero_on_an_isotropic_walk_and_positive_on_a_drift(movies):
    _, _, iso = run("hypersphere", movies["iso"])
    _, _, out = run("hypersphere", movies["outward"])
    e_iso, e_out = iso.outward_excess_token.values, out.outward_excess_token.values
    assert abs(e_iso.mean()) < 4 * e_iso.std() / math.sqrt(e_iso.size)
    planted = 0.2 / math.sqrt(1 + 0.2 ** 2)  # mean a = 0.2 step, RMS step sqrt(1 + 0.2^2) step
    assert abs(e_out.mean() - planted) < 4 * e_out.std() / math.sqrt(e_out.size)
    assert (e_out > 0).mean() > 0.95 and abs((e_iso > 0).mean() - 0.5) < 0.1
    assert iso.rho_mean_token.values.mean() == pytest.approx(1 / 16, rel=0.05)


def test_geometry_radius_per_token_equals_numpy_and_its_errors_are_the_bootstrap_se(movies):
    spec, ds, geo = run("geometry", movies["noisy"])  # a cloud whose centroid is far from the origin
    x = ds.W.values.astype(np.float64)
    c = x.mean(1)
    radii = np.linalg.norm(x - c[:, None], axis=2)
    np.testing.assert_allclose(spec.token_values(geo)["radius"].values, radii[-1], rtol=1e-6)
    np.testing.assert_allclose(geo.radius_first.values, radii[0], rtol=1e-6)
    n = radii.shape[1]
    head = spec.headline(geo)
    assert head["radius_mean_first_error"] == pytest.approx(radii[0].std() / math.sqrt(n), rel=0.1)
    assert head["radius_mean_last_error"] == pytest.approx(radii[-1].std() / math.sqrt(n), rel=0.1)
    along = x[-1] @ (c[-1] / np.linalg.norm(c[-1]))
    assert head["centroid_norm_last_error"] == pytest.approx(along.std() / math.sqrt(n), rel=0.1)
    # the centroid norm's error is its spread over resampled clouds: check against a numpy bootstrap
    rng = np.random.default_rng(0)
    norms = [np.linalg.norm(x[-1][rng.integers(0, n, n)].mean(0)) for _ in range(1000)]
    assert head["centroid_norm_last_error"] == pytest.approx(np.std(norms), rel=0.2)


def test_freeze_step_token_values_are_the_planted_freezes(movies):
    spec, ds, lat = run("lattice", movies["lattice"])
    planted = movies["freeze"]
    values = spec.token_values(lat)
    last = float(ds["step"].values[-1])
    assert np.isnan(planted).any() and np.isfinite(planted).any()
    np.testing.assert_array_equal(values["freeze_step"].values, np.where(np.isnan(planted), last + 1, planted))
    assert values["freeze_step"].attrs["never_frozen"] == last + 1 and "last step + 1" in values["freeze_step"].attrs["note"]
    np.testing.assert_array_equal(values["frozen"].values, np.isfinite(planted).astype(float))
    frozen = np.array([(np.nan_to_num(planted, nan=np.inf) <= t).mean() for t in ds["step"].values])
    events = spec.events(lat)
    assert events["half_frozen"] and events["freeze_onset_half"] == ds["step"].values[np.argmax(frozen >= 0.5)]
    # thresholds without 0.5: the event comes from the freeze frames, the same step
    other = spec(ds, "all", thresholds=(0.9,))
    assert spec.events(other) == events


def test_inhale_events_find_the_planted_phases(movies):
    spec, ds, inh = run("inhale", movies["inhale"])
    truth = movies["inhale_truth"]
    r = truth["radius"]
    expansion = int(np.flatnonzero(r <= r[0])[-1] + 1)
    (s1, e1, _), _ = truth["phases"]
    assert spec.events(inh) == {"inhale": True, "phases": 2, "first_phase_start": float(s1 + 1),
                                "first_phase_bottom": float(e1), "expansion_step": float(expansion)}
    flat = write_float(movies["inhale"].replace("inhale.h5", "flat.h5"), np.ones((5, 4, 3)) * np.arange(4)[:, None])
    none = spec.events(spec.standard_run(tokendyn.open_movie(flat), "all"))
    assert none["inhale"] is False and none["phases"] == 0 and math.isnan(none["first_phase_start"])


# --- the headline numbers' errors -----------------------------------------------------------------

def finite_positive(value):
    return value is not None and math.isfinite(value) and value > 0


def test_every_headline_number_carries_a_finite_positive_error(movies):
    head = registry.get("comoving").headline(run("comoving", movies["bf16"])[2])
    for c in ("live", "dead", "phantom"):
        assert finite_positive(head[c]["final_mean_step_displacement_error"])
        assert all(finite_positive(v) for v in head["msd_error"][c].values()) and \
            head["msd_error"][c].keys() == head["msd"][c].keys()
    head = registry.get("geometry").headline(run("geometry", movies["bf16"])[2])
    assert all(finite_positive(head[f"{k}_error"]) for k in ("radius_mean_first", "radius_mean_last",
                                                              "centroid_norm_last"))
    head = registry.get("hypersphere").headline(run("hypersphere", movies["outward"])[2])
    for k in ("rho_mean_all", "outward_fraction_all", "radial_mean_all", "outward_excess", "step_correlation_mean",
              "diffusion", "centroid_step_ratio"):
        assert k in head and finite_positive(head[f"{k}_error"]), k
    head = registry.get("lattice").headline(run("lattice", movies["lattice"])[2])
    for c in ("live", "dead"):
        assert finite_positive(head[c]["frozen_fraction_last_error"])
        assert head[c]["freeze_onset_error"].keys() == head[c]["freeze_onset"].keys()
        for t, onset in head[c]["freeze_onset"].items():
            assert finite_positive(head[c]["freeze_onset_error"][t]) == math.isfinite(onset), (c, t)
    head = registry.get("inhale").headline(run("inhale", movies["noisy"])[2])
    assert head["n_phases"] >= 1
    for k in ("radius_noise", "contraction_start", "minimum_step", "expansion_step"):
        assert finite_positive(head[f"{k}_error"]), k
    for phase in head["phases"]:
        assert all(finite_positive(phase[f"{k}_error"]) for k in ("start", "bottom", "depth", "drop"))


def test_class_mean_errors_are_the_bootstrap_se_of_the_tokens(movies):
    ds = tokendyn.open_movie(movies["bf16"])
    com = comoving_module.comoving_displacement(ds, lags=(1, 4))
    x = ds.W.values.astype(np.float64)
    y = x - x.mean(1, keepdims=True)
    last = np.linalg.norm(y[-1] - y[-2], axis=1)
    for code, c in enumerate(("live", "dead", "phantom")):
        mine = last[np.equal(CLASSES, code)]
        se = mine.std() / math.sqrt(mine.size)
        assert com.step_displacement_mean_last_error.sel({"class": c}).item() == pytest.approx(se, rel=0.15)
        for lag in (1, 4):
            own = ((y[lag:] - y[:-lag]) ** 2).sum(2).mean(0)[np.equal(CLASSES, code)]  # each token's MSD
            assert com.msd_error.sel(lag=lag, **{"class": c}).item() == pytest.approx(
                own.std() / math.sqrt(own.size), rel=0.15)


def test_lattice_errors_are_binomial_and_a_bootstrap_of_the_onset(movies):
    spec, ds, lat = run("lattice", movies["lattice"])
    planted = movies["freeze"]
    live = ds.token_class.values == fmt.CLASS_LIVE
    f = np.isfinite(planted[live]).mean()
    assert lat.frozen_fraction_last_error.sel({"class": "live"}).item() == pytest.approx(
        math.sqrt(f * (1 - f) / live.sum()), rel=1e-12)
    # numpy: resample the live tokens, take the first step at which half of the resample is frozen
    rng = np.random.default_rng(3)
    steps = ds["step"].values
    freeze = np.nan_to_num(planted[live], nan=np.inf)
    onsets = []
    for _ in range(2000):
        pick = freeze[rng.integers(0, freeze.size, freeze.size)]
        frozen = (pick[None, :] <= steps[:, None]).mean(1)
        onsets.append(steps[np.argmax(frozen >= 0.5)])
    assert lat.freeze_onset_error.sel({"class": "live", "threshold": 0.5}).item() == pytest.approx(np.std(onsets), rel=0.15)
    assert math.isnan(lat.freeze_onset_error.sel({"class": "live", "threshold": 0.99}).item()) == \
        math.isnan(lat.freeze_onset.sel({"class": "live", "threshold": 0.99}).item())


def correlated_walk(path, frames=256, tokens=100, dim=8, seed=0):
    """Tokens whose steps are mostly radial for long stretches of frames and mostly tangential for
    others: the per-frame radial fraction follows a slow AR(1) process (correlation time ~20 frames)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tokens, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    level, out = 0.0, []
    for _ in range(frames):
        out.append(x.copy())
        level = 0.95 * level + math.sqrt(1 - 0.95 ** 2) * rng.normal()
        rhat = x / np.linalg.norm(x, axis=1, keepdims=True)
        noise = rng.normal(scale=0.01 / math.sqrt(dim), size=x.shape)
        x = x + noise + 0.01 * math.exp(level) * rng.choice([-1.0, 1.0], (tokens, 1)) * rhat
    return write_float(path, np.stack(out))


def test_block_error_of_rho_mean_all_covers_a_correlated_series(movies, tmp_path):
    ds = tokendyn.open_movie(correlated_walk(tmp_path / "corr.h5"), chunks=16)
    h = hypersphere_module.hypersphere_walk(ds, "all")
    x = ds.W.values.astype(np.float64)
    y = x - x.mean(1, keepdims=True)
    step = np.diff(y, axis=0)
    rhat = y[:-1] / np.linalg.norm(y[:-1], axis=2, keepdims=True)
    a = (step * rhat).sum(2)
    rho = (a ** 2 / (step ** 2).sum(2)).mean(1)  # per frame, over the tokens
    np.testing.assert_allclose(h.rho_mean.values[1:], rho, rtol=1e-6)
    assert h.rho_mean_all_error.item() == pytest.approx(block_average(rho).error, rel=1e-6)
    naive = rho.std(ddof=1) / math.sqrt(rho.size)
    assert h.rho_mean_all_error.item() > 2 * naive
    assert registry.get("hypersphere").headline(h)["rho_mean_all_error"] == h.rho_mean_all_error.item()
    # an uncorrelated walk: blocking and the naive error agree
    iso = run("hypersphere", movies["iso"])[2]
    series = iso.rho_mean.values[1:]
    assert iso.rho_mean_all_error.item() == pytest.approx(series.std(ddof=1) / math.sqrt(series.size), rel=0.5)


def test_inhale_errors_are_the_resolution_and_the_noise(movies):
    assert inhale_module.resolution(np.array([0, 5, 10, 20]), 3) == pytest.approx(10 / math.sqrt(12))
    assert inhale_module.resolution(np.array([0, 5, 10]), 0) == pytest.approx(5 / math.sqrt(12))
    assert math.isnan(inhale_module.resolution(np.array([0, 5]), None))
    _, _, inh = run("inhale", movies["noisy"])
    updates = inh.phase_bottom.values - inh.phase_start.values + 1
    np.testing.assert_allclose(inh.phase_drop_error.values, inh.radius_noise.item() * np.sqrt(updates))
    np.testing.assert_allclose(inh.phase_z.values, inh.phase_drop.values / inh.phase_drop_error.values)
    # the planted depths lie within the errors
    assert np.all(np.abs(inh.phase_depth.values - 0.05) < 4 * inh.phase_depth_error.values)
    assert inh.contraction_start_error.item() == pytest.approx(1 / math.sqrt(12))


# --- the tokens compare runs on, and the summaries ------------------------------------------------

def test_hypersphere_compare_tokens_are_dead_and_phantom_together(movies, tmp_path):
    spec, ds, h = run("hypersphere", movies["bf16"])
    mask = spec.tokens_to_compare(ds)
    np.testing.assert_array_equal(mask, CLASSES != fmt.CLASS_LIVE)
    assert spec.applies(ds, mask) and h.attrs["tokens"] == "dead+phantom"
    values = spec.token_values(h)["outward_excess"]
    assert set(values["token_class"].values.tolist()) == {fmt.CLASS_DEAD, fmt.CLASS_PHANTOM}
    assert np.isfinite(values.values).all()
    # too few non-live tokens for a walk: the report's tokens
    lone = write_movie(str(tmp_path / "lone.h5"), random_bf16_frames(6, n_tokens=8), token_class=np.array(
        [0] * 7 + [1], np.uint8))
    ds = tokendyn.open_movie(lone)
    assert spec.tokens_to_compare(ds) == "all" and spec.applies(ds, spec.tokens_to_compare(ds))


def test_summary_lines_show_value_plus_minus_error(movies):
    for name, path in (("hypersphere", movies["outward"]), ("lattice", movies["lattice"]), ("inhale", movies["noisy"])):
        spec, _, result = run(name, path)
        lines = spec.summary_lines(result)
        assert "±" in lines[0][1] and "n/a" not in lines[0][1], (name, lines)
