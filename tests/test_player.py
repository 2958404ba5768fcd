"""tokendyn play: the self-contained HTML player, GIF and MP4 outputs."""
import json
import os
import shutil

import numpy as np
import pytest
from conftest import run_cli

import tokendyn
from tokendyn.surfaces.player import play


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



# --------------------------------------------------------------------------------------------- play
def test_play_html_is_a_self_contained_player(trained, tmp_path):
    out = play(trained, tmp_path / "cloud.html", max_frames=20, trace=[5])
    page = open(out, encoding="utf-8").read()
    assert "<canvas" in page and "application/json" in page and "https://" not in page
    data = json.loads(page.split('<script type="application/json">')[1].split("</script>")[0])
    assert len(data["steps"]) == 20 and data["steps"][0] == 0 and data["steps"][-1] == 80
    assert data["trace_labels"] == ["token 5"]


def test_play_projection_is_fitted_once(trained):
    from tokendyn.surfaces.player import project

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
