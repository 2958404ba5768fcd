"""The report's figures read at a glance: no label overlaps another, every panel with more than one
series has a legend (both checked in headless Chromium, on the text the browser lays out), the PCA
plane is fixed, the inhale shows, and the headline numbers say what they are measured against.
Also the lattice temperature's robust statistic against planted truth and a float64 reference."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from conftest import browser, random_bf16_frames

import tokendyn
from tokendyn import format as fmt
from tokendyn.format import BF16Bits
from tokendyn.recorder import Recorder

# The browser side of the figure check: per inline SVG figure, every pair of non-empty <text>
# boxes that intersect by more than 1 px both ways, and every panel (g.panel, data-series = its
# series, counted in matplotlib) with more than one series and no legend of its own or of the figure.
CHECK_JS = """
const out = {figures: 0, texts: 0, overlaps: [], missing_legend: [], panels: 0};
for (const svg of document.querySelectorAll('svg.figure')) {
  out.figures++;
  const where = svg.closest('section') ? svg.closest('section').id : '';
  const figureLegend = [...svg.querySelectorAll('g[id^="legend"]')].some(l => !l.closest('g.panel'));
  const texts = [...svg.querySelectorAll('text')]
    .map(t => ({t: t.textContent.trim(), r: t.getBoundingClientRect()}))
    .filter(x => x.t && x.r.width > 0 && x.r.height > 0);
  out.texts += texts.length;
  for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
    const a = texts[i].r, b = texts[j].r;
    const ix = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const iy = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (ix > 1 && iy > 1) out.overlaps.push([where, texts[i].t, texts[j].t]);
  }
  for (const g of svg.querySelectorAll('g.panel')) {
    out.panels++;
    const legend = !!g.querySelector('g[id^="legend"]') || figureLegend;
    if (+g.dataset.series > 1 && !legend) out.missing_legend.push(g.id);
  }
}
return out;
"""


def check_page(path: str, window: str = "1200,1600") -> dict:
    """Open a page in headless Chromium at a laptop's width and run :data:`CHECK_JS` on it."""
    driver = browser(window)
    try:
        driver.get("file://" + os.path.abspath(path))
        found = driver.execute_script(CHECK_JS)
        found["errors"] = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        found["scroll_width"] = driver.execute_script("return document.documentElement.scrollWidth")
        return found
    finally:
        driver.quit()


def _page(tmp_path, figures) -> str:
    from tokendyn.surfaces.figures import style, svg_markup

    with style():
        body = "".join(f'<section id="f{i}">{svg_markup(make(), prefix=f"f{i}-")}</section>'
                       for i, make in enumerate(figures))
    path = tmp_path / "page.html"
    path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>')
    return str(path)


