"""The inhale's phases, one by one, with their cause: planted movies and a float64 numpy reference."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy import stats

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import find_inhale, inhale
from tokendyn.analysis._schedule import bf16_half_spacing
from tokendyn.analysis.inhale import _summary_lines
from tokendyn.errors import AnalysisError
from tokendyn.format import BF16Bits
from tokendyn.recorder import Recorder

inhale_module = importlib.import_module("tokendyn.analysis.inhale")  # the module (the package exports the function)

# --- planted movies -------------------------------------------------------------------------------

HALF_A, HALF_B = 2.0 ** -14, 2.0 ** -13  # half the bf16 spacing in [2^-6, 2^-5) and in [2^-5, 2^-4)


def _binade_bits(rng: np.random.Generator, shape: tuple[int, int], exponent: int) -> np.ndarray:
    """bf16 bits of values of magnitude in [2^exponent, 2^(exponent+1)), random signs, mantissas
    40..127 (room for 40 steps toward zero inside the binade)."""
    mantissa = rng.integers(40, 128, shape)
    bits = ((exponent + 127) << 7) | mantissa
    return (bits | np.where(rng.random(shape) < 0.5, 0x8000, 0)).astype(np.uint16)


def lattice_inhale(path, *, n_a: int = 12, n_b: int = 20, dim: int = 8, frames: int = 36, stop: int = 25,
                   lr_step: float = 1e-5, seed: int = 0, with_lr: bool = True) -> dict:
    """A bf16 movie whose radius contracts exactly where the warmup lr crosses half a spacing.

    ``2 * n_a`` rows ("A", mirrored pairs, so the centroid is exactly 0) have every coordinate in
    [2^-6, 2^-5), ``2 * n_b`` rows ("B") in [2^-5, 2^-4). The lr of the update to frame t is
    ``lr_step * t`` up to ``stop``, then 0; at each frame every coordinate whose half spacing that
    lr exceeds moves one lattice site toward zero. With the defaults A moves from frame 7
    (7e-5 > 2^-14) and B from frame 13 (1.3e-4 > 2^-13), both until frame 25.
    """
    rng = np.random.default_rng(seed)
    a = _binade_bits(rng, (n_a, dim), -6)
    b = _binade_bits(rng, (n_b, dim), -5)
    half = np.concatenate([a, b])
    bits = np.concatenate([half, half ^ 0x8000])  # x and -x
    is_a = np.concatenate([np.ones(n_a, bool), np.zeros(n_b, bool)] * 2)
    lr = np.array([lr_step * t if t <= stop else 0.0 for t in range(frames)])
    spacing_half = np.where(is_a, HALF_A, HALF_B)
    with Recorder(path, config={"model": "lattice_inhale"}, title="planted lattice inhale") as rec:
        rec.capture(0, W=BF16Bits(bits.copy()), **({"lr": 0.0} if with_lr else {}))
        for t in range(1, frames):
            moving = lr[t] > spacing_half
            bits = np.where(moving[:, None], bits - 1, bits).astype(np.uint16)  # magnitude one site down
            rec.capture(t, W=BF16Bits(bits.copy()), **({"lr": float(lr[t])} if with_lr else {}))
    return {"is_a": is_a, "lr": lr}


def bf16_walk(path, *, n: int = 40, dim: int = 6, frames: int = 30, seed: int = 1) -> np.ndarray:
    """A bf16 random walk with hops of 0-2 sites and a log-uniform per-frame lr; returns the lr."""
    rng = np.random.default_rng(seed)
    bits = fmt.float32_to_bf16_bits(rng.normal(0, 0.03, (n, dim)).astype(np.float32))
    bits[0, :2] = 0  # a zero coordinate: the finest spacing
    lr = np.concatenate([[0.0], 10 ** rng.uniform(-6, -3, frames - 1)])
    with Recorder(path, config={"model": "bf16_walk"}) as rec:
        rec.capture(0, W=BF16Bits(bits.copy()), lr=0.0)
        for t in range(1, frames):
            hop = rng.integers(-2, 3, (n, dim)) * (rng.random((n, dim)) < 0.4)
            magnitude = np.clip((bits & 0x7FFF).astype(np.int64) + hop, 1, 0x7F00)
            bits = ((bits & 0x8000) | magnitude).astype(np.uint16)
            rec.capture(t, W=BF16Bits(bits.copy()), lr=float(lr[t]))
    return lr


# --- float64 numpy references -----------------------------------------------------------------------

def reference_radius(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.linalg.norm(x - x.mean(1, keepdims=True), axis=2).mean(1)


def reference_crossing(x: np.ndarray, update: np.ndarray) -> dict[str, np.ndarray]:
    """The four per-frame fractions, frame by frame against the frame before, in float64."""
    x = x.astype(np.float64)
    out = {k: np.full(len(x), np.nan) for k in ("rows_moved", "rows_predicted", "coords_moved", "coords_predicted")}
    d = x.shape[2]
    for t in range(1, len(x)):
        changed = x[t] != x[t - 1]
        half = bf16_half_spacing(x[t - 1])
        out["rows_moved"][t] = np.mean(changed.sum(1) * 2 >= d)
        out["coords_moved"][t] = changed.mean()
        out["rows_predicted"][t] = np.mean(update[t] > np.median(half, axis=1))
        out["coords_predicted"][t] = np.mean(update[t] > half)
    return out


def reference_noise(r: np.ndarray) -> float:
    d2 = np.diff(np.asarray(r, np.float64), 2)
    return float(stats.median_abs_deviation(d2, scale="normal") / np.sqrt(2))


# --- the phases ------------------------------------------------------------------------------------

def test_phase_start_is_the_first_contracting_update():
    # R falls from frame 3 (its first lower value) to frame 5; before the fix phase_start said 2
    r = np.array([1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.8, 1.1, 1.2])
    ev = find_inhale(r, min_z=0)
    assert [(p["start"], p["bottom"]) for p in ev["phases"]] == [(3, 5)]
    assert ev["phases"][0]["depth"] == pytest.approx(0.3)
    assert ev["phases"][0]["drop"] == pytest.approx(0.3)


def test_planted_lattice_inhale_phases_start_exactly(tmp_path):
    path = tmp_path / "lattice.h5"
    lattice_inhale(path)
    ds = tokendyn.open_movie(path)
    out = inhale(ds)
    # A moves from the update to frame 7 (lr 7e-5 > 2^-14), B joins at 13 (1.3e-4 > 2^-13), both stop after 25
    assert out.phase_start.values.tolist() == [7, 13]
    assert out.phase_bottom.values.tolist() == [12, 25]
    assert float(out.contraction_start) == 7
    r = reference_radius(ds.W.values)
    np.testing.assert_allclose(out.radius.values, r, rtol=1e-12)
    np.testing.assert_allclose(out.phase_depth.values, [(r[6] - r[12]) / r[6], (r[12] - r[25]) / r[12]], rtol=1e-9)
    np.testing.assert_allclose(out.phase_drop.values, [r[6] - r[12], r[12] - r[25]], rtol=1e-9)
    # without splitting at the burst, the two are one run of falling frames
    one = inhale(ds, split=0)
    assert one.phase_start.values.tolist() == [7] and one.phase_bottom.values.tolist() == [25]


def test_planted_lattice_inhale_cause_columns(tmp_path):
    path = tmp_path / "lattice.h5"
    planted = lattice_inhale(path)
    out = inhale(tokendyn.open_movie(path))
    frac_a = planted["is_a"].mean()
    t = np.arange(36)
    truth = np.where((t >= 7) & (t <= 12), frac_a, np.where((t >= 13) & (t <= 25), 1.0, 0.0))
    truth[0] = np.nan
    for name in ("rows_moved", "rows_predicted", "coords_moved", "coords_predicted"):
        np.testing.assert_array_equal(out[name].values, truth, err_msg=name)
    np.testing.assert_allclose(out.lr_ratio.values, planted["lr"] / planted["lr"].max())
    np.testing.assert_allclose(out.phase_lr_min.values, [7 / 25, 13 / 25])
    np.testing.assert_allclose(out.phase_lr_max.values, [12 / 25, 1.0])
    np.testing.assert_allclose(out.phase_coords_predicted.values, [frac_a, 1.0])
    np.testing.assert_allclose(out.phase_rows_moved.values, [frac_a, 1.0])
    np.testing.assert_allclose(out.phase_coords_rise.values, [frac_a, 1 - frac_a])
    assert out.phase_cause.values.tolist() == ["lattice", "lattice"]
    assert np.all(out.phase_z.values > 3) and np.all(out.phase_p.values < 1e-3)
    assert out.attrs["bf16"] == 1 and out.attrs["peak_lr"] == pytest.approx(25e-5)


def test_crossing_fractions_match_numpy_reference(tmp_path):
    path = tmp_path / "walk.h5"
    lr = bf16_walk(path)
    ds = tokendyn.open_movie(path, chunks=7)
    x = ds.W.values
    got = inhale(ds)
    ref = reference_crossing(x, lr)
    for name, values in ref.items():
        np.testing.assert_array_equal(got[name].values, values, err_msg=name)
    # every third frame: each frame against the selected one before, lr summed over the stride
    every = inhale(ds, frames=slice(0, None, 3), min_z=-1e9)
    summed = np.concatenate([[np.nan], [lr[p - 2:p + 1].sum() for p in range(3, len(lr), 3)]])
    ref = reference_crossing(x[::3], summed)
    for name, values in ref.items():
        np.testing.assert_array_equal(every[name].values, values, err_msg=f"{name}, every third frame")


def test_noise_z_and_p_match_numpy_reference(tmp_path):
    path = tmp_path / "noisy.h5"
    synthetic.inhale_cloud(path, frames=200, noise=0.002, seed=3, phases=((40, 60, 0.05), (90, 110, 0.04)))
    out = inhale(tokendyn.open_movie(path), tol=1e-4, min_depth=0.01)
    r = out.radius.values
    noise = reference_noise(r)
    assert float(out.radius_noise) == pytest.approx(noise, rel=1e-12)
    assert int(out.n_phases) == 2
    for i in range(2):
        start = int(np.flatnonzero(out.step.values == out.phase_start.values[i])[0])
        bottom = int(np.flatnonzero(out.step.values == out.phase_bottom.values[i])[0])
        drop = r[start - 1] - r[bottom]
        z = drop / (noise * np.sqrt(bottom - start + 1))
        assert float(out.phase_z[i]) == pytest.approx(z, rel=1e-12)
        assert float(out.phase_p[i]) == pytest.approx(stats.norm.sf(z), rel=1e-9, abs=1e-300)
    # a float movie has no lattice and no lr: the cause is learning, the prediction NaN
    assert out.phase_cause.values.tolist() == ["learning", "learning"]
    assert np.isnan(out.coords_predicted.values).all() and np.isnan(out.phase_lr_min.values).all()


def test_noise_alone_is_no_phase():
    rng = np.random.default_rng(5)
    r = 1 + 1e-3 * rng.normal(size=400)  # white noise about a flat radius
    assert find_inhale(r)["phases"] == []  # nothing stands 3 noise sd out
    assert len(find_inhale(r, min_z=-np.inf)["phases"]) > 50  # every falling run, without the floor


def test_a_burst_splits_a_falling_run():
    # the fall rate steps from 1 to 3 per frame at frame 6, then ends at frame 10
    fall = np.array([0, 0, 0, 1, 1, 1, 3, 3, 3, 3, 0, 0, 0, 0], float)
    r = 100 - np.cumsum(fall)
    assert [(p["start"], p["bottom"]) for p in find_inhale(r)["phases"]] == [(3, 5), (6, 9)]
    assert [(p["start"], p["bottom"]) for p in find_inhale(r, split=0)["phases"]] == [(3, 9)]
    # a rise of the fall rate by less than half of itself is a wobble, no burst
    wobble = 100 - np.cumsum(np.array([0, 0, 0, 1, 1, 1, 1.3, 1.3, 1.3, 0, 0], float))
    assert [(p["start"], p["bottom"]) for p in find_inhale(wobble)["phases"]] == [(3, 8)]
    # a ramp of the fall rate (a warmup) is no burst
    ramp = 100 - np.cumsum(np.array([0, 0, 1, 2, 3, 4, 5, 6, 0, 0], float))
    assert [(p["start"], p["bottom"]) for p in find_inhale(ramp)["phases"]] == [(2, 7)]


def test_bf16_without_lr_has_unknown_cause(tmp_path):
    path = tmp_path / "nolr.h5"
    lattice_inhale(path, with_lr=False)
    out = inhale(tokendyn.open_movie(path))
    assert out.phase_start.values.tolist() == [7, 13]  # the phases do not need the lr
    assert out.phase_cause.values.tolist() == ["unknown", "unknown"]
    assert np.isnan(out.coords_predicted.values).all() and not np.isnan(out.coords_moved.values[1:]).any()


def test_centre_is_named_on_every_radius_variable(tmp_path):
    path = tmp_path / "lattice.h5"
    lattice_inhale(path)
    ds = tokendyn.open_movie(path)
    radius_like = ("radius", "radius_smoothed", "radius_noise", "phase_start", "phase_bottom", "phase_depth",
                   "phase_drop", "phase_z", "phase_p", "contraction_start", "minimum_step", "expansion_step")
    for measure, centre in (("mean", "centroid of the selected tokens"), ("rms", "centroid of the selected tokens"),
                            ("origin", "origin")):
        out = inhale(ds, measure=measure)
        assert out.attrs["centre"] == centre
        for name in radius_like:
            assert out[name].attrs.get("centre") == centre, (measure, name)
        for name, var in out.data_vars.items():
            assert var.attrs.get("long_name") and var.attrs.get("units"), name


def test_summary_and_headline_show_the_cause(tmp_path):
    path = tmp_path / "lattice.h5"
    lattice_inhale(path)
    out = inhale(tokendyn.open_movie(path))
    head = inhale_module._headline(out)
    assert [p["start"] for p in head["phases"]] == [7, 13]
    assert [p["cause"] for p in head["phases"]] == ["lattice", "lattice"]
    assert head["phases"][1]["lr_max"] == pytest.approx(1.0)
    assert head["centre"] == "centroid of the selected tokens"
    (label, text), = inhale_module._summary_lines(out)
    assert label == "inhale" and "7->12" in text and "13->25" in text and "lattice" in text and "of peak" in text


def test_figure_draws(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    path = tmp_path / "lattice.h5"
    lattice_inhale(path)
    (fig,) = inhale_module._figures(inhale(tokendyn.open_movie(path)), {})
    assert fig.id == "radius" and len(fig.figure.axes) == 4


@pytest.mark.parametrize("option, value", [("split", -1.0), ("min_z", "high")])
def test_bad_options(tmp_path, option, value):
    path = tmp_path / "lattice.h5"
    lattice_inhale(path, frames=10)
    with pytest.raises(AnalysisError, match=f"lattice.h5: inhale's {option}"):
        inhale(tokendyn.open_movie(path), **{option: value})


@pytest.mark.parametrize("lr, predicted", [(HALF_A, 0.0), (np.nextafter(HALF_A, 1), 1.0), (np.nextafter(HALF_A, 0), 0.0),
                                           (np.inf, 1.0), (np.nan, 0.0)])
def test_prediction_at_exactly_half_a_spacing(tmp_path, lr, predicted):
    # round to nearest keeps a value an update of exactly half a spacing away (a tie, to even or not)
    # only a larger update is predicted to cross
    path = tmp_path / "edge.h5"
    bits = _binade_bits(np.random.default_rng(0), (4, 4), -6)
    with Recorder(path) as rec:
        rec.capture(0, W=BF16Bits(bits), lr=0.0)
        rec.capture(1, W=BF16Bits(bits), lr=float(lr))
    out = inhale(tokendyn.open_movie(path))
    assert float(out.coords_predicted[1]) == predicted and float(out.rows_predicted[1]) == predicted
    assert float(out.coords_moved[1]) == 0.0


def test_a_phase_from_the_first_update_that_moves_every_coordinate_is_learning(tmp_path):
    """With lr above every half spacing from the first update, nothing is held back by the lattice:
    the phase starts at frame 1, has no rise to measure (NaN) and is "learning", not "lattice"."""
    path = tmp_path / "first.h5"
    lattice_inhale(path, lr_step=2e-4)  # 2e-4 > 2^-13 > 2^-14: A and B move from frame 1
    out = inhale(tokendyn.open_movie(path))
    assert int(out.n_phases) >= 1 and int(out.phase_start.values[0]) == 1
    assert np.isnan(out.phase_coords_rise.values[0])
    assert out.phase_cause.values[0] == "learning"
    assert "from the first update" in " ".join(v for _, v in _summary_lines(out))


def test_a_phase_from_the_first_update_that_leaves_coordinates_behind_is_unknown(tmp_path):
    path = tmp_path / "first_part.h5"
    lattice_inhale(path, lr_step=1e-4)  # frame 1: 1e-4 > 2^-14 (A moves), < 2^-13 (B pinned until frame 2)
    out = inhale(tokendyn.open_movie(path), split=0)
    assert int(out.phase_start.values[0]) == 1
    assert out.phase_cause.values[0] == "unknown"
