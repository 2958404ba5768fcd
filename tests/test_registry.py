"""The registry and the pattern: a toy analysis registered here, and nowhere else, shows up in
``tokendyn analyse``, the report and the train summary; option errors name the movie and the option;
every registered analysis's variables carry long_name and units."""
import json
import typing

import numpy as np
import pytest
import xarray as xr

import tokendyn
from tokendyn import format as fmt
from tokendyn.analysis import base, registry
from tokendyn.analysis.base import StoredFrames, annotate, class_groups, decoded, finish, frame_coords, merge, selection, stream
from tokendyn.errors import AnalysisError
from tokendyn.surfaces import cli


# --------------------------------------------------------------------------------- the toy analysis
def _norm_block(block, lead, start, rows, groups, n_groups):
    """The toy's kernel: per analysed frame and class, the mean and the RMS of the tokens' norms."""
    norms = np.linalg.norm(decoded(block[lead:])[:, rows].astype(np.float64), axis=2)
    by_class = [norms[:, groups == g] for g in range(n_groups)]
    return {"mean_norm": np.stack([n.mean(1) for n in by_class], axis=1),
            "rms_norm": np.stack([np.sqrt((n ** 2).mean(1)) for n in by_class], axis=1)}


def mean_norm(ds, tokens="all", *, frames=None, scale=1.0, progress=None):
    """Mean and RMS norm of the tokens of each class,
    frame by frame.

    A toy that follows the pattern: one streaming pass, block results merged by name.
    """
    sel = selection(ds, tokens, frames)
    groups, names = class_groups(sel.sub[fmt.TOKEN_CLASS].values)
    parts = stream(StoredFrames(ds), sel.positions, _norm_block, sel.rows, groups, len(names), progress=progress)
    got = merge(parts, {"mean_norm": "concat", "rms_norm": "concat"})
    out = xr.Dataset(coords={**frame_coords(sel.sub), "class": names})
    for field, long_name in (("mean_norm", "mean token norm per class"), ("rms_norm", "RMS token norm per class")):
        out[field] = annotate(xr.DataArray(scale * got[field], dims=("frame", "class")), long_name, "embedding units")
    out["mean_norm_all"] = annotate(xr.DataArray(scale * got["mean_norm"].mean()), "mean over frames and classes",
                                    "embedding units")
    return finish(out, "mean_norm", scale=scale)


def _toy_figures(result, colours):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for cls in result["class"].values:
        ax.plot(result.step, result.mean_norm.sel({"class": cls}), color=colours.get(str(cls)))
    return [registry.ReportFigure("norms", "Mean token norm per class", fig)]


TOY = registry.Analysis(
    "norms", mean_norm, run_options={"scale": 2.0},
    headline=lambda r: {str(c): {"mean_norm_last": r.mean_norm.sel({"class": c}).values[-1]} for c in r["class"].values},
    summary_lines=lambda r: [("norms", f"mean norm at the end {float(r.mean_norm.values[-1].mean()):.6g}")],
    figures=_toy_figures)


@pytest.fixture
def toy():
    """The toy registered for one test only (the other tests see the registry as it was)."""
    with registry.registered(TOY) as spec:
        yield spec
    assert "norms" not in registry.names()


def _expected_mean_norm(path, scale=1.0):
    """The toy's numbers straight from numpy: per frame and class, the mean norm."""
    ds = tokendyn.open_movie(path)
    norms = np.linalg.norm(ds.W.values.astype(np.float64), axis=2)
    classes = ds.token_class.values
    names = [name for code, name in enumerate(fmt.TOKEN_CLASSES) if (classes == code).any()]
    return {name: scale * norms[:, classes == fmt.class_code(name)].mean(1) for name in names}


def test_a_toy_analysis_is_listed_and_run_by_tokendyn_analyse(toy, movie, tmp_path, capsys):
    path = movie[0]
    assert cli.main(["analyse", path]) == 0
    listing = capsys.readouterr().out
    # the whole first paragraph is the help, on one line; the options come from the signature
    assert "norms        Mean and RMS norm of the tokens of each class, frame by frame." in listing
    assert "scale=1.0" in listing
    out = tmp_path / "norms.nc"
    assert cli.main(["analyse", path, "norms", "-O", "scale=3", "-o", str(out), "-q"]) == 0
    saved = xr.open_dataset(out, engine="h5netcdf")
    for name, expected in _expected_mean_norm(path, 3.0).items():
        np.testing.assert_allclose(saved.mean_norm.sel({"class": name}).values, expected, rtol=1e-12)
    assert saved.attrs["analysis"] == "mean_norm" and saved.rms_norm.attrs["units"] == "embedding units"
    capsys.readouterr()
    assert cli.main(["analyse", path, "mean_norm", "--tokens", "dead", "-q"]) == 0  # by its function's name too
    printed = capsys.readouterr().out  # a table: the headline numbers, then how to save them
    assert printed.startswith("norms (mean_norm) on ")
    row = next(line for line in printed.splitlines() if line.strip().startswith("mean norm all"))
    assert float(row.split("mean norm all")[1].split()[0]) == pytest.approx(_expected_mean_norm(path)["dead"].mean(), rel=1e-3)
    assert "-o norms.nc" in printed
    assert tokendyn.analysis.mean_norm is mean_norm  # registered analyses are attributes of the package