# ------------------------------------------------------------------------------- the checker itself
def _crowded():
    """Two panels whose long y-labels run into the other panel's tick labels, and two lines without a legend."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(4, 2.5))  # no layout engine: the labels collide
    for ax in axes:
        ax.plot([0, 1e6], [0, 1e6])
        ax.plot([0, 1e6], [1e6, 0])
        ax.set_ylabel("a very long y label (units per something)")
    fig.text(0.3, 0.5, "overlapping words here")
    fig.text(0.32, 0.5, "overlapping words here")
    return fig


def _tidy():
    from tokendyn.surfaces.figures import subplots

    fig, axes = subplots(1, 2, height=3)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="one")
        ax.plot([0, 1], [1, 0], label="two")
        ax.set(xlabel="step", ylabel="value (units)", title="tidy")
        ax.legend()
    return fig


def test_the_checker_finds_overlapping_labels_and_missing_legends(tmp_path):
    found = check_page(_page(tmp_path, [_crowded]))
    assert found["figures"] == 1 and found["panels"] == 2
    assert ["f0", "overlapping words here", "overlapping words here"] in found["overlaps"]
    assert sorted(found["missing_legend"]) == ["f0-panel-0", "f0-panel-1"]


def test_the_checker_passes_a_tidy_figure(tmp_path):
    found = check_page(_page(tmp_path, [_tidy]))
    assert found["figures"] == 1 and found["texts"] > 10
    assert found["overlaps"] == [] and found["missing_legend"] == []


def test_series_count_leaves_out_markers_and_counts_error_bars_once():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokendyn.surfaces.figures import series_count

    fig, axes = plt.subplots(1, 4)
    axes[0].bar(["a", "b"], [1, 2], yerr=[0.1, 0.1])
    axes[0].axhline(0)
    axes[1].errorbar([1, 2, 3], [1, 2, 3], yerr=0.1, capsize=2)
    axes[1].errorbar([1, 2, 3], [2, 2, 3], yerr=0.1, capsize=2)
    axes[2].plot([1, 2], [1, 2])
    axes[2].axvline(1)
    axes[3].axvspan(1, 2, label="a phase")
    axes[3].scatter([1, 2], [1, 2])
    assert [series_count(ax) for ax in axes] == [1, 2, 1, 2]
    plt.close(fig)


# --------------------------------------------------------------------------------- a small movie
def _to_bits(ordered: np.ndarray) -> np.ndarray:
    return np.where(ordered < 0, 0x8000 | (-ordered), ordered).astype(np.uint16)


def _ordered(bits: np.ndarray) -> np.ndarray:
    b = bits.astype(np.int64)
    return np.where(b & 0x8000, -(b & 0x7FFF), b & 0x7FFF)


def schedule_movie(path, *, frames=60, n_live=40, n_dead=16, n_phantom=8, dim=8, zero_tail=6, seed=0):
    """A bf16 movie with loss and an lr that warms up, decays and is 0 for the last ``zero_tail``
    updates; every token hops +-1 site on random coordinates while lr > 0 and stands still after."""
    rng = np.random.default_rng(seed)
    n = n_live + n_dead + n_phantom
    cls = np.array([fmt.CLASS_LIVE] * n_live + [fmt.CLASS_DEAD] * n_dead + [fmt.CLASS_PHANTOM] * n_phantom, np.uint8)
    ordered = _ordered(fmt.float32_to_bf16_bits(rng.normal(0, 0.5, (n, dim)).astype(np.float32)))
    lr = np.concatenate([[0.0], np.linspace(1e-3, 2e-4, frames - 1 - zero_tail), np.zeros(zero_tail)])
    with Recorder(path, token_class=cls, config={"model": "schedule_movie", "unigram_entropy": 4.0},
                  scalars=["loss", "lr"]) as rec:
        for t in range(frames):
            if t and lr[t] > 0:
                ordered = ordered + np.where(rng.random((n, dim)) < 0.5, rng.choice([-1, 1], (n, dim)), 0)
            rec.capture(t, W=BF16Bits(_to_bits(ordered)), loss=float(5 * np.exp(-t / 20) + 1), lr=float(lr[t]))
    return str(path), lr


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    from tokendyn.surfaces.report import write_report

    root = tmp_path_factory.mktemp("figures")
    movie, lr = schedule_movie(root / "sched.h5")
    return write_report(movie, root / "rep", progress=False, player_frames=20), movie, lr


def test_the_report_has_no_overlapping_text_and_a_legend_wherever_two_series_are(small_report):
    out, _, _ = small_report
    found = check_page(out["html"])
    assert found["figures"] >= 5 and found["panels"] >= 10 and found["texts"] > 100
    assert found["overlaps"] == []
    assert found["missing_legend"] == []
    assert found["errors"] == []
    assert found["scroll_width"] <= 1200  # nothing wider than a laptop's window


def test_the_report_tables_hold_no_python_dicts_and_the_headlines_carry_units(small_report):
    out, _, _ = small_report
    page = open(out["html"], encoding="utf-8").read()
    assert "{'live'" not in page and '{"live"' not in page.split("<script")[0]
    assert re.search(r"live 40</span> · .*dead 16</span> · .*phantom 8</span>", page)
    assert '<section id="summary"><h2>Headline numbers</h2>' in page and "<pre>" not in page
    assert "embedding units" in page and "±" in page and "lr &gt; 0" in page
    assert 'src="data:image/png' not in page and page.count('<svg class="figure"') >= 5


def test_the_comoving_headline_is_measured_where_the_lr_is_above_zero(small_report):
    """The last updates have lr 0: the displacement there is 0 by construction, so the headline's
    late window must end at the last frame with lr > 0, and its value is a float64 mean over it."""
    out, movie, lr = small_report
    summary = json.load(open(out["summary"]))["comoving"]
    window = summary["late_window"]
    positive = np.flatnonzero(lr > 0)
    expected = positive[-int(np.ceil(0.1 * positive.size)):]
    assert (window["first_step"], window["last_step"]) == (expected[0], expected[-1])
    assert window["frames"] == expected.size and "lr > 0" in window["basis"]
    assert summary["live"]["final_mean_step_displacement"] == 0.0  # the schedule's doing
    ds = tokendyn.open_movie(movie)
    x = ds.W.values.astype(np.float64)
    y = x - x.mean(axis=1, keepdims=True)
    step = np.linalg.norm(np.diff(y, axis=0), axis=2)  # (frame - 1, token)
    live = ds.token_class.values == fmt.CLASS_LIVE
    reference = step[expected - 1][:, live].mean()
    assert summary["live"]["late_mean_step_displacement"] == pytest.approx(reference, rel=1e-6)
    per_token = step[expected - 1][:, live].mean(axis=0)
    assert summary["live"]["late_mean_step_displacement_error"] == pytest.approx(
        per_token.std(ddof=1) / np.sqrt(live.sum()), rel=0.25)
    assert summary["final_lr_ratio"] == 0.0


def test_the_lattice_headline_names_the_lr_at_which_the_cloud_froze(small_report):
    out, _, lr = small_report
    head = json.load(open(out["summary"]))["lattice"]["all"]
    assert head["threshold"] == 0.9 and head["frozen_fraction_last"] > 0.9
    onset = head["freeze_onset"]
    assert onset == pytest.approx(np.flatnonzero(lr > 0)[-1], abs=1)  # frozen when the lr reached 0
    assert head["freeze_onset_lr_ratio"] == 0.0 and head["freeze_onset_cause"] == "schedule"


# ------------------------------------------------------------------------------ figure contents
def test_the_pca_panels_share_their_axes(small_report):
    from tokendyn.surfaces.figures import style
    from tokendyn.surfaces.player import project_naming
    from tokendyn.surfaces.report import _pca_figure

    _, movie, _ = small_report
    ds = tokendyn.open_movie(movie)
    with style():
        fig = _pca_figure(project_naming(movie, ds, tokens="all", max_frames=20))
        limits = {(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}
        assert len(fig.axes) == 4 and len(limits) == 1
        assert fig.legends and "variance" in fig.axes[0].get_xlabel()


def test_the_inhale_figure_plots_r_over_r0_and_shades_each_phase(tmp_path):
    from tokendyn import synthetic
    from tokendyn.analysis import inhale
    from tokendyn.analysis._inhale_report import _figures
    from tokendyn.surfaces.figures import style

    path = tmp_path / "inhale.h5"
    synthetic.inhale_cloud(path, n_tokens=64, dim=8, frames=120, radius=3.0, phases=((20, 30, 0.01), (50, 60, 0.01)),
                           expand_from=80)
    result = inhale(tokendyn.open_movie(path))
    with style():
        (fig,) = _figures(result, {})
        whole = fig.figure.axes[0]
        r = whole.lines[0].get_ydata()
        assert r[0] == pytest.approx(1.0) and whole.get_ylabel() == "R / R(0)"
        spans = [p for p in whole.patches if not str(p.get_label()).startswith("_")]
        assert int(result.n_phases) == 2 and len(whole.patches) == 2 and len(spans) == 1  # one legend entry
        assert whole.get_legend() is not None


# ------------------------------------------------------------------------ the lattice temperature
def _reference_temperatures(bits: np.ndarray, classes: np.ndarray):
    """Float64 numpy: per frame and class, the mean and the median over the tokens of each token's
    mean squared sites per coordinate, and the median's order-statistic standard error."""
    o = _ordered(bits)
    q = (np.diff(o, axis=0).astype(np.float64) ** 2).mean(axis=2)  # (frame - 1, token)
    names = [c for c in range(len(fmt.TOKEN_CLASSES)) if (classes == c).any()]
    mean = np.zeros((bits.shape[0], len(names)))
    median = np.zeros_like(mean)
    error = np.zeros_like(mean)
    for j, c in enumerate(names):
        v = np.sort(q[:, classes == c], axis=1)
        n = v.shape[1]
        mean[1:, j] = v.mean(axis=1)
        median[1:, j] = np.median(v, axis=1)
        half = 1.959963984540054 * np.sqrt(n) / 2
        lo, hi = max(int(np.floor(n / 2 - half)), 0), min(int(np.ceil(n / 2 + half)), n - 1)
        error[1:, j] = (v[:, hi] - v[:, lo]) / (2 * 1.959963984540054)
    return mean, median, error


