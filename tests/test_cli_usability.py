"""The command line as a new user meets it (issue 26): options that need no shell quoting, a result
printed as a table, progress bars that tell the truth and keep logs small, kernels compiling said
so, Ctrl-C's last loss, an example in every --help, zarr copies taken as movies, ``report a b``
pointing to ``compare``, and frame strides."""
import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, random_bf16_frames, write_movie

from tokendyn.surfaces.cli import build_parser, main

CLASSES = np.array([0] * 12 + [1] * 6 + [2] * 6, np.uint8)


@pytest.fixture
def small(tmp_path):
    return write_movie(str(tmp_path / "m.h5"), random_bf16_frames(12, n_tokens=24, n_dims=6), token_class=CLASSES)


# --- 1. -O lags=1,10,100 ------------------------------------------------------------------------

def test_sequence_options_take_the_unquoted_form_and_the_old_one(small, tmp_path):
    import xarray as xr

    from tokendyn.analysis import registry

    comoving = registry.get("comoving")
    assert registry.parse_options(comoving, ["lags=1,2,4"]) == {"lags": (1, 2, 4)}
    assert registry.parse_options(comoving, ["lags=(1,2,4)"]) == {"lags": (1, 2, 4)}
    assert registry.parse_options(comoving, ["lags=3"]) == {"lags": (3,)}  # one lag: a sequence of one
    listing = registry.help_text()
    assert "lags=1,2,4,8,16" in listing and "lags=(" not in listing  # what the listing shows pastes unquoted
    new, old = str(tmp_path / "new.nc"), str(tmp_path / "old.nc")
    assert main(["analyse", small, "comoving", "-O", "lags=1,3", "-o", new, "-q"]) == 0
    assert main(["analyse", small, "comoving", "-O", "lags=(1,3)", "-o", old, "-q"]) == 0
    with xr.open_dataset(new) as a, xr.open_dataset(old) as b:
        assert a.lag.values.tolist() == [1, 3]
        xr.testing.assert_identical(a.msd.load(), b.msd.load())
    help_text = build_parser()._subparsers._group_actions[0].choices["analyse"].format_help()
    assert "lags=1," in help_text and "lags=(" not in help_text


# --- 2. analyse without -o prints a table ---------------------------------------------------------

def test_analyse_without_output_prints_headlines_per_class_and_how_to_save(tmp_path, capsys):
    path = write_movie(str(tmp_path / "odd\x1b[31m.h5"), random_bf16_frames(12, n_tokens=24, n_dims=6),
                       token_class=CLASSES)
    assert main(["analyse", path, "geometry", "-q"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out  # the file name escaped
    assert not out.lstrip().startswith("{")  # not the JSON stub
    assert "headline numbers" in out and "radius mean last" in out and " ± " in out and "embedding units" in out
    per_class = out.split("per class")[1]
    assert "live     12 tokens" in per_class and "dead     6 tokens" in per_class and "mean radius" in per_class
    last = out.strip().splitlines()[-1]
    assert "-o geometry.nc" in last and "-o geometry.csv" in last


def test_analyse_table_puts_nested_errors_beside_their_values(tmp_path, capsys):
    path = write_movie(str(tmp_path / "m.h5"), random_bf16_frames(20, n_tokens=24, n_dims=6), token_class=CLASSES)
    assert main(["analyse", path, "comoving", "-O", "lags=1,2", "-q"]) == 0
    out = capsys.readouterr().out
    msd = [line for line in out.splitlines() if line.strip().startswith("msd ")]
    assert len(msd) == 3 * 2  # three classes x two lags
    assert all(" ± " in line for line in msd), msd  # the msd_error dict beside the msd dict


# --- 3. progress bars ---------------------------------------------------------------------------

def test_a_bar_made_at_the_first_update_counts_the_time_before_it(capsys):
    from tokendyn.surfaces.cli_common import with_progress

    def work(progress):
        time.sleep(0.25)
        progress(100, 100)  # all of it done at the first call (a small movie, one block)

    with_progress("scanning", False, work)
    err = capsys.readouterr().err
    rate = float(err.strip().splitlines()[-1].split(", ")[-1].split(" frames/s")[0])
    assert 100 < rate < 100 / 0.25 * 1.5, err  # ~400 frames/s, not millions


def test_a_log_gets_plain_lines_every_few_percent(monkeypatch):
    from tokendyn.progress import frame_progress

    monkeypatch.delenv("TOKENDYN_PROGRESS", raising=False)
    log = io.StringIO()
    update, close = frame_progress("copying", file=log)
    for done in range(1, 2001):
        update(done, 2000)
    close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 22, text  # a start, one per 5 %, the end: never one per frame
    assert lines[-1].startswith("copying: 100%")


def test_a_terminal_bar_redraws_at_its_refresh_rate_not_every_frame(monkeypatch):
    from tokendyn.progress import frame_progress

    monkeypatch.setenv("TOKENDYN_PROGRESS", "bar")  # as on a terminal
    screen = io.StringIO()
    update, close = frame_progress("copying", file=screen)
    for done in range(1, 2001):
        update(done, 2000)
    close()
    assert screen.getvalue().count("\r") < 20  # repair redrew 2,000 times


def test_train_into_a_log_file_writes_lines_not_redraws(tmp_path):
    log = tmp_path / "log"
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "tokendyn.surfaces.cli", "train", "--preset", "tiny", "--steps",
                               "20", "--no-summary", "--out", str(tmp_path / "x.h5")], stdout=f, stderr=f,
                              cwd=ROOT, timeout=300, env={**os.environ, "TOKENDYN_PROGRESS": ""})
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    bar_lines = [line for line in text.splitlines() if line.startswith("training:")]
    assert 2 <= len(bar_lines) <= 23 and "100%" in bar_lines[-1], text
    assert len(text) < 5000