def test_a_toy_analysis_is_in_the_report(toy, movie, tmp_path):
    from tokendyn.surfaces.report import write_report

    out = write_report(movie[0], tmp_path / "rep", progress=False)
    summary = json.load(open(out["summary"]))
    expected = _expected_mean_norm(movie[0], 2.0)  # run as the registration says: scale=2
    assert set(summary["norms"]) == set(expected) == {"live", "dead", "phantom"}
    for name, curve in expected.items():
        assert summary["norms"][name]["mean_norm_last"] == pytest.approx(curve[-1], rel=1e-12)
    assert list(summary)[-1] == "norms"  # after the built-in analyses (order 100)
    page = open(out["html"], encoding="utf-8").read()
    assert '<section id="fig-norms"><h2>Mean token norm per class</h2>' in page
    assert page.index('id="fig-lattice"') < page.index('id="fig-norms"') < page.index('id="fig-pca"')


def test_a_toy_analysis_is_in_the_train_summary(toy, movie):
    from tokendyn.surfaces.summary import movie_summary

    lines = movie_summary(movie[0]).splitlines()
    final = np.mean([curve[-1] for curve in _expected_mean_norm(movie[0], 2.0).values()])
    assert lines[-1] == f"  norms                     mean norm at the end {final:.6g}"
    assert lines[-2].startswith("  lattice (phantom)         ")


def test_a_registration_for_a_with_block_is_undone_after_it(movie):
    before = registry.names()
    with registry.registered(TOY):
        assert registry.names() == [*before, "norms"]
        assert registry.get("mean_norm") is TOY
    assert registry.names() == before
    with pytest.raises(AnalysisError, match="unknown analysis 'norms'"):
        registry.get("norms")
    assert not hasattr(tokendyn.analysis, "mean_norm")


