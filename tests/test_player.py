"""tokendyn play: the self-contained HTML player (in headless Chromium), its projections and frame
stride, --trace by text or id, and the GIF and MP4 outputs."""
import json
import os
import shutil
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, browser, one_line_error, run_cli

import tokendyn
from tokendyn.surfaces.cli import main
from tokendyn.surfaces.player import play, player_fragment, project

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from bench_player import measure_page, synthetic_movie  # noqa: E402

HOSTILE = "<img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real bf16-pure run of the tiny preset: loss, lr, live/dead/phantom tokens, lattice motion."""
    pytest.importorskip("torch")
    from tokendyn.trainers import train

    root = tmp_path_factory.mktemp("trained")
    os.environ.setdefault("TOKENDYN_CACHE", str(root / "cache"))
    path = str(root / "tiny.h5")
    train("tiny", out=path, steps=30, precision="bf16-pure", progress=False, log=lambda s: None, sample_tokens=0)
    return path


def rotating_cloud(path, n_tokens=200, frames=40, dim=8, turn=0.6, seed=0):
    """An anisotropic cloud turning by ``turn`` radians in its leading plane over the movie, with
    texts (token 0 is "▁the", token 1 a hostile string placed far out, phantoms empty) and counts."""
    from tokendyn.recorder import Recorder

    rng = np.random.default_rng(seed)
    cls = np.array([0] * (n_tokens * 6 // 10) + [1] * (n_tokens * 3 // 10), np.uint8)
    cls = np.concatenate([cls, np.full(n_tokens - cls.size, 2, np.uint8)])
    text = [f"\u2581w{i}" if c != 2 else "" for i, c in enumerate(cls)]
    text[0], text[1] = "\u2581the", HOSTILE
    base = rng.normal(size=(n_tokens, dim)) * np.geomspace(3, 0.3, dim)
    base[1, :2] = [12.0, 9.0]  # far from the others: nothing else under the mouse
    with Recorder(path, token_class=cls, token_text=text, token_count=np.arange(n_tokens) * 3,
                  config={"test": True}) as rec:
        for f in range(frames):
            a = turn * f / max(frames - 1, 1)
            x = base.copy()
            x[:, 0], x[:, 1] = np.cos(a) * base[:, 0] - np.sin(a) * base[:, 1], np.sin(a) * base[:, 0] + np.cos(a) * base[:, 1]
            rec.capture(f * 10, W=(x + rng.normal(scale=0.02, size=x.shape)).astype(np.float32),
                        loss=5.0 - f * 0.05, lr=1e-3)
    return path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    return rotating_cloud(str(tmp_path_factory.mktemp("cloud") / "cloud.h5"))


def page_data(path):
    page = open(path, encoding="utf-8").read()
    return page, json.loads(page.split('<script type="application/json" class="tdplayer-data">')[1].split("</script>")[0])


# --------------------------------------------------------------------------------------------- play
def test_play_html_is_a_self_contained_player(trained, tmp_path):
    out = play(trained, tmp_path / "cloud.html", max_frames=20, trace=[5])
    page, data = page_data(out)
    assert "<canvas" in page and "https://" not in page and "http://" not in page
    assert len(data["steps"]) == 20 and data["steps"][0] == 0 and data["steps"][-1] == 30
    assert [data["ids"][p] for p in data["pinned"]] == [5]
    assert data["text"] is not None and data["count"] is not None  # the trainer records both
    assert all(v is not None for v in data["lr"][1:])


def test_play_projection_is_fitted_once(trained):
    ds = tokendyn.open_movie(trained)
    a = project(ds, fit=0, max_frames=10)
    b = project(ds, frames=slice(0, 41), fit=0, max_frames=5)
    # the same plane whatever frames are shown: frame 0 lands on the same points
    np.testing.assert_allclose(a.xy[0], b.xy[0], rtol=1e-5, atol=1e-6)


def test_play_gif_has_one_image_per_frame(trained, tmp_path):
    from PIL import Image

    out = play(trained, tmp_path / "cloud.gif", max_frames=6)
    with Image.open(out) as im:
        assert im.n_frames == 6


def test_play_mp4_without_ffmpeg_says_so(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(tokendyn.TokendynError, match="MP4 needs ffmpeg"):
        play(trained, tmp_path / "cloud.mp4")
    r = run_cli("play", trained, "-o", str(tmp_path / "x.webm"))
    assert r.returncode == 2 and "unknown output type .webm" in r.stderr


# ------------------------------------------------------------------------------ stride, projections
def test_frame_stride_then_max_frames(cloud, tmp_path):
    ds = tokendyn.open_movie(cloud)
    p = project(ds, frames=slice(0, 40, 10))
    assert list(p.frames) == [0, 10, 20, 30] and list(p.steps) == [0, 100, 200, 300]
    capped = project(ds, frames=slice(1, None, 2), max_frames=4)  # frames 1, 3, ..., 39, then 4 evenly spaced
    assert list(capped.frames) == [1, 13, 27, 39]
    _, data = page_data(play(cloud, tmp_path / "s.html", frames=slice(0, 40, 5)))
    assert data["frames"] == list(range(0, 40, 5)) and data["steps"] == list(range(0, 400, 50))


def test_frame_stride_from_the_command_line(cloud, tmp_path, capsys):
    from tokendyn.surfaces.cli_common import parse_frames

    try:
        step = parse_frames("0:10:2").step
    except tokendyn.TokendynError:
        step = None
    if step != 2:
        pytest.skip("parse_frames does not take a step yet")
    assert main(["play", cloud, "--frames", "0:40:10", "-o", str(tmp_path / "c.html")]) == 0, capsys.readouterr().err
    assert page_data(tmp_path / "c.html")[1]["frames"] == [0, 10, 20, 30]


def test_projections_fixed_last_aligned(cloud):
    ds = tokendyn.open_movie(cloud)
    x = ds["W"].values.astype(np.float64)
    fixed = project(ds)
    # the fixed plane: the PCA of all frames together
    flat = x.reshape(-1, x.shape[-1])
    s = np.linalg.svd(flat - flat.mean(0), compute_uv=False)
    np.testing.assert_allclose(fixed.explained, s[:2] ** 2 / (s ** 2).sum(), rtol=1e-4)
    # the last frame's plane: its own PCA, so the last frame spreads most along PC1
    last = project(ds, projection="last")
    s = np.linalg.svd(x[-1] - x[-1].mean(0), compute_uv=False)
    np.testing.assert_allclose(last.explained, s[:2] ** 2 / (s ** 2).sum(), rtol=1e-4)
    np.testing.assert_allclose(last.xy[-1].var(0), s[:2] ** 2 / len(x[-1]), rtol=1e-3)
    # fixed: frame 0 lands on the same points whatever frames are shown (fitted on one frame)
    np.testing.assert_allclose(project(ds, fit=0).xy[0], project(ds, frames=slice(0, 9), fit=0).xy[0], atol=1e-5)


def test_aligned_projection_does_not_flip(tmp_path):
    """A cloud turning by 3 rad: each frame's own PCA axes turn with it and their signs flip (the
    leading axis ends where it began, reversed); aligned onto the previous frame, they never flip."""
    from tokendyn.surfaces.projection import _plane

    ds = tokendyn.open_movie(rotating_cloud(str(tmp_path / "turn.h5"), frames=30, turn=3.0))
    aligned = project(ds, projection="aligned")
    x = ds["W"].values.astype(np.float64)
    for f in (0, 15, 29):  # each frame's own plane: its two leading components' share of the variance
        s = np.linalg.svd(x[f] - x[f].mean(0), compute_uv=False)
        assert aligned.explained_per_frame[f].sum() == pytest.approx((s[:2] ** 2).sum() / (s ** 2).sum(), rel=1e-4)
    for f in range(1, 30):
        for axis in (0, 1):
            assert np.corrcoef(aligned.xy[f - 1, :, axis], aligned.xy[f, :, axis])[0, 1] > 0.99, (f, axis)
    raw = [(x[f] - x[f].mean(0)) @ _plane(np.cov(x[f].T))[0] for f in range(30)]
    assert min(np.corrcoef(raw[f - 1][:, 0], raw[f][:, 0])[0, 1] for f in range(1, 30)) < 0  # what aligning prevents


def test_unknown_projection_is_an_error(cloud):
    ds = tokendyn.open_movie(cloud)
    with pytest.raises(tokendyn.TokendynError, match="--projection takes fixed, last, aligned"):
        project(ds, projection="spin")


def test_neighbours_of_traced_tokens_in_the_full_space(cloud):
    ds = tokendyn.open_movie(cloud)
    p = project(ds, trace=["the"], neighbours=3, max_frames=5)
    rows = p.neighbours[0]  # token 0 is "▁the"
    x = ds["W"].values[p.frames[2]]
    d = np.linalg.norm(x - x[0], axis=1)
    d[0] = np.inf
    assert list(rows[2]) == list(np.argsort(d)[:3])


# ------------------------------------------------------------------------------------------ --trace
def test_trace_takes_texts_and_ids(cloud, tmp_path, capsys):
    ds = tokendyn.open_movie(cloud)
    from tokendyn.surfaces.player import resolve_tokens

    assert resolve_tokens(ds, ["the", "\u2581the", "w5", 7, "9"]) == [0, 5, 7, 9]
    assert main(["play", cloud, "--trace", "the, 7", "-o", str(tmp_path / "t.html")]) == 0
    data = page_data(tmp_path / "t.html")[1]
    assert [data["ids"][p] for p in data["pinned"]] == [0, 7]
    capsys.readouterr()
    line = one_line_error(capsys, ["play", cloud, "--trace", "nosuchtoken", "-o", str(tmp_path / "u.html")], cloud)
    assert "'nosuchtoken'" in line
    one_line_error(capsys, ["play", cloud, "--trace", "100000", "-o", str(tmp_path / "u.html")], cloud)
    assert not os.path.exists(tmp_path / "u.html")


def test_trace_the_on_a_trained_movie(trained, tmp_path):
    """What died with a ValueError traceback: --trace with a token text, typed without the ▁ mark."""
    r = run_cli("play", trained, "--trace", "the", "-o", str(tmp_path / "t.html"), "--max-frames", "5")
    assert r.returncode == 0, r.stderr
    data = page_data(tmp_path / "t.html")[1]
    assert [data["text"][p] for p in data["pinned"]] == ["\u2581the"]
    r = run_cli("play", trained, "--trace", "zzzz-not-a-token", "-o", str(tmp_path / "u.html"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert trained in r.stderr and "zzzz-not-a-token" in r.stderr


# ---------------------------------------------------------------------------------------- in Chromium
def _wait_ready(driver, page):
    driver.get("file://" + os.path.abspath(page))
    t0 = time.perf_counter()
    while driver.execute_script("return window.tdplayerReady === undefined") and time.perf_counter() - t0 < 30:
        time.sleep(0.05)


def test_player_in_chromium_hover_search_toggle_pin(cloud, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = play(cloud, tmp_path / "p.html", trace=[])
    driver = browser("1300,900")
    try:
        _wait_ready(driver, page)
        js = "const p = window.tdplayers.tdplayer; "
        canvas = driver.find_element(By.CSS_SELECTOR, ".tdplayer-canvas")
        centre = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width / 2, r.height / 2]",
                                       canvas)

        def point_at(token):
            x, y = driver.execute_script(js + "return p.screen(arguments[0])", token)
            return round(x - centre[0]), round(y - centre[1])

        # hover: the token's text (as text), id, class, count and radius
        ActionChains(driver).move_to_element_with_offset(canvas, *point_at(1)).perform()
        tip = driver.find_element(By.CSS_SELECTOR, ".tdplayer-tip")
        text = tip.text
        assert HOSTILE in text and "id 1 · live" in text and "count 3 in the corpus" in text and "radius " in text
        radius = float(text.split("radius ≈ ")[1].split()[0])
        w = tokendyn.open_movie(cloud)["W"].values[0, 1]
        assert radius == pytest.approx(float(np.linalg.norm(w)), rel=0.01)
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert driver.execute_script("return typeof window.pwned") == "undefined"

        # search by text ("the" finds "▁the") and by id
        box = driver.find_element(By.CSS_SELECTOR, ".tdplayer-search")
        box.send_keys("the")
        first = driver.find_element(By.CSS_SELECTOR, ".tdplayer-results li")
        assert first.text.startswith('"\u2581the" #0')
        box.clear()
        box.send_keys("42")
        assert driver.find_element(By.CSS_SELECTOR, ".tdplayer-results li").text.startswith('"\u2581w42" #42')
        first = driver.find_element(By.CSS_SELECTOR, ".tdplayer-results li")
        first.click()
        assert driver.execute_script(js + "return p.state.pinned.map(t => p.data.ids[t])") == [42]
        driver.execute_script(js + "p.togglePin(p.state.pinned[0])")

        # a class toggle hides the class
        dead = tokendyn.surfaces.palette.CLASS_COLOURS["dead"]
        assert driver.execute_script(js + "return p.pixels(arguments[0])", dead) > 50
        driver.find_element(By.CSS_SELECTOR, ".tdplayer-classes input[data-class='1']").click()
        assert driver.execute_script(js + "return p.pixels(arguments[0])", dead) == 0
        assert driver.execute_script(js + "return p.state.visible") == [True, False, True]

        # click pins a token, and its trail over the last N frames is drawn
        driver.execute_script(js + "p.setFrame(30)")
        dark = js + "return p.pixels('#000000', 40)"
        black = driver.execute_script(dark)
        ActionChains(driver).move_to_element_with_offset(canvas, *point_at(1)).click().perform()
        assert driver.execute_script(js + "return p.state.pinned") == [1]
        pinned = driver.execute_script(dark)
        trail = driver.find_element(By.CSS_SELECTOR, ".tdplayer-trail")
        trail.clear()
        trail.send_keys("0")
        no_trail = driver.execute_script(dark)
        assert pinned > no_trail > black  # the marker and label, then the trail on top
        near = driver.find_element(By.CSS_SELECTOR, ".tdplayer-near").text
        assert near.startswith("nearest in the plane: ")
        assert "step 300" in driver.find_element(By.CSS_SELECTOR, ".tdplayer-label").text
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_two_players_on_one_page_play_independently(cloud, tmp_path):
    from selenium.webdriver.common.by import By

    ds = tokendyn.open_movie(cloud)
    proj = project(ds, max_frames=10, trace=["the"])
    page = tmp_path / "two.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + player_fragment(proj, element_id="one", trace=[0]) + player_fragment(proj, element_id="two")
                    + "</body></html>", encoding="utf-8")
    driver = browser("1300,1800")
    try:
        _wait_ready(driver, page)
        driver.find_element(By.CSS_SELECTOR, "#two .tdplayer-fwd").click()
        frames = driver.execute_script("return [window.tdplayers.one.state.frame, window.tdplayers.two.state.frame]")
        assert frames == [0, 1]
        near = driver.find_element(By.CSS_SELECTOR, "#one .tdplayer-near").text
        assert near.startswith("nearest in the full space: ")
        assert driver.find_elements(By.CSS_SELECTOR, "#two .tdplayer-near") == []
    finally:
        driver.quit()
    with pytest.raises(tokendyn.TokendynError, match="element_id"):
        player_fragment(proj, element_id='x" onload="alert(1)')


def test_player_loads_fast_and_plays_at_30_fps(tmp_path):
    """8192 tokens x 200 frames (the full 2,000 frames: benchmarks/bench_player.py)."""
    movie = synthetic_movie(str(tmp_path / "big.h5"), n_tokens=8192, frames=200, dim=8)
    page = play(movie, tmp_path / "big.html", max_frames=200)
    m = measure_page(page, seconds=2.0)
    assert m["load_s"] < 3.0 and m["fps"] >= 30, m
