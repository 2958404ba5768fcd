"""tokendyn compare: groups from labels, planted differences recovered, bad input refused."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import one_line_error

import tokendyn
from tokendyn import format as fmt
from tokendyn.comparison import build, resolve
from tokendyn.comparison.aggregate import error_of, over_runs
from tokendyn.errors import CompareError
from tokendyn.recorder import Recorder


def class_walk(path, *, n_dead=200, n_phantom=200, dim=16, frames=40, dead_step=0.01, phantom_step=0.01, seed=0):
    """Dead and phantom tokens taking Gaussian steps of chosen RMS lengths (float32, steps = frames)."""
    rng = np.random.default_rng(seed)
    n = n_dead + n_phantom
    cls = np.array([fmt.CLASS_DEAD] * n_dead + [fmt.CLASS_PHANTOM] * n_phantom, np.uint8)
    step = np.where(cls == fmt.CLASS_DEAD, dead_step, phantom_step)[:, None] / np.sqrt(dim)
    x = rng.normal(0, 1, (n, dim))
    with Recorder(path, token_class=cls, config={"model": "class_walk", "seed": seed}) as rec:
        for t in range(frames):
            rec.capture(t, W=x.astype(np.float32), loss=float(5 - 0.01 * t))
            x = x + rng.normal(size=x.shape) * step
    return str(path)


def _rows(rows, quantity, a, b, **where):
    return [r for r in rows if r["quantity"] == quantity and (r["a"], r["b"]) == (a, b)
            and all(r.get(k) == v for k, v in where.items())]


def test_labels_make_groups_and_unmatched_runs_are_groups_of_one(tmp_path):
    paths = [class_walk(tmp_path / f"{name}.h5", frames=3, n_dead=4, n_phantom=4) for name in ("a-0", "a-1", "b")]
    groups = resolve(paths, ["A=a-*.h5"])
    assert groups == {"A": paths[:2], "b": paths[2:]}
    assert resolve({"x": paths[:1], "y": paths[1:]}) == {"x": paths[:1], "y": paths[1:]}


@pytest.mark.parametrize("runs, labels, problem", [
    (["missing.h5"], None, "no such movie"),
    (["{a}"], ["A=zzz*"], "matches none of the runs"),
    (["{a}"], ["A=*", "B=*"], "both match this run"),
    (["{a}", "{a}"], None, "given twice"),
    (["{a}"], ["nolabel"], "NAME=GLOB"),
])
def test_bad_runs_and_labels_are_refused(tmp_path, runs, labels, problem):
    a = class_walk(tmp_path / "a.h5", frames=3, n_dead=4, n_phantom=4)
    with pytest.raises(CompareError, match=problem):
        resolve([r.format(a=a) for r in runs], labels)


def test_runs_with_no_common_analysis_are_refused(tmp_path):
    one_frame = class_walk(tmp_path / "one_frame.h5", frames=1, n_dead=4, n_phantom=4)
    with Recorder(tmp_path / "one_token.h5", token_class=np.zeros(1, np.uint8)) as rec:
        for t in range(3):
            rec.capture(t, W=np.full((1, 4), t, np.float32))
    with pytest.raises(CompareError, match="no analysis in common"):
        build([one_frame, str(tmp_path / "one_token.h5")])


def test_dead_and_phantom_planted_equal_are_same_and_planted_different_are_different(tmp_path):
    equal = class_walk(tmp_path / "equal.h5", seed=1)
    unequal = class_walk(tmp_path / "unequal.h5", phantom_step=0.013, seed=2)
    c = build([equal, unequal])
    for quantity in ("displacement", "radius"):
        (same,) = _rows(c.phantom_vs_dead, quantity, "dead", "phantom", run=equal)
        assert same["verdict"] == "same", same["text"]
    (moved,) = _rows(c.phantom_vs_dead, "displacement", "dead", "phantom", run=unequal)
    assert moved["verdict"] == "different" and moved["effect_size"] > 0.5, moved["text"]
    # the difference is measured against the numbers themselves (the planted 30 % longer steps)
    assert moved["mean_b"] / moved["mean_a"] == pytest.approx(1.3, rel=0.06)


def test_groups_of_seeds_recover_a_planted_difference_across_groups(tmp_path):
    slow = [class_walk(tmp_path / f"slow-{s}.h5", seed=s, n_dead=60, n_phantom=60) for s in range(3)]
    fast = [class_walk(tmp_path / f"fast-{s}.h5", seed=10 + s, n_dead=60, n_phantom=60, dead_step=0.02,
                       phantom_step=0.02) for s in range(3)]
    c = build(slow + fast, ["slow=slow-*", "fast=fast-*"])
    rows = [r for r in c.tests["across_groups"] if r["quantity"] == "displacement"]
    assert {r["class"] for r in rows} == {"dead", "phantom"}
    assert all(r["verdict"] == "different" and r["unit"] == "runs" and r["basis"] == "run means" for r in rows)
    # within each group, dead and phantom are planted equal: never called different
    within = _rows(c.tests["within_group"], "displacement", "dead", "phantom")
    assert len(within) == 2 and all(r["verdict"] != "different" for r in within)
    # the group's headline is the mean over its runs, with the spread between the seeds
    key = "dead.final_mean_step_displacement"
    cell = c.headlines["comoving"][key]
    values = [cell["runs"][p]["value"] for p in fast]
    est = cell["groups"]["fast"]
    assert est.value == pytest.approx(np.mean(values))
    assert est.error == pytest.approx(np.std(values, ddof=1) / np.sqrt(3))
    assert est.n == 3
    # curves: a band over the three runs that holds the mean
    band = c.curves["comoving"]["step_displacement_mean"]["classes"]["dead"]["fast"]
    ok = np.isfinite(band["low"])
    assert band["runs"].shape == (3, 40) and ok.sum() >= 38
    assert np.all(band["low"][ok] <= band["mean"][ok] + 1e-15) and np.all(band["mean"][ok] <= band["high"][ok] + 1e-15)


def test_a_planted_inhale_is_counted_in_its_group_and_not_in_the_other(tmp_path):
    with_inhale = [str(tmp_path / f"in-{s}.h5") for s in range(3)]
    without = [str(tmp_path / f"flat-{s}.h5") for s in range(3)]
    for s, p in enumerate(with_inhale):
        tokendyn.synthetic.inhale_cloud(p, n_tokens=64, dim=8, frames=200, phases=((40, 60, 0.05),),
                                        expand_from=120, noise=0.001, seed=s)
    for s, p in enumerate(without):
        tokendyn.synthetic.inhale_cloud(p, n_tokens=64, dim=8, frames=200, phases=(), expand_from=120,
                                        noise=0.001, seed=s)
    c = build({"inhale": with_inhale, "flat": without})
    events = c.events["inhale"]
    assert events["inhale"]["inhale"]["text"] == "3 of 3 runs"
    assert events["flat"]["inhale"]["text"] == "0 of 3 runs"
    assert events["inhale"]["phases"]["text"] == "1 in 3 of 3"
    start = events["inhale"]["first_phase_start"]["values"]
    bottom = events["inhale"]["first_phase_bottom"]["values"]
    assert all(38 <= s <= 42 for s in start) and all(58 <= b <= 62 for b in bottom)  # planted 40-60, noise 0.1 %
    assert events["inhale"]["first_phase"]["text"].startswith("steps 4")


def test_error_of_pairs_errors_with_their_numbers():
    assert error_of("radius_mean_last_error") == "radius_mean_last"
    assert error_of("msd_error.dead.4") == "msd.dead.4"
    assert error_of("dead.frozen_fraction_last") is None


def test_over_runs_one_run_keeps_its_own_error_and_several_use_the_seed_spread():
    one = over_runs([2.0], [0.1])
    assert (one.value, one.error, one.n) == (2.0, 0.1, 1)
    many = over_runs([1.0, 2.0, 3.0, float("nan")], [0.1, 0.1, 0.1, 0.1])
    assert many.value == 2.0 and many.error == pytest.approx(1 / np.sqrt(3)) and many.n == 3
    assert many.low < 2.0 - 1.96 * many.error  # a t interval on 2 degrees of freedom is wider than normal


def test_compare_writes_a_page_and_json_with_escaped_names(tmp_path):
    name = 'x<img src=x onerror="window.pwned=1">.h5'
    a = class_walk(tmp_path / name, frames=12, n_dead=20, n_phantom=20)
    b = class_walk(tmp_path / "b.h5", frames=12, n_dead=20, n_phantom=20, dim=8, seed=3)
    out = tokendyn.compare([a, b], tmp_path / "cmp", progress=False)
    page = open(out["html"], encoding="utf-8").read()
    assert "<img src=x" not in page and "&lt;img src=x" in page
    data = json.load(open(out["json"], encoding="utf-8"))
    assert set(data["groups"]) == {os.path.splitext(name)[0], "b"}
    assert any("embedding dims [8, 16]" in n for n in data["notes"])
    assert data["phantom_vs_dead"] and all(r["a"] == "dead" and r["b"] == "phantom" for r in data["phantom_vs_dead"])
    assert "comoving" in data["headlines"] and data["options"]["alpha"] == 0.05


def test_cli_compare_errors_are_one_line(capsys, tmp_path):
    one_line_error(capsys, ["compare", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "out")], "missing.h5")
    a = class_walk(tmp_path / "a.h5", frames=3, n_dead=4, n_phantom=4)
    one_line_error(capsys, ["compare", a, "--label", "nolabel", "-o", str(tmp_path / "out")], "NAME=GLOB")


def test_cli_compare_writes_the_report(capsys, tmp_path):
    from tokendyn.surfaces.cli import main

    a = class_walk(tmp_path / "a.h5", frames=6, n_dead=10, n_phantom=10)
    b = class_walk(tmp_path / "b.h5", frames=6, n_dead=10, n_phantom=10, seed=4)
    assert main(["compare", a, b, "--label", "walk=*.h5", "-o", str(tmp_path / "out"), "-q"]) == 0
    assert "comparison.json" in capsys.readouterr().out
    data = json.load(open(tmp_path / "out" / "comparison.json"))
    assert data["groups"] == {"walk": [a, b]}