def test_temperature_median_matches_a_float64_numpy_reference(tmp_path):
    from conftest import write_movie

    from tokendyn.analysis import lattice_motion

    frames = random_bf16_frames(15, n_tokens=48, n_dims=8, seed=3)  # zeros, -0 and a wide exponent range
    classes = np.array([0] * 24 + [1] * 16 + [2] * 8, np.uint8)
    path = write_movie(str(tmp_path / "r.h5"), frames, token_class=classes)
    lat = lattice_motion(tokendyn.open_movie(path, chunks=4))  # several blocks: the context frame matters
    mean, median, error = _reference_temperatures(frames, classes)
    np.testing.assert_allclose(lat.temperature.values, mean, rtol=1e-12)
    np.testing.assert_allclose(lat.temperature_median.values, median, rtol=1e-12)
    np.testing.assert_allclose(lat.temperature_median_error.values[1:], error[1:], rtol=1e-12)
    assert lat.temperature_median.attrs["units"] == "sites^2"


def test_one_row_crossing_zero_moves_the_mean_a_million_fold_and_not_the_median(tmp_path):
    """Planted: every coordinate of every token hops exactly one site per frame (temperature 1);
    one dead token's coordinate swings between +2^-10 and -2^-10, ~3e4 sites of the fine lattice
    near zero for a step of 0.002 in value. The mean follows that one row; the median stays 1."""
    from tokendyn.analysis import lattice_motion

    rng = np.random.default_rng(0)
    n, d, frames = 41, 8, 12
    classes = np.array([0] * 20 + [1] * 21, np.uint8)
    ordered = _ordered(fmt.float32_to_bf16_bits(rng.uniform(1, 2, (n, d)).astype(np.float32)))
    near_zero = int(_ordered(fmt.float32_to_bf16_bits(np.float32([2.0 ** -10])))[0])
    path = tmp_path / "zero.h5"
    with Recorder(path, token_class=classes) as rec:
        for t in range(frames):
            ordered = ordered + rng.choice([-1, 1], (n, d)) * (t > 0)
            ordered[30, 0] = near_zero * (-1) ** t
            rec.capture(t, W=BF16Bits(_to_bits(ordered)))
    lat = lattice_motion(tokendyn.open_movie(path))
    dead = {"class": "dead"}
    crossing = (2 * near_zero) ** 2 / d  # the one row's own temperature
    assert 2 * near_zero > 28_000
    np.testing.assert_allclose(lat.temperature.sel(dead).values[1:], (crossing + (d - 1) / d + 20) / 21, rtol=1e-12)
    assert (lat.temperature.sel(dead).values[1:] > 4e6).all()
    np.testing.assert_array_equal(lat.temperature_median.sel(dead).values[1:], 1.0)
    np.testing.assert_array_equal(lat.temperature_median_error.sel(dead).values[1:], 0.0)
    np.testing.assert_array_equal(lat.temperature_median.sel({"class": "live"}).values[1:], 1.0)


