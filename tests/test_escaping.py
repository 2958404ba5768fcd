"""What comes from a file never runs in a page or reaches a terminal raw: file names, titles, config
strings and token texts are escaped in `play`, `report`, `info`, `check` and error lines."""
import os

import numpy as np
import pytest
from conftest import browser, random_bf16_frames, run_cli, write_movie

from tokendyn.format import BF16Bits
from tokendyn.recorder import Recorder
from tokendyn.surfaces.cli_common import terminal_text
from tokendyn.surfaces.player import json_for_script, play

HOSTILE_NAME = "x<img src=x onerror=window.pwned=1>.h5"  # a file name cannot hold "/", so no "</script>"
HOSTILE_TEXT = "<img src=x onerror=window.pwned=2></script><script>window.pwned=3</script>"
TERMINAL_TITLE = "red \x1b[31mALERT\x1b[0m\nsecond line\r\u202eevil"


@pytest.fixture
def hostile_movie(tmp_path):
    frames = random_bf16_frames(8, n_tokens=24, n_dims=6)
    cls = np.array([0] * 12 + [1] * 6 + [2] * 6, np.uint8)
    path = str(tmp_path / HOSTILE_NAME)
    with Recorder(path, token_class=cls, config={"note": HOSTILE_TEXT, HOSTILE_TEXT: 1}, title=HOSTILE_TEXT,
                  token_text=[HOSTILE_TEXT] * len(cls)) as rec:
        for i, bits in enumerate(frames):
            rec.capture(i, W=BF16Bits(bits), loss=1.0)
    return path


def test_json_for_a_script_element_cannot_end_it():
    text = json_for_script({"a": "</script><b>&amp;\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    import json

    assert json.loads(text) == {"a": "</script><b>&amp;\u2028"}  # the same data once parsed


def test_play_and_report_pages_hold_no_raw_markup_from_the_file(hostile_movie, tmp_path):
    from tokendyn.surfaces.report import write_report

    page = open(play(hostile_movie, str(tmp_path / "p.html"))).read()
    report = open(write_report(hostile_movie, tmp_path / "rep", progress=False)["html"]).read()
    for html_text in (page, report):
        assert "<script>window.pwned" not in html_text and "<img src=x" not in html_text
        assert "&lt;img src=x onerror=window.pwned=1&gt;" in html_text  # the name is shown, as text
        assert html_text.count("<script") == html_text.count("</script>")  # only our own elements


@pytest.mark.parametrize("kind", ["play", "report"])
def test_no_script_from_the_file_runs_in_a_browser(hostile_movie, tmp_path, kind):
    from tokendyn.surfaces.report import write_report

    if kind == "play":
        page = play(hostile_movie, str(tmp_path / "p.html"))
    else:
        page = write_report(hostile_movie, tmp_path / "rep", progress=False)["html"]
    driver = browser()
    try:
        driver.get("file://" + os.path.abspath(page))
        assert driver.execute_script("return typeof window.pwned") == "undefined"
        assert "<img src=x" in driver.find_element("css selector", "h1").text  # shown as text, literally
        assert driver.find_element("css selector", ".tdplayer-label").text.startswith("step")  # the player runs
    finally:
        driver.quit()


def test_terminal_text_escapes_what_is_not_printable():
    assert terminal_text(TERMINAL_TITLE) == "red \\x1b[31mALERT\\x1b[0m\\nsecond line\\r\\u202eevil"
    assert terminal_text("plain ünïcode ✓") == "plain ünïcode ✓"


def test_info_check_and_errors_print_control_characters_escaped(tmp_path):
    frames = random_bf16_frames(4, n_tokens=8, n_dims=4)
    path = write_movie(str(tmp_path / "t\x1b[2J.h5"), frames, title=TERMINAL_TITLE,
                       token_text=["\x1b]0;owned\x07"] * 8)
    for command in ("info", "check"):
        r = run_cli(command, path)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\r" not in r.stdout and "\u202e" not in r.stdout
    assert "title        red \\x1b[31mALERT\\x1b[0m\\nsecond line" in run_cli("info", path).stdout
    bad = tmp_path / "bad\x1b[31m\n.h5"
    bad.write_bytes(b"not a movie")
    r = run_cli("info", str(bad))
    assert r.returncode != 0 and "\x1b" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "bad\\x1b[31m\\n.h5" in r.stderr
