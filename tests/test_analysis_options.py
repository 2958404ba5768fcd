"""Bad analysis options and selections, errors that name the file, and diverged (NaN/Inf) frames.

Every registered analysis: a value an option does not take is one AnalysisError naming the movie
and the option (never a traceback, a MemoryError, a hang or a silently wrong result); a selection
that leaves nothing is one too; a movie with NaN/Inf frames is computed through, those frames
marked in ``nonfinite_frame``, and the sums over frames leave them out.
"""
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import random_bf16_frames, write_movie

import tokendyn
from tokendyn import format as fmt
from tokendyn.analysis import base, find_inhale, registry
from tokendyn.errors import AnalysisError
from tokendyn.surfaces import cli
from tokendyn.synthetic import planted_radius

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN where undefined is an answer, not a warning
NAN, INF = 0x7FC0, 0x7F80  # bf16 bits
CLASSES = np.array([0] * 40 + [1] * 14 + [2] * 10, np.uint8)


def _movie(path, bits, classes=CLASSES):
    write_movie(str(path), bits, token_class=classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "the movie holds N NaN/Inf matrix entries"
        return tokendyn.open_movie(str(path))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 frames of 64 bf16 tokens (live, dead, phantom) in 8 dimensions."""
    return _movie(tmp_path_factory.mktemp("small") / "small.h5", random_bf16_frames(12))


def _path(ds):
    return ds.encoding["source"]


def _name(analysis):
    return registry.get(analysis).function.__name__


# ------------------------------------------------------------------------------------------ options
BAD = [0, -1, 2.5, 1e308, float("nan"), float("inf"), -float("inf"), 10**30, "abc", None, True, (), (0,),
       (float("nan"),), (10**30,), (-1,), "1,2"]


def test_every_option_of_every_analysis_has_a_rule():
    for name, spec in registry.analyses().items():
        assert set(spec.function.option_rules) == set(spec.options), name


@pytest.mark.parametrize("name", registry.names())
def test_every_option_takes_a_value_or_refuses_it_in_one_line(name, small):
    """Whatever the value, the analysis runs or raises one AnalysisError naming the movie and the option."""
    spec = registry.get(name)
    tokens = spec.report_tokens(small, None)
    for option in spec.options:
        for value in BAD:
            try:
                result = spec(small, tokens, **{option: value})
            except AnalysisError as exc:
                message = str(exc)
                assert exc.path == _path(small)
                assert message.startswith(f"{_path(small)}: {spec.function.__name__}'s {option} "), message
                assert "\n" not in message and len(message) < 300
            else:
                assert isinstance(result, xr.Dataset), (option, value)


REFUSED = [  # the cases of issue 22, and the values that used to pass silently or crash
    ("comoving", {"lags": (0,)}, "lags must be None or whole numbers of frames from 1 to"),
    ("comoving", {"lags": ()}, "lags must be None or whole numbers of frames"),
    ("comoving", {"lags": (1, 10**30)}, "lags must be None or whole numbers of frames"),
    ("comoving", {"reference": 10**30}, "reference must be a token class"),
    ("comoving", {"reference": [2.5]}, "reference must be a token class"),
    ("inhale", {"smooth": 1e308}, "smooth must be a whole number of frames"),
    ("inhale", {"min_depth": float("nan")}, "min_depth must be a fraction of the radius from 0 to 1"),
    ("inhale", {"min_depth": 2}, "min_depth must be a fraction of the radius from 0 to 1"),
    ("inhale", {"tol": -1}, "tol must be a finite number >= 0"),
    ("inhale", {"tol": "abc"}, "tol must be a finite number >= 0"),
    ("hypersphere", {"alpha": float("inf")}, "alpha must be a number between 0 and 1"),
    ("hypersphere", {"seed": -1}, "seed must be a whole number >= 0"),
    ("geometry", {"seed": 2.5}, "seed must be a whole number >= 0"),
    ("geometry", {"quantiles": ()}, "quantiles must be a sequence of numbers from 0 to 1"),
    ("lattice", {"thresholds": (float("nan"),)}, "thresholds must be a sequence of frozen fractions from 0 to 1"),
    ("lattice", {"thresholds": (2,)}, "thresholds must be a sequence of frozen fractions from 0 to 1"),
]


@pytest.mark.parametrize("name, kwargs, message", REFUSED)
def test_a_value_an_option_does_not_take_is_one_error_naming_movie_and_option(name, kwargs, message, small):
    with pytest.raises(AnalysisError) as caught:
        registry.get(name)(small, **kwargs)
    assert str(caught.value).startswith(f"{_path(small)}: {_name(name)}'s {message}")


@pytest.mark.parametrize("name", registry.names())
def test_an_option_name_the_analysis_does_not_have_is_one_error(name, small):
    with pytest.raises(AnalysisError, match=f"{_name(name)} has no option 'nosuch'; its options: ") as caught:
        registry.get(name)(small, nosuch=1)
    assert caught.value.path == _path(small)


def test_an_analysis_takes_a_dataset_not_a_path(small):
    with pytest.raises(AnalysisError, match="inhale takes a Dataset from tokendyn.open_movie"):
        tokendyn.analysis.inhale(_path(small))


def test_huge_whole_numbers_are_what_the_movie_can_hold(small):
    """A smoothing window, a tolerance or a lag longer than the movie is the longest it can be, not
    a MemoryError or an overflow."""
    n = small.sizes["frame"]
    inhale = registry.get("inhale")
    np.testing.assert_array_equal(inhale(small, smooth=10**30).radius_smoothed, inhale(small, smooth=n).radius_smoothed)
    lattice = registry.get("lattice")
    np.testing.assert_array_equal(lattice(small, tolerance=10**30).freeze_frame, lattice(small, tolerance=n).freeze_frame)
    walk = registry.get("hypersphere")
    np.testing.assert_array_equal(walk(small, max_lag=10**30).cos_decay, walk(small, max_lag=n - 1).cos_decay)
    geometry = registry.get("geometry")
    np.testing.assert_array_equal(geometry(small, nn_tokens=10**30).nn_distance, geometry(small, nn_tokens=64).nn_distance)
    comoving = registry.get("comoving")
    far = comoving(small, lags=(1, 1000)).msd
    assert np.isnan(far.sel(lag=1000)).all()  # no pair of frames is 1000 apart
    np.testing.assert_array_equal(far.sel(lag=1), comoving(small, lags=(1,)).msd.sel(lag=1))


# --------------------------------------------------------------------------------------- selections
SELECTIONS = [
    ({"frames": (5, 5)}, "the frames 5:5 hold 0 of the movie's 12 frames; this analysis needs at least"),
    ({"frames": slice(100, None)}, "the frames 100: hold 0 of the movie's 12 frames"),
    ({"frames": (1.5, 3)}, "frames must be a slice or (start, stop[, step]) of whole numbers"),
    ({"frames": "0:5"}, "frames must be a slice or (start, stop[, step]) of whole numbers"),
    ({"frames": slice(None, None, -1)}, "the frames ::-1 must run forward"),
    ({"frames": slice(0, 12, 0)}, "the frames 0:12:0 must run forward"),
    ({"tokens": [2.5]}, "the token selection must be a token class"),
    ({"tokens": [10**30]}, "the token selection must be a token class"),
    ({"tokens": [5, 999]}, "the token selection holds token ids not in the movie (ids 0..63): [999]"),
    ({"tokens": []}, "the token selection [] holds 0 of the movie's 64 tokens"),
    ({"tokens": np.ones(3, bool)}, "the token selection is a mask of 3 entries; a token mask needs 64 (one per token)"),
]


@pytest.mark.parametrize("name", registry.names())
@pytest.mark.parametrize("selection, message", SELECTIONS)
def test_a_selection_that_leaves_nothing_is_one_error_naming_the_movie(name, selection, message, small):
    with pytest.raises(AnalysisError) as caught:
        registry.get(name)(small, **selection)
    assert str(caught.value).startswith(f"{_path(small)}: {message}")


@pytest.mark.parametrize("name", registry.names())
def test_dead_tokens_of_a_movie_without_any(name, tmp_path):
    ds = _movie(tmp_path / "alive.h5", random_bf16_frames(4, n_tokens=8), np.zeros(8, np.uint8))
    with pytest.raises(AnalysisError) as caught:
        registry.get(name)(ds, tokens="dead")
    assert str(caught.value).startswith(f"{_path(ds)}: the token selection 'dead' holds 0 of the movie's 8 tokens; "
                                        "this analysis needs at least ")


@pytest.mark.parametrize("argv, message", [
    (["comoving", "-O", "lags=(0,)"], "comoving_displacement's lags must be None or whole numbers of frames from 1"),
    (["inhale", "-O", "smooth=1e308"], "inhale's smooth must be a whole number of frames"),
    (["hypersphere", "-O", "alpha=nan"], "hypersphere_walk's alpha must be a number between 0 and 1, not 'nan'"),
    (["geometry", "-O", "nosuch=1"], "cloud_geometry has no option 'nosuch'; its options: k, quantiles"),
    (["inhale", "--frames", "5:5"], "the frames 5:5 hold 0 of the movie's 12 frames"),
    (["comoving", "--frames", "100:"], "the frames 100: hold 0 of the movie's 12 frames"),
    (["lattice", "--tokens", "1,2,999"], "the token selection holds token ids not in the movie (ids 0..63): [999]"),
])
def test_the_command_line_prints_one_line_naming_the_movie(argv, message, small, capsys):
    assert cli.main(["analyse", _path(small), *argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokendyn: error: {_path(small)}: {message}") and err.count("\n") == 1, err
    assert "Traceback" not in err


# -------------------------------------------------------------------------------- errors name the file
def test_an_error_raised_inside_an_analysis_names_the_movie(small):
    @base.accepts(scale=base.number(0))
    def fails(ds, tokens="all", *, frames=None, scale=1.0, progress=None):
        """An analysis that finds the movie unusable."""
        raise AnalysisError("this movie cannot be analysed")

    with pytest.raises(AnalysisError) as caught:
        fails(small)
    assert caught.value.path == _path(small)
    assert str(caught.value) == f"{_path(small)}: this movie cannot be analysed"


def test_the_walk_on_a_one_dimensional_movie_is_an_error_naming_it(tmp_path):
    ds = _movie(tmp_path / "line.h5", random_bf16_frames(5, n_tokens=64, n_dims=2)[..., :1])
    spec = registry.get("hypersphere")
    assert not spec.applies(ds, "all")  # the report leaves it out
    with pytest.raises(AnalysisError) as caught:
        spec(ds, "all")
    assert str(caught.value) == (f"{_path(ds)}: hypersphere_walk needs W of 2 or more dimensions "
                                 "(a sphere in 1 has no directions to walk)")


def test_analyses_that_need_more_frames_do_not_apply_to_the_report(tmp_path):
    one = _movie(tmp_path / "one.h5", random_bf16_frames(1))
    assert registry.get("geometry").applies(one, "all")  # the shape of one frame's cloud
    for name in ("inhale", "comoving", "hypersphere", "lattice"):
        spec = registry.get(name)
        assert not spec.applies(one, spec.report_tokens(one, None)), name
        with pytest.raises(AnalysisError, match=r"the movie holds 1 frames; this analysis needs at least \d"):
            spec(one, spec.report_tokens(one, None))


# ----------------------------------------------------------------------------------- diverged frames
def _diverged(bits, kind):
    bits = bits.copy()
    if kind == "nan frame":
        bits[5] = NAN
    elif kind == "inf frames":
        bits[5:7] = INF
    elif kind == "one nan value":
        bits[4, 45, 3] = NAN  # a dead token
    elif kind == "nan tail":
        bits[8:] = NAN
    elif kind == "nan first frame":
        bits[0] = NAN
    bad = np.flatnonzero(((bits & 0x7FFF) >= INF).any(axis=(1, 2)))
    return bits, bad


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """The small movie, and copies of it with NaN/Inf frames, each with the frames that have one."""
    folder = tmp_path_factory.mktemp("diverged")
    clean = random_bf16_frames(12)
    out = {}
    for kind in ("nan frame", "inf frames", "one nan value", "nan tail", "nan first frame"):
        bits, bad = _diverged(clean, kind)
        out[kind] = (_movie(folder / f"{kind.replace(' ', '_')}.h5", bits), bad)
    return _movie(folder / "clean.h5", clean), out


@pytest.mark.parametrize("kind", ["nan frame", "inf frames", "one nan value", "nan tail", "nan first frame"])
@pytest.mark.parametrize("name", registry.names())
def test_every_analysis_computes_a_diverged_movie_and_marks_its_frames(name, kind, diverged):
    clean, movies = diverged
    ds, bad = movies[kind]
    spec = registry.get(name)
    tokens = "all"
    result = spec.standard_run(ds, tokens)
    marked = np.flatnonzero(result.nonfinite_frame.values)
    assert marked.tolist() == bad.tolist() and result.attrs["nonfinite_frames"] == bad.size
    assert not spec.standard_run(clean, tokens).nonfinite_frame.values.any()
    if kind == "nan first frame":
        return  # every displacement from frame 0 is undefined
    # per frame, the frames two or more away from a diverged one are those of the clean movie
    expected = spec.standard_run(clean, tokens)
    far = np.array([np.abs(bad - t).min() > 2 for t in range(ds.sizes["frame"])])
    for var_name, var in result.data_vars.items():
        if "frame" in var.dims and var_name != "frozen_fraction":  # frozen "for good" depends on the frames after
            np.testing.assert_array_equal(var.values[far], expected[var_name].values[far], err_msg=var_name)


def test_the_msd_of_a_diverged_movie_is_over_its_finite_pairs(diverged):
    _, movies = diverged
    ds, bad = movies["nan frame"]
    out = registry.get("comoving")(ds, lags=(1, 2, 3))
    x = ds.W.values.astype(np.float64)
    y = x - x.mean(axis=1, keepdims=True)
    classes = ds.token_class.values
    for lag in (1, 2, 3):
        sq = ((y[lag:] - y[:-lag]) ** 2).sum(axis=2)
        for cls in out["class"].values:
            pairs = sq[:, classes == fmt.class_code(str(cls))]
            assert float(out.msd.sel(lag=lag, **{"class": cls})) == pytest.approx(pairs[np.isfinite(pairs)].mean(),
                                                                                rel=1e-9)


@pytest.mark.parametrize("kind", ["nan frame", "inf frames"])
def test_the_walk_of_a_diverged_movie_tests_its_finite_steps(kind, diverged):
    clean, movies = diverged
    ds, bad = movies[kind]
    out = registry.get("hypersphere")(ds, "dead")
    frames = ds.sizes["frame"]
    steps = [t for t in range(1, frames) if t not in bad and t - 1 not in bad]
    assert out.attrs["steps_tested"] == len(steps) * 14  # 14 dead tokens, none of them at the origin
    assert int(out.rho_histogram.sum()) == out.attrs["steps_tested"]
    for name in ("ks_pvalue", "sign_pvalue", "t_pvalue", "radial_mean_all", "step_correlation_mean", "mean_radius"):
        assert np.isfinite(float(out[name])), name


def test_tokens_that_diverge_have_not_frozen(diverged):
    """A NaN stays the same NaN bits: that is divergence, not the lattice freezing."""
    clean, movies = diverged
    ds, _ = movies["nan tail"]
    out = registry.get("lattice")(ds)
    assert np.isnan(out.freeze_step.values).all() and np.isnan(out.freeze_onset.values).all()
    assert (out.hop.values[8:] == -1).all() and (out.changed.values[8:] == -1).all()
    assert np.isnan(out.temperature.values[8:]).all()
    assert (out.hop.values[1:8] >= 0).all()


def test_the_inhale_of_a_radius_with_nan_frames():
    """NaN frames are in no phase and are not the minimum; expansion is judged on the finite frames."""
    r = planted_radius(260, 1.0, ((40, 60, 0.05), (90, 110, 0.04)), 150, 0.01)
    clean = find_inhale(r)
    broken = r.copy()
    broken[[20, 200]] = np.nan
    got = find_inhale(broken)
    assert got["phases"] == clean["phases"] and len(got["phases"]) == 2
    assert got["minimum"] == clean["minimum"] and got["expansion"] == clean["expansion"]
    broken[0] = np.nan  # no R(0): no events
    got = find_inhale(broken)
    assert (got["phases"], got["minimum"], got["expansion"]) == ([], None, None)