def test_entry_points_of_other_packages_are_registered(monkeypatch):
    from importlib import metadata

    class Point:
        def __init__(self, name, value, loaded):
            self.name, self.value, self._loaded = name, value, loaded

        def load(self):
            if isinstance(self._loaded, Exception):
                raise self._loaded
            return self._loaded

    points = [Point("plugin_norms", "plugin:mean_norm", mean_norm), Point("broken", "broken:x", ImportError("no x"))]
    monkeypatch.setattr(metadata, "entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP else [])
    try:
        with pytest.warns(RuntimeWarning, match="'broken' .* was not loaded: no x"):
            registry._load_entry_points()
        assert registry.get("plugin_norms").function is mean_norm
    finally:
        registry.unregister("plugin_norms")


# ------------------------------------------------------------------------------ the pattern's rules
def test_registration_checks_the_pattern_signature_and_names():
    def positional_progress(ds, tokens="all", frames=None, progress=None):
        """Help."""

    def no_docstring(ds, tokens="all", *, frames=None, progress=None):
        pass

    for fn, problem in ((positional_progress, "keyword-only progress=None"), (no_docstring, "needs a docstring")):
        with pytest.raises(TypeError, match=problem):
            registry.add(registry.Analysis("bad", fn))
    with pytest.raises(TypeError, match="'comoving' is tokendyn.analysis.comoving.comoving_displacement"):
        registry.add(registry.Analysis("comoving", mean_norm))
    assert "bad" not in registry.names()


def test_blocks_are_merged_by_name_as_declared():
    parts = [{"a": np.array([1.0, 2.0]), "n": 2, "big": np.zeros(3)}, {"a": np.array([3.0]), "n": 5, "big": None}]
    got = merge(parts, {"a": "concat", "n": "sum", "big": "skip"})
    assert got.keys() == {"a", "n"} and got["a"].tolist() == [1, 2, 3] and got["n"] == 7
    assert merge(parts, {"a": lambda v: len(v), "n": max, "big": "skip"}) == {"a": 2, "n": 5}
    with pytest.raises(TypeError, match=r"block 0 returned the fields \['a', 'big', 'n'\]"):
        merge(parts, {"a": "concat", "n": "sum"})


def test_a_result_without_long_name_or_units_is_refused(movie):
    def bare(ds, tokens="all", *, frames=None, progress=None):
        """A result whose variable says nothing about itself."""
        out = xr.Dataset({"x": xr.DataArray(np.arange(3.0), attrs={"long_name": "x"})})
        return out

    with pytest.raises(TypeError, match="bare returned variables without long_name and units: x"):
        registry.Analysis("bare", bare)(tokendyn.open_movie(movie[0]))
    with pytest.raises(TypeError, match="without long_name and units: x"):
        finish(bare(None), "bare")


def test_help_is_the_docstrings_whole_first_paragraph():
    assert registry.first_paragraph(mean_norm) == "Mean and RMS norm of the tokens of each class, frame by frame."
    for spec in registry.analyses().values():
        paragraph = spec.function.__doc__.strip().split("\n\n")[0]
        assert spec.help == " ".join(line.strip() for line in paragraph.splitlines())
        assert spec.help.endswith((".", ")")), spec.name  # a whole sentence, not cut mid-way
    listing = registry.help_text()
    assert "The shape of the token cloud, frame by frame: its radii, principal variances and spacing." in listing


def test_token_selection_is_a_real_type():
    kinds = typing.get_args(base.TokenSelection)
    assert str in kinds and type(None) in kinds and typing.Any not in kinds


def test_the_analyses_with_per_token_results():
    """tests/test_analysis.py checks per_token for each of these (read off the registry)."""
    assert {"comoving", "lattice"} <= {name for name, spec in registry.analyses().items() if "per_token" in spec.options}


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_analysis_annotates_every_variable(name, movie):
    spec = registry.get(name)
    ds = tokendyn.open_movie(movie[0])  # bf16, live, dead and phantom tokens: every analysis applies
    tokens = spec.report_tokens(ds, None)
    assert spec.applies(ds, tokens)
    result = spec.standard_run(ds, tokens)
    assert result.attrs["analysis"] == spec.function.__name__
    assert result.data_vars
    for var_name, var in result.data_vars.items():
        assert var.attrs.get("long_name") and var.attrs.get("units"), f"{name}: {var_name}"


# ---------------------------------------------------------------------------------- option errors
OPTION_ERRORS = [
    ("hypersphere", {"center": "foo"}, "center"),
    ("hypersphere", {"alpha": 2}, "alpha"),
    ("hypersphere", {"max_lag": 0}, "max_lag"),
    ("hypersphere", {"angle_tokens": -5}, "angle_tokens"),
    ("comoving", {"lags": (0, 2)}, "lags"),
    ("comoving", {"lags": "abc"}, "lags"),
    ("comoving", {"ref_frame": 99}, "ref_frame"),
    ("comoving", {"ref_frame": 1.5}, "ref_frame"),
    ("comoving", {"per_token": "disk"}, "per_token"),
    ("lattice", {"tolerance": -1}, "tolerance"),
    ("lattice", {"thresholds": 0.5}, "thresholds"),
    ("lattice", {"per_token": "disk"}, "per_token"),
    ("inhale", {"measure": "max"}, "measure"),
    ("inhale", {"smooth": 2.5}, "smooth"),
    ("geometry", {"k": -1}, "k"),
    ("geometry", {"quantiles": (0.5, 1.5)}, "quantiles"),
    ("geometry", {"nn_frames": -1}, "nn_frames"),
    ("geometry", {"nn_tokens": 1}, "nn_tokens"),
]


def test_option_errors_cover_every_built_in_analysis():
    assert {name for name, _, _ in OPTION_ERRORS} >= {"comoving", "hypersphere", "lattice", "inhale", "geometry"}


@pytest.mark.parametrize("name, kwargs, option", OPTION_ERRORS)
def test_option_errors_name_the_movie_and_the_option(name, kwargs, option, movie):
    spec = registry.get(name)
    with pytest.raises(AnalysisError) as caught:
        spec(tokendyn.open_movie(movie[0]), **kwargs)
    assert caught.value.path == movie[0]
    assert str(caught.value).startswith(f"{movie[0]}: {spec.function.__name__}'s {option} must be ")


@pytest.mark.parametrize("option, message", [
    ("center=foo", "hypersphere_walk's center must be 'origin' or 'centroid', not 'foo'"),
    ("alpha=foo", "hypersphere_walk's alpha must be a number between 0 and 1, not 'foo'"),
    ("max_lag=2.5", "hypersphere_walk's max_lag must be a whole number of frames >= 1, not 2.5"),
])
def test_the_cli_prints_option_errors_without_a_traceback(option, message, movie, capsys):
    assert cli.main(["analyse", movie[0], "hypersphere", "-O", option, "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"tokendyn: error: {movie[0]}: {message}\n"
