"""tokendyn analyse / report / play: outputs, errors, and the report in a real headless browser."""
import json
import os
import re

import numpy as np
import pytest
import xarray as xr
from conftest import browser, random_bf16_frames, run_cli

import tokendyn
from tokendyn import synthetic
from tokendyn.analysis import comoving_displacement, hypersphere_walk, inhale, registry
from tokendyn.surfaces.report import write_report


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real bf16-pure run of the tiny preset: loss, lr, live/dead/phantom tokens, lattice motion."""
    pytest.importorskip("torch")
    from tokendyn.trainers import train

    root = tmp_path_factory.mktemp("trained")
    os.environ.setdefault("TOKENDYN_CACHE", str(root / "cache"))
    path = str(root / "tiny.h5")
    train("tiny", out=path, steps=80, precision="bf16-pure", progress=False, log=lambda s: None, sample_tokens=0)
    return path


@pytest.fixture(scope="module")
def inhaling(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("inhale") / "inhale.h5")
    synthetic.inhale_cloud(path, frames=200, phases=((30, 45, 0.05), (70, 85, 0.04)), expand_from=120)
    return path


# ------------------------------------------------------------------------------------------ analyse
def test_analyse_lists_the_analyses_and_their_options(trained):
    r = run_cli("analyse", trained)
    assert r.returncode == 0
    for name in [*registry.names(), "lags=", "tolerance="]:
        assert name in r.stdout, name
    assert {"comoving", "hypersphere", "lattice", "inhale", "geometry"} <= set(registry.names())
    r = run_cli("analyse", "--help")
    assert r.returncode == 0 and "hypersphere" in r.stdout and "--frames" in r.stdout


def test_analyse_to_netcdf_matches_the_python_api(trained, tmp_path):
    out = tmp_path / "c.nc"
    r = run_cli("analyse", trained, "comoving", "-O", "lags=(1,3)", "--tokens", "live", "--frames", "5:60",
                "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    saved = xr.open_dataset(out, engine="h5netcdf")
    direct = comoving_displacement(tokendyn.open_movie(trained), "live", frames=slice(5, 60), lags=(1, 3)).load()
    assert saved.sizes["frame"] == 55 and saved.lag.values.tolist() == [1, 3]
    np.testing.assert_array_equal(saved.step_displacement.values, direct.step_displacement.values)
    np.testing.assert_array_equal(saved.msd.values, direct.msd.values)
    assert saved.step_displacement.attrs["units"] == "embedding units"


def test_analyse_hypersphere_to_netcdf_keeps_the_verdict(trained, tmp_path):
    out = tmp_path / "h.nc"
    assert run_cli("analyse", trained, "hypersphere", "-o", str(out), "-q").returncode == 0
    saved = xr.open_dataset(out, engine="h5netcdf")
    direct = hypersphere_walk(tokendyn.open_movie(trained)).load()
    assert int(saved.isotropic) == int(bool(direct.isotropic))
    assert float(saved.ks_pvalue) == pytest.approx(float(direct.ks_pvalue))


def test_analyse_to_csv_writes_the_per_frame_table(trained, tmp_path):
    import pandas as pd

    out = tmp_path / "lat.csv"
    assert run_cli("analyse", trained, "lattice", "-o", str(out), "-q").returncode == 0
    table = pd.read_csv(out, index_col="frame")
    assert len(table) == 81 and "temperature[live]" in table and "frozen_fraction[phantom]" in table
    ds = tokendyn.open_movie(trained)
    assert table["step"].tolist() == ds.step.values.tolist()


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "unknown analysis 'nosuch'"),
    (["comoving", "-O", "bogus=1"], "no option 'bogus'"),
    (["comoving", "-O", "lags"], "takes KEY=VALUE, got 'lags'"),
    (["comoving", "--frames", "x"], "--frames takes A:B"),
    (["comoving", "--tokens", "ghosts"], "unknown token class 'ghosts'"),
    (["comoving", "-o", "out.xlsx"], "unknown output type .xlsx"),
    (["lattice", "--tokens", "live"], None),  # fine on bf16: exit 0
])
def test_analyse_bad_arguments_give_clear_errors(trained, tmp_path, args, message):
    args = [a if not a.startswith("out.") else str(tmp_path / a) for a in args]
    r = run_cli("analyse", trained, *args, "-q")
    if message is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_analyse_lattice_on_a_float32_movie_is_a_clear_error(inhaling):
    r = run_cli("analyse", inhaling, "lattice", "-q")
    assert r.returncode == 2 and "needs a bfloat16 W" in r.stderr


def test_analyse_reads_a_movie_that_is_still_being_recorded(tmp_path):
    from tokendyn.format import BF16Bits
    from tokendyn.recorder import Recorder

    frames = random_bf16_frames(30)
    path = str(tmp_path / "live.h5")
    rec = Recorder(path, flush_every=1)
    try:
        for i in range(20):
            rec.capture(i, W=BF16Bits(frames[i]))
        rec.flush()
        out = tmp_path / "live.csv"
        r = run_cli("analyse", path, "lattice", "-o", str(out), "-q")
        assert r.returncode == 0, r.stderr
        assert len(open(out).read().strip().splitlines()) == 1 + 20
    finally:
        rec.close()


# ------------------------------------------------------------------------------------------- report
def test_report_writes_html_and_summary_with_the_headline_numbers(trained, tmp_path):
    out = write_report(trained, tmp_path / "rep", progress=False)
    summary = json.load(open(out["summary"]))
    assert summary["frames"] == 81 and summary["tokens_per_class"]["phantom"] == 64
    assert summary["loss_last"] < summary["loss_first"]
    assert set(summary["lattice"]) == {"live", "dead", "phantom", "all"}
    assert 0 <= summary["lattice"]["all"]["frozen_fraction_last"] <= 1
    late = summary["comoving"]["late_window"]
    assert "lr > 0" in late["basis"] and late["last_step"] <= 80 and late["frames"] >= 1
    assert summary["comoving"]["live"]["late_mean_step_displacement"] > 0
    assert set(summary["hypersphere"]) >= {"isotropic", "ks_pvalue", "sign_pvalue", "outward_excess"}
    assert summary["hypersphere"]["tokens"] == "dead"
    page = open(out["html"], encoding="utf-8").read()
    for fid in ("loss", "radius", "comoving", "geometry", "hypersphere", "lattice", "pca"):
        assert f'id="fig-{fid}"' in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert "{'live'" not in page and "<pre>" not in page  # tables, not dumps
    assert re.search(r"live \d+</span> · .*dead \d+</span> · .*phantom 64</span>", page)


def test_report_progress_moves_within_each_analysis(inhaling, capsys, monkeypatch):
    """The report's bar follows the frames each analysis streams, not only whole analyses."""
    import tokendyn.progress
    from tokendyn.surfaces.report import _run_analyses

    monkeypatch.setenv("TOKENDYN_PROGRESS", "lines")  # a line every 5 %: capsys is no terminal
    monkeypatch.setattr(tokendyn.progress, "REFRESH_SECONDS", 0.0)  # a synthetic movie streams in well under 0.5 s

    ds = tokendyn.open_movie(inhaling, chunks=20)  # 10 blocks per analysis
    results = _run_analyses(ds, None, None, progress=True)
    shown = [float(n) for n in re.findall(r"\| (\d+\.\d)/\d+ analyses", capsys.readouterr().err)]
    steps = len(results)
    assert shown[-1] == steps
    assert any(not value.is_integer() for value in shown)  # a fraction: inside an analysis
    assert shown == sorted(shown)


