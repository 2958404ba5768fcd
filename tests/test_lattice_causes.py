"""lattice_motion's freeze onsets and what they owe to the schedule (issue 23, point 3).

A freeze onset in the last steps of a schedule that decays to zero is the schedule's doing, not the
lattice's: planted movies (a schedule-driven freeze, a lattice freeze at a constant learning rate, a
movie without ``lr``), a float64 numpy reference for the onset over all tokens, and two short real
bf16-pure runs whose only difference is the learning rate's floor.
"""
import json

import numpy as np
import pytest

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import lattice_motion
from tokendyn.analysis._schedule import SCHEDULE_DRIVEN_LR_FRACTION
from tokendyn.analysis.lattice import _figures, _headline, _summary_lines
from tokendyn.format import BF16Bits
from tokendyn.recorder import Recorder


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bf16 (to nearest even) and back."""
    bits = fmt.float32_to_bf16_bits(np.asarray(x, np.float32)).astype(np.uint32) << np.uint32(16)
    return bits.view(np.float32)


def _half_spacing64(x: np.ndarray) -> np.ndarray:
    """Half the bf16 spacing at |x| (normal numbers), float64, written out independently of _schedule."""
    return 2.0 ** (np.floor(np.log2(np.abs(np.asarray(x, np.float64)))) - 8)


def _freeze_frames64(bits: np.ndarray) -> np.ndarray:
    """Per token the frame of its final bits (NaN when that is the last frame): plain numpy."""
    n = bits.shape[0]
    moved = np.any(bits[1:] != bits[:-1], axis=2)  # (frames - 1, tokens): moved into frame t + 1
    out = np.zeros(bits.shape[1])
    for i in range(bits.shape[1]):
        hit = np.flatnonzero(moved[:, i])
        out[i] = hit[-1] + 1 if hit.size else 0
    out[out == n - 1] = np.nan
    return out


def _onset64(freeze: np.ndarray, steps: np.ndarray, threshold: float) -> float:
    frozen = (np.nan_to_num(freeze, nan=np.inf)[None, :] <= np.arange(steps.size)[:, None]).mean(1)
    hit = np.flatnonzero(frozen >= threshold)
    return float(steps[hit[0]]) if hit.size else float("nan")


def decaying_adam(path, *, frames=101, n_tokens=48, dim=8, peak=0.02, config=True, seed=0):
    """Sign-like Adam updates of size lr(t) on bf16 weights, lr decaying linearly to exactly 0.

    Each coordinate takes ``x <- bf16(x + lr(t) * s)``, ``s = +-1``: it moves while lr(t) exceeds
    half its bf16 spacing and stops when the schedule brings lr below that, so every token freezes
    in the schedule's last steps."""
    rng = np.random.default_rng(seed)
    x = _bf16(rng.choice([-1, 1], (n_tokens, dim)) * rng.uniform(0.13, 0.45, (n_tokens, dim)))
    lr = peak * (1 - np.arange(frames) / (frames - 1))
    lr[0] = 0.0  # frame 0: before any update
    cfg = {"model": "decaying_adam", "lr": peak, "schedule": "linear", "min_lr_ratio": 0.0} if config else None
    cls = np.where(np.arange(n_tokens) < n_tokens // 2, fmt.CLASS_LIVE, fmt.CLASS_DEAD).astype(np.uint8)
    with Recorder(path, token_class=cls, config=cfg) as rec:
        for t in range(frames):
            if t:
                x = _bf16(x + np.float32(lr[t]) * rng.choice([-1, 1], x.shape).astype(np.float32))
            rec.capture(t, W=BF16Bits(fmt.float32_to_bf16_bits(x)), lr=float(lr[t]))
    return {"lr": lr, "peak": peak}


def constant_lattice(path, *, frames=80, n_tokens=40, dim=8, lr=1e-3, seed=1):
    """Tokens at |x| in [0.5, 1) (half spacing 2^-9, twice lr) hop +-1 site until planted freeze
    steps in the middle of the run, at a constant learning rate: a freeze the lattice explains."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-1, 1], (n_tokens, dim)) * rng.uniform(0.55, 0.95, (n_tokens, dim))
    ordered = fmt.float32_to_bf16_bits(x.astype(np.float32)).astype(np.int64)
    ordered = np.where(ordered & 0x8000, -(ordered & 0x7FFF), ordered)
    freeze = rng.integers(20, 50, n_tokens)

    def to_bits(o):
        return np.where(o < 0, 0x8000 | (-o), o).astype(np.uint16)

    cfg = {"model": "constant_lattice", "lr": lr, "schedule": "constant", "min_lr_ratio": 0.0}
    with Recorder(path, config=cfg) as rec:
        rec.capture(0, W=BF16Bits(to_bits(ordered)), lr=0.0)
        for t in range(1, frames):
            moving = t <= freeze
            hop = np.zeros((n_tokens, dim), np.int64)
            hop[np.arange(n_tokens), rng.integers(0, dim, n_tokens)] = rng.choice([-1, 1], n_tokens)
            ordered = ordered + np.where(moving[:, None], hop, 0)
            rec.capture(t, W=BF16Bits(to_bits(ordered)), lr=lr)
    return {"freeze_step": freeze.astype(float), "lr": lr}


@pytest.fixture(scope="module")
def decaying(tmp_path_factory):
    path = tmp_path_factory.mktemp("decay") / "decay.h5"
    truth = decaying_adam(path)
    return path, truth


def test_a_planted_schedule_driven_freeze_is_flagged(decaying):
    path, truth = decaying
    lat = lattice_motion(tokendyn.open_movie(path, chunks=16))
    frames = truth["lr"].size
    onsets = lat.freeze_onset_all.values
    assert np.isfinite(onsets).all() and (onsets > 0.8 * frames).all()  # in the schedule's last steps
    assert lat.freeze_onset_schedule_driven.values.all()
    assert (lat.freeze_onset_cause.values == "schedule").all()
    assert (lat.freeze_onset_lr_max_ratio.values < SCHEDULE_DRIVEN_LR_FRACTION).all()
    peak = truth["lr"].max()  # the peak is the largest recorded lr (here that of step 1)
    assert lat.attrs["schedule_ends_at_zero"] == "yes" and lat.attrs["peak_lr"] == peak
    # the lr of the first update after each onset, over the peak, from the planted schedule
    for k, onset in enumerate(onsets):
        expect = truth["lr"][int(onset) + 1] / peak
        assert lat.freeze_onset_lr_ratio.sel(group="all").values[k] == pytest.approx(expect, rel=1e-12)
    # a frozen token's next update could not move its median coordinate: at most half a spacing
    frozen = np.isfinite(lat.freeze_step.values)
    assert frozen.mean() > 0.9
    assert (lat.freeze_update_ratio.values[frozen] <= 1 + 1e-12).all()
    assert (lat.freeze_lr_ratio.values[frozen] < SCHEDULE_DRIVEN_LR_FRACTION).all()
    np.testing.assert_allclose(lat.lr_ratio.values, truth["lr"] / peak, rtol=1e-12)
    lines = dict(_summary_lines(lat))
    assert "schedule-driven, not a lattice freeze" in lines["lattice (all)"]
    assert "(schedule-driven, not a lattice freeze)" in lines["lattice (live   )"]
    head = _headline(lat)
    assert head["live"]["freeze_onset_schedule_driven"]["0.9"] is True
    assert head["live"]["freeze_onset_cause"]["0.5"] == "schedule"


def test_the_schedule_end_is_read_from_the_lr_without_a_config(tmp_path):
    path = tmp_path / "noconfig.h5"
    decaying_adam(path, config=False, frames=61, n_tokens=16)
    lat = lattice_motion(tokendyn.open_movie(path))
    assert lat.attrs["schedule_ends_at_zero"] == "yes"  # the last recorded lr is 0 after a positive peak
    assert lat.freeze_onset_schedule_driven.sel(group="all").values.all()


def test_a_lattice_freeze_at_constant_lr_is_not_flagged(tmp_path):
    path = tmp_path / "const.h5"
    truth = constant_lattice(path)
    ds = tokendyn.open_movie(path, chunks=8)
    lat = lattice_motion(ds)
    np.testing.assert_array_equal(lat.freeze_step.values, truth["freeze_step"])
    assert lat.attrs["schedule_ends_at_zero"] == "no"  # a constant schedule never reaches zero
    onsets = lat.freeze_onset_all.values
    assert np.isfinite(onsets).all()
    assert not lat.freeze_onset_schedule_driven.values.any()
    assert (lat.freeze_onset_cause.values == "lattice").all()
    np.testing.assert_array_equal(lat.freeze_onset_lr_ratio.values, 1.0)
    ratio = lat.freeze_onset_update_ratio.values
    assert (ratio < 1).all()
    # float64 reference: lr over half the spacing at the median |coordinate| of the onset frame
    values = ds.W.values.astype(np.float64)
    for k, onset in enumerate(onsets):
        median = np.median(np.abs(values[int(onset)]))
        assert lat.freeze_onset_coordinate.sel(group="all").values[k] == median
        assert ratio[-1, k] == pytest.approx(truth["lr"] / _half_spacing64(median), rel=1e-12)
    lines = dict(_summary_lines(lat))
    assert "a lattice freeze" in lines["lattice (all)"] and "schedule" not in lines["lattice (all)"]


def test_a_freeze_the_typical_update_would_cross_is_neither_schedule_nor_lattice(tmp_path):
    path = tmp_path / "big.h5"
    constant_lattice(path, lr=1e-2)  # five times half the spacing at |x| in [0.5, 1)
    lat = lattice_motion(tokendyn.open_movie(path))
    assert (lat.freeze_onset_update_ratio.values > 1).all()
    assert (lat.freeze_onset_cause.values == "other").all() and not lat.freeze_onset_schedule_driven.values.any()
    assert "not the lattice" in dict(_summary_lines(lat))["lattice (all)"]


def test_a_movie_without_lr_gives_nan_and_unknown(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    path = tmp_path / "nolr.h5"
    synthetic.lattice_freeze(path, n_tokens=40, dim=8, frames=60, seed=2)
    lat = lattice_motion(tokendyn.open_movie(path))
    assert "lr" not in tokendyn.open_movie(path)
    found = np.isfinite(lat.freeze_onset_all.values)
    assert found.any()
    for name in ("freeze_onset_lr_ratio", "freeze_onset_lr_max_ratio", "freeze_onset_update_ratio",
                 "freeze_lr_ratio", "freeze_update_ratio", "lr_ratio"):
        assert np.isnan(lat[name].values).all(), name
    assert np.isfinite(lat.freeze_onset_coordinate.sel(group="all").values[found]).all()  # no lr needed
    assert not lat.freeze_onset_schedule_driven.values.any()
    cause = lat.freeze_onset_cause.sel(group="all").values
    assert (cause[found] == "unknown").all() and (cause[~found] == "none").all()
    assert lat.attrs["schedule_ends_at_zero"] == "unknown" and np.isnan(lat.attrs["peak_lr"])
    assert "cause unknown" in dict(_summary_lines(lat))["lattice (all)"]
    json.dumps(_headline(lat), default=float)  # plain numbers, bools and strings
    assert _figures(lat, {})[0].id == "lattice"


@pytest.mark.parametrize("tokens,frames", [("all", None), ("live", None), ("all", slice(5, 70))])
def test_the_onset_over_all_tokens_matches_a_numpy_reference(tmp_path, tokens, frames):
    path = tmp_path / "lf.h5"
    synthetic.lattice_freeze(path, n_tokens=64, dim=10, frames=80, seed=7)
    ds = tokendyn.open_movie(path, chunks=7)
    lat = lattice_motion(ds, tokens, frames=frames, thresholds=(0.25, 0.5, 0.9, 1.0))
    mask = np.ones(ds.sizes["token"], bool) if tokens == "all" else ds.token_class.values == fmt.CLASS_LIVE
    cut = slice(None) if frames is None else frames
    bits = ds.W_bits.values[cut][:, mask]
    steps = ds.step.values[cut]
    freeze = _freeze_frames64(bits)
    np.testing.assert_array_equal(lat.freeze_frame.values, freeze)
    for k, threshold in enumerate((0.25, 0.5, 0.9, 1.0)):
        expect = _onset64(freeze, steps, threshold)
        got = lat.freeze_onset_all.values[k]
        assert (np.isnan(got) and np.isnan(expect)) or got == expect, threshold
    if tokens == "live":  # one class: "all" is that class
        np.testing.assert_array_equal(lat.freeze_onset_all.values, lat.freeze_onset.sel({"class": "live"}).values)
    assert list(lat.group.values) == [*map(str, lat["class"].values), "all"]


# --- a real run: the same short bf16-pure run, decaying to zero or to 10 % of its peak ---------

@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    pytest.importorskip("torch")
    from tokendyn.trainers import train

    root = tmp_path_factory.mktemp("real")
    paths = {}
    with pytest.MonkeyPatch.context() as mp:  # the cache for these runs only, not for the tests after
        mp.setenv("TOKENDYN_CACHE", str(root / "cache"))
        for name, floor in (("zero", 0.0), ("floor", 0.1)):
            paths[name] = str(root / f"{name}.h5")
            train("tiny", out=paths[name], steps=40, warmup=5, min_lr_ratio=floor, precision="bf16-pure",
                  progress=False, log=lambda s: None, sample_tokens=0)
    return paths


@pytest.mark.slow
def test_a_real_run_decaying_to_zero_is_flagged_and_one_with_a_floor_is_not(real_runs):
    zero = lattice_motion(tokendyn.open_movie(real_runs["zero"]))
    floor = lattice_motion(tokendyn.open_movie(real_runs["floor"]))
    assert zero.attrs["schedule_ends_at_zero"] == "yes" and floor.attrs["schedule_ends_at_zero"] == "no"
    onset = zero.freeze_onset_all.sel(threshold=0.9).item()
    assert 35 <= onset <= 39  # everything stops in the last steps, when the lr reaches zero
    assert zero.freeze_onset_schedule_driven.sel(group="all", threshold=0.9).item()
    assert zero.freeze_onset_lr_ratio.sel(group="all", threshold=0.9).item() < SCHEDULE_DRIVEN_LR_FRACTION
    assert not floor.freeze_onset_schedule_driven.values.any()
    assert "schedule-driven" not in dict(_summary_lines(floor))["lattice (all)"]
    assert "schedule-driven" in dict(_summary_lines(zero))["lattice (all)"]


@pytest.mark.slow
def test_a_real_run_gives_the_inhale_and_hypersphere_causes_their_numpy_values(real_runs):
    """On the short real run (floor 0.1), the cause columns agree with the movie itself: the inhale's
    per-phase learning rates and per-frame moved coordinates, the hypersphere's centroid steps, both
    recomputed in float64 numpy from the stored frames and the ``lr`` scalar."""
    from tokendyn.analysis import hypersphere_walk, inhale

    ds = tokendyn.open_movie(real_runs["floor"])
    bits = ds.W_bits.values
    lr = ds.lr.values / ds.lr.values.max()
    steps = ds.step.values
    inh = inhale(ds)
    moved = (bits[1:] != bits[:-1]).mean(axis=(1, 2))
    np.testing.assert_allclose(inh.coords_moved.values[1:], moved)
    np.testing.assert_allclose(inh.lr_ratio.values, lr)
    for i in range(int(inh.n_phases)):
        start, bottom = int(inh.phase_start.values[i]), int(inh.phase_bottom.values[i])
        window = lr[(steps >= start) & (steps <= bottom)]
        assert inh.phase_lr_min.values[i] == pytest.approx(window.min())
        assert inh.phase_lr_max.values[i] == pytest.approx(window.max())
        assert inh.phase_cause.values[i] in ("lattice", "learning", "unknown")
    h = hypersphere_walk(ds, tokens="dead")
    x = ds.W.values.astype(np.float64)
    centroid = x.mean(axis=1)
    np.testing.assert_allclose(h.centroid_step.values[1:], np.linalg.norm(np.diff(centroid, axis=0), axis=1),
                               rtol=1e-5)
    assert set(h.center.values.tolist()) == {"centroid", "origin"}
    assert np.isfinite(h.outward_excess_by_center.values).all()
    assert h.attrs["center"] == "centroid"