def test_median_and_error_edges():
    from tokendyn.analysis.lattice import median_and_error

    assert np.isnan(median_and_error(np.array([]))[0])
    value, error = median_and_error(np.array([3.0, 1.0]))
    assert value == 2.0 and np.isnan(error)
    rng = np.random.default_rng(1)
    draws = [median_and_error(rng.normal(0, 1, 400)) for _ in range(300)]
    spread = np.std([v for v, _ in draws])
    assert np.mean([e for _, e in draws]) == pytest.approx(spread, rel=0.2)  # it is the median's spread


def test_the_compare_page_passes_the_same_figure_check(tmp_path):
    from test_compare import class_walk

    runs = [class_walk(tmp_path / f"a-{s}.h5", frames=12, n_dead=20, n_phantom=20, seed=s) for s in range(2)]
    runs.append(class_walk(tmp_path / "b.h5", frames=12, n_dead=20, n_phantom=20, seed=7, dead_step=0.03))
    out = tokendyn.compare(runs, tmp_path / "cmp", labels=["A=*a-*"], progress=False)
    page = open(out["html"], encoding="utf-8").read()
    assert 'src="data:image/png' not in page and "{'live'" not in page
    found = check_page(out["html"])
    assert found["figures"] >= 4 and found["overlaps"] == [] and found["missing_legend"] == []
    assert found["errors"] == [] and found["scroll_width"] <= 1200
