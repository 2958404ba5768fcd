"""Hostile values, bad output paths, a diverged movie and a missing optional package: each a one-line
error naming the file (or a rendered page), never a traceback."""
import sys

import numpy as np
import pytest
from conftest import one_line_error, random_bf16_frames, write_movie

from tokendyn.recorder import Recorder
from tokendyn.surfaces.cli import main

CLASSES = np.array([0] * 12 + [1] * 6 + [2] * 6, np.uint8)


@pytest.fixture
def small(tmp_path):
    return write_movie(str(tmp_path / "m.h5"), random_bf16_frames(10, n_tokens=24, n_dims=6), token_class=CLASSES)


@pytest.fixture
def diverged(tmp_path):
    """A movie whose last four frames are NaN, as a run with lr=1e6 leaves it."""
    w = np.random.default_rng(0).normal(size=(10, 24, 6)).astype(np.float32)
    w[6:] = np.nan
    path = str(tmp_path / "diverged.h5")
    with Recorder(path, token_class=CLASSES) as rec:
        for i in range(10):
            rec.capture(i, W=w[i], loss=float(i) if i < 6 else float("nan"))
    return path


@pytest.mark.parametrize("args, message", [
    (["--fps", "0"], "fps must be a whole number >= 1, got 0"),
    (["--fps", "-3"], "fps must be a whole number >= 1"),
    (["--max-frames", "0"], "max_frames must be a whole number >= 1, got 0"),
])
def test_play_refuses_hostile_values(small, tmp_path, capsys, args, message):
    line = one_line_error(capsys, ["play", small, "-o", str(tmp_path / "p.html"), *args], "m.h5")
    assert message in line
    assert not (tmp_path / "p.html").exists()


def test_play_output_paths(small, tmp_path, capsys):
    assert "is a folder" in one_line_error(capsys, ["play", small, "-o", str(tmp_path)], str(tmp_path))
    missing = str(tmp_path / "no" / "p.html")
    assert "folder does not exist" in one_line_error(capsys, ["play", small, "-o", missing], missing)


def test_report_output_that_is_a_file(small, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep")
    one_line_error(capsys, ["report", small, "-o", str(target), "-q"], str(target))
    assert target.read_text() == "keep"


@pytest.mark.filterwarnings("ignore:.*NaN/Inf:RuntimeWarning")
def test_a_diverged_movie_renders_with_its_nan_frames_marked(diverged, tmp_path, capsys):
    assert main(["report", diverged, "-o", str(tmp_path / "rep"), "-q"]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "4 of 10 frames shown hold NaN or infinite values" in page and "from step 6" in page
    assert main(["play", diverged, "-o", str(tmp_path / "p.html")]) == 0
    assert '"finite": [true, true, true, true, true, true, false, false, false, false]' in \
        (tmp_path / "p.html").read_text()
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(line.startswith("tokendyn: warning:") for line in err.splitlines())


@pytest.mark.filterwarnings("ignore:.*NaN/Inf:RuntimeWarning")
def test_a_movie_with_no_finite_frame_is_a_clear_error(tmp_path, capsys):
    path = str(tmp_path / "allnan.h5")
    with Recorder(path, token_class=CLASSES) as rec:
        for i in range(3):
            rec.capture(i, W=np.full((24, 6), np.nan, np.float32))
    assert "no shown frame of W is finite" in one_line_error(capsys, ["play", path, "-o", str(tmp_path / "p.html")],
                                                               "allnan.h5")


def test_a_missing_optional_package_names_its_extra(small, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if zarr were not installed
    line = one_line_error(capsys, ["convert", small, str(tmp_path / "m.zarr")], "pip install 'tokendyn[distributed]'")
    assert "zarr" in line


def test_a_command_starts_without_importing_the_analyses_and_their_help_still_lists_them():
    """Building the parser must not import tokendyn.analysis (scipy, xarray, dask: about 1.7 s of
    every command's start-up); `tokendyn analyse --help` imports them to list them."""
    import subprocess

    code = ("import sys; from tokendyn.surfaces.cli import build_parser; build_parser(); "
            "print('tokendyn.analysis' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    from tokendyn.analysis import registry

    shown = subprocess.run([sys.executable, "-m", "tokendyn.surfaces.cli", "analyse", "--help"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    for name in registry.names():
        assert name in shown.stdout