# --- 4. numba kernels compiling -----------------------------------------------------------------

def test_the_bar_says_when_kernels_compile_and_only_then(small, tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "TOKENDYN_PROGRESS": ""}
    command = [sys.executable, "-m", "tokendyn.surfaces.cli", "analyse", small, "inhale"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert "inhale: compiling kernels (first run only)" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert "compiling" not in second.stderr and "inhale" in second.stderr  # the bar, without the note


# --- 5. Ctrl-C's loss ---------------------------------------------------------------------------

def test_ctrl_c_before_the_first_step_reports_a_finite_loss_and_its_step(tmp_path, monkeypatch, capsys):
    import importlib

    loop = importlib.import_module("tokendyn.trainers.loop")

    def interrupting(step, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C twice during the first step

    monkeypatch.setattr(loop, "lr_at", interrupting)
    rc = main(["train", "--preset", "tiny", "--steps", "50", "--out", str(tmp_path / "i.h5"), "--no-summary", "-q"])
    out = capsys.readouterr().out
    assert rc == 130
    assert "steps            0  (interrupted)" in out
    final = next(line for line in out.splitlines() if line.startswith("final loss"))
    assert "nan" not in final and float(final.split()[2]) > 0
    assert "(at step 0)" in final  # the step the loss was measured at


def test_the_last_finite_loss_is_kept():
    import torch

    from tokendyn.trainers.loop import last_finite_loss

    assert last_finite_loss(7, torch.tensor(2.5), (5, 3.0)) == (2.5, 7)
    assert last_finite_loss(7, torch.tensor(float("nan")), (5, 3.0)) == (3.0, 5)
    value, step = last_finite_loss(0, None, None)
    assert np.isnan(value) and step is None


# --- 6. an example in every --help ----------------------------------------------------------------

def test_every_command_help_shows_an_example():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"info", "check", "repair", "convert", "train", "sweep", "analyse", "report", "play", "import",
            "compare", "experiment"} <= set(commands)
    for name, command in commands.items():
        text = command.format_help()
        assert "example" in text, name
        lines = text.split("example")[-1].splitlines()
        assert any(line.strip().startswith("tokendyn ") for line in lines), (name, lines)
    assert "example" in parser.format_help()


# --- 7. zarr copies -----------------------------------------------------------------------------

def test_every_reading_command_takes_a_zarr_copy(small, tmp_path, capsys):
    copy = str(tmp_path / "m.zarr")
    assert main(["convert", small, copy, "-q"]) == 0
    assert main(["info", copy]) == 0
    assert "frames       12" in capsys.readouterr().out
    assert main(["check", copy, "-q"]) == 0
    assert "OK, a valid W-movie" in capsys.readouterr().out
    assert main(["analyse", copy, "geometry", "-q"]) == 0
    assert "headline numbers" in capsys.readouterr().out
    assert main(["play", copy, "-o", str(tmp_path / "p.html")]) == 0
    assert (tmp_path / "p.html").stat().st_size > 0
    assert main(["report", copy, "-o", str(tmp_path / "rep"), "-q"]) == 0
    assert (tmp_path / "rep" / "index.html").exists()


# --- 8. report a b ------------------------------------------------------------------------------

def test_report_of_two_movies_says_to_use_compare(small, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["report", small, str(tmp_path / "other run.h5")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"tokendyn compare {small} '{tmp_path / 'other run.h5'}'" in err[0]


# --- 9. frame strides ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, cut", [("0:500", slice(0, 500)), ("100:", slice(100, None)), ("0:12:3", slice(0, 12, 3)),
                                       ("::10", slice(None, None, 10)), ("5::2", slice(5, None, 2)), ("", None)])
def test_frames_take_a_stride(text, cut):
    from tokendyn.surfaces.cli_common import parse_frames

    assert parse_frames(text) == cut


@pytest.mark.parametrize("text", ["5", "0:10:0", "0:10:-1", "1:2:3:4", "a:b"])
def test_bad_frames_are_one_line_errors(small, capsys, text):
    assert main(["analyse", small, "geometry", "--frames", text, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frames" in err[0] and "Traceback" not in err[0]


def test_analyses_honour_the_stride(small, tmp_path):
    import xarray as xr

    out = str(tmp_path / "g.nc")
    assert main(["analyse", small, "geometry", "--frames", "0:12:3", "-o", out, "-q"]) == 0
    with xr.open_dataset(out) as g:
        assert g.step.values.tolist() == [0, 3, 6, 9]
