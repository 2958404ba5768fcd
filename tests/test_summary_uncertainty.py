"""The train summary's own numbers carry their bootstrap errors over the tokens."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tokendyn.recorder import Recorder
from tokendyn.surfaces.summary import movie_summary

NUMBER = r"([-+0-9.e]+) ± ([0-9.e]+)"


def test_summary_numbers_carry_errors_the_size_of_their_spread(tmp_path):
    rng = np.random.default_rng(3)
    n, d, sigma = 400, 8, 0.05
    cls = np.array([0] * 200 + [1] * 200, np.uint8)
    first = rng.normal(0, 1, (n, d))
    last = first + rng.normal(0, sigma, (n, d)) + np.array([0.3] + [0] * (d - 1))  # a planted drift of 0.3
    path = tmp_path / "m.h5"
    with Recorder(path, token_class=cls) as rec:
        rec.capture(0, W=first.astype(np.float32))
        rec.capture(1, W=last.astype(np.float32))
    text = movie_summary(path)
    drift, drift_error = map(float, re.search(r"centroid drift\s+" + NUMBER, text).groups())
    assert drift == pytest.approx(0.3, abs=4 * sigma / np.sqrt(n))
    assert drift_error == pytest.approx(sigma / np.sqrt(n), rel=0.25)  # the SE of the mean move along the drift
    r0, r0_error = map(float, re.search(r"mean radius \(centroid\)\s+" + NUMBER, text).groups())
    radii = np.linalg.norm(first.astype(np.float32).astype(np.float64) - first.astype(np.float32).mean(0), axis=1)
    assert r0 == pytest.approx(radii.mean(), rel=1e-4)
    assert r0_error == pytest.approx(radii.std(ddof=1) / np.sqrt(n), rel=0.15)
    live = re.search(r"live\s+200 tokens.*co-moving displacement mean " + NUMBER, text)
    value, error = map(float, live.groups())
    w0, w1 = first.astype(np.float32).astype(np.float64), last.astype(np.float32).astype(np.float64)
    moved = np.linalg.norm((w1 - w1.mean(0)) - (w0 - w0.mean(0)), axis=1)[:200]
    assert value == pytest.approx(moved.mean(), rel=1e-3)
    assert error == pytest.approx(moved.std(ddof=1) / np.sqrt(200), rel=0.15)
    assert "(first to last frame)" in text and "learning rate" not in text  # no lr recorded: no lr line


def test_summary_names_the_learning_rate_its_final_numbers_are_measured_against(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "lr.h5"
    with Recorder(path, token_class=np.zeros(16, np.uint8), scalars=["lr"]) as rec:
        for t, lr in enumerate((0.0, 2e-3, 1e-3, 5e-4)):
            rec.capture(t, W=rng.normal(size=(16, 4)).astype(np.float32), lr=lr)
    line = [x for x in movie_summary(path).splitlines() if "learning rate" in x]
    assert line == ["  learning rate             peak 0.002, last 0.0005 (25.0% of peak)"]