def test_report_marks_the_planted_inhale_and_skips_lattice_on_float32(inhaling, tmp_path):
    r = run_cli("report", inhaling, "-o", str(tmp_path / "rep"), "-q")
    assert r.returncode == 0, r.stderr
    summary = json.load(open(tmp_path / "rep" / "summary.json"))
    phases = summary["inhale"]["phases"]
    assert len(phases) == 2
    assert [p["start"] for p in phases] == pytest.approx([30, 70], abs=3)  # report smooths over 3 frames
    assert "lattice" not in summary
    assert 'id="fig-lattice"' not in open(tmp_path / "rep" / "index.html").read()
    direct = inhale(tokendyn.open_movie(inhaling), smooth=3)
    assert summary["inhale"]["expansion_step"] == float(direct.expansion_step)


def test_report_loads_in_a_headless_browser_with_every_figure_and_no_console_errors(trained, tmp_path):
    out = write_report(trained, tmp_path / "rep", progress=False)
    driver = browser()
    try:
        driver.get("file://" + os.path.abspath(out["html"]))
        figures = driver.find_elements("css selector", "section svg.figure")
        assert len(figures) == 7
        for svg in figures:  # laid out at the page's width, its labels as text
            assert driver.execute_script("return arguments[0].getBoundingClientRect().width > 600", svg)
            assert driver.execute_script("return arguments[0].querySelectorAll('text').length > 10", svg)
        label = driver.find_element("css selector", ".tdplayer-label")
        first = label.text
        assert first.startswith("step 0")
        driver.find_element("css selector", ".tdplayer button").click()
        driver.implicitly_wait(0)
        import time

        time.sleep(1.0)
        assert label.text != first  # the player advanced
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert os.path.getsize(tmp_path / "report.png") > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_report_and_play_read_a_movie_that_is_still_being_recorded(tmp_path):
    from tokendyn.format import BF16Bits
    from tokendyn.recorder import Recorder

    frames = random_bf16_frames(30, n_tokens=64, n_dims=8)
    cls = np.array([0] * 40 + [1] * 14 + [2] * 10, np.uint8)
    path = str(tmp_path / "live.h5")
    rec = Recorder(path, token_class=cls, flush_every=1, scalars=["loss"])
    try:
        for i in range(12):
            rec.capture(i, W=BF16Bits(frames[i]), loss=10.0 - i)
        rec.flush()
        r = run_cli("report", path, "-o", str(tmp_path / "rep"), "-q")
        assert r.returncode == 0, r.stderr
        assert json.load(open(tmp_path / "rep" / "summary.json"))["frames"] == 12
        r = run_cli("play", path, "-o", str(tmp_path / "c.html"))
        assert r.returncode == 0, r.stderr
    finally:
        rec.close()


def test_the_package_re_exports_the_surfaces():
    for name in ("write_report", "play", "convert", "save_result", "run_sweep", "open_movie", "Recorder"):
        assert callable(getattr(tokendyn, name)), name
