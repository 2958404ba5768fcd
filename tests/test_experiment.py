"""tokendyn experiment: spec checks, expansion into groups, the built-in lab-log, resume, compare's call."""
import json
import os
import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("distributed")

from conftest import one_line_error, run_cli  # noqa: E402

from tokendyn.errors import ConfigError  # noqa: E402
from tokendyn.runs import experiment, sweep  # noqa: E402
from tokendyn.runs.experiment import (  # noqa: E402
    builtin_experiments,
    expand_experiment,
    groups_of,
    load_experiment,
    run_experiment,
)
from tokendyn.trainers.config import from_preset  # noqa: E402

GRID = """
name: grid
preset: tiny
steps: 10
seeds: [0, 1, 2]
precisions: [bf16-pure, fp32]
grid:
  tied: [true, false]
controls:
  - none
  - {control: lr-zero, precision: fp32}
  - control: shuffled-targets
    precision: bf16-pure
    tied: true
"""

SMALL = """
name: small
preset: tiny
steps: 6
seeds: [0, 1]
precision: bf16-pure
record: "3"
grid:
  tied: [true, false]
controls:
  - none
  - {control: shuffled-targets, tied: true}
set:
  corpus_chars: 60000
  foreign_chars: 10000
  eval_every: 0
  warmup: 2
"""
SMALL_GROUPS = ["tiny-bf16-pure-tied", "tiny-bf16-pure-tied-shuffled-targets", "tiny-bf16-pure-untied"]


def _spec(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_expansion_counts_groups_and_controls(tmp_path):
    runs = expand_experiment(load_experiment(_spec(tmp_path, GRID)))
    # none: 2 precisions x 2 tied x 3 seeds; lr-zero: fp32 x 2 tied x 3; shuffled: bf16-pure tied x 3
    assert len(runs) == 12 + 6 + 3
    groups = groups_of(runs)
    assert list(groups) == ["tiny-bf16-pure-tied", "tiny-bf16-pure-tied-shuffled-targets", "tiny-bf16-pure-untied",
                            "tiny-fp32-tied", "tiny-fp32-tied-lr-zero", "tiny-fp32-untied", "tiny-fp32-untied-lr-zero"]
    labels = [r.group for r in runs]
    assert labels == sorted(labels, key=list(groups).index)  # a group's seeds come together
    for label, members in groups.items():
        assert [r.run_id for r in members] == [f"{label}-seed{s}" for s in (0, 1, 2)]
        configs = [from_preset(r.preset, **r.overrides).to_dict() for r in members]
        assert [c.pop("seed") for c in configs] == [0, 1, 2]
        assert configs[0] == configs[1] == configs[2]  # the same configuration but for the seed
        control = next((c for c in ("lr-zero", "shuffled-targets") if label.endswith("-" + c)), "none")
        assert {c["control"] for c in configs} == {control}
        assert {c["tied"] for c in configs} == {"untied" not in label}
        assert {c["precision"] for c in configs} == {"fp32" if "fp32" in label else "bf16-pure"}
    assert len({r.config_hash for r in runs}) == len(runs)


def test_seedless_spec_names_the_presets_seed_and_a_single_control(tmp_path):
    runs = expand_experiment(load_experiment(_spec(tmp_path, "presets: [tiny]\ncontrols: [random-targets]\n")))
    assert [(r.run_id, r.group) for r in runs] == [("tiny-fp32-random-targets-seed42", "tiny-fp32-random-targets")]
    assert from_preset(runs[0].preset, **runs[0].overrides).control == "random-targets"


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nbogus: 1\n", "unknown experiment spec key(s) ['bogus']"),
    ("preset: tiny\nprecisions: [bf16-pure, fp16]\n", "precisions: 'fp16' is not a precision"),
    ("preset: tiny\nprecision: fp16\n", "precision must be one of"),
    ("preset: tiny\nprecisions: bf16-pure\n", "precisions must be a list"),
    ("preset: tiny\ncontrols: [none, wrong-answers]\n", "controls: unknown control 'wrong-answers'"),
    ("preset: tiny\ncontrols: [{control: nosuch}]\n", "controls: unknown control 'nosuch'"),
    ("preset: tiny\ncontrols: []\n", "controls must be a list"),
    ("preset: tiny\ncontrols: [none, none]\n", "controls: 'none' is given twice"),
    ("preset: tiny\ncontrols: [{control: lr-zero, tied: true}]\n", "restricted by 'tied', which the spec does not"),
    ("preset: tiny\nprecisions: [fp32]\ncontrols: [{control: lr-zero, precision: bf16-pure}]\n",
     "controls: lr-zero's precision 'bf16-pure' is not one of the spec's precision values ['fp32']"),
    ("steps: 3\n", "needs preset: NAME or presets"),
    ("preset: nosuch\n", "run nosuch: unknown preset"),
    ("preset: tiny\nprecision: fp32\nprecisions: [fp32]\n", "gives both precision and precisions"),
    ("preset: tiny\ngrid:\n  precision: [fp32]\n", "cannot sweep over ['precision']"),
    ("preset: tiny\ngrid:\n  tied: [yes-please]\n", "grid's tied must be true, false"),
    ("preset: tiny\nset:\n  control: lr-zero\n", "set gives control; an experiment takes it from controls"),
    ("preset: tiny\ncompare: [1]\n", "compare must be a mapping"),
    ("preset: tiny\nseeds: [0, 0]\n", "expands to the run 'tiny-fp32-seed0' more than once"),
    ("preset: tiny\nsteps: text\n", "run tiny-fp32-seed42: cannot read steps='text'"),
    ("preset: [tiny\n", "cannot parse the experiment spec"),
    ("", "an experiment spec is a mapping"),
])
def test_bad_specs_are_one_line_naming_the_file(tmp_path, text, message, capsys):
    path = _spec(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)
    one_line_error(capsys, ["experiment", path, "-o", str(tmp_path / "out")], path)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_cli_a_missing_spec_is_one_line_and_lists_the_builtins(tmp_path, capsys):
    line = one_line_error(capsys, ["experiment", "bogus.yaml", "-o", str(tmp_path / "out")], "bogus.yaml")
    assert "no experiment spec file or built-in spec of that name (built-in: lab-log)" in line
    r = run_cli("experiment", "bogus.yaml", timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = run_cli("experiment", timeout=120)
    assert r.returncode == 0 and "lab-log" in r.stdout


def test_lab_log_expands_to_the_runs_its_comments_document():
    assert "lab-log" in builtin_experiments()
    path = os.path.join(experiment.BUILTIN, "lab-log.yaml")
    text = open(path).read()
    documented = dict(re.findall(r"^#\s+(tiny-\S+)\s+(\d+) runs", text, re.M))
    total = int(re.search(r"Runs \((\d+)\)", text).group(1))
    runs = expand_experiment(load_experiment("lab-log"))
    groups = groups_of(runs)
    assert {label: str(len(members)) for label, members in groups.items()} == documented
    assert len(runs) == total == 15
    for r in runs:
        cfg = from_preset(r.preset, **r.overrides)
        assert cfg.seed in (0, 1, 2) and r.run_id == f"{r.group}-seed{cfg.seed}"
        assert cfg.control == ("shuffled-targets" if r.group.endswith("shuffled-targets") else "none")
        if cfg.control != "none":
            assert cfg.precision == "bf16-pure" and cfg.tied
    assert {from_preset(r.preset, **r.overrides).precision for r in runs} == {"bf16-pure", "bf16-mixed"}


@pytest.fixture
def fake_compare(monkeypatch):
    """``tokendyn.compare`` replaced by one that records its calls."""
    calls = []

    def compare(groups, output, *, progress=True, **options):
        calls.append({"groups": {k: list(v) for k, v in groups.items()}, "output": output, "progress": progress,
                      "options": options})
        os.makedirs(output, exist_ok=True)
        return {"html": os.path.join(output, "compare.html"), "json": os.path.join(output, "compare.json")}

    monkeypatch.setattr("tokendyn.surfaces.compare_report.compare", compare)
    return calls


def _mtimes(out):
    runs = out / "runs"
    return {name: (runs / name).stat().st_mtime_ns for name in os.listdir(runs) if name.endswith(".json")}


def test_runs_compares_the_groups_and_resumes(tmp_path, fake_compare):
    spec = _spec(tmp_path, SMALL + "compare:\n  alpha: 0.1\n")
    out = tmp_path / "exp"
    summary = run_experiment(spec, out, workers=0, progress=False)
    assert (summary["runs"], summary["finished"], summary["skipped"], summary["failed"]) == (6, 6, 0, {})
    (call,) = fake_compare
    assert list(call["groups"]) == SMALL_GROUPS
    for label, movies in call["groups"].items():
        assert movies == [str(out / "runs" / f"{label}-seed{s}.h5") for s in (0, 1)]
        assert all(os.path.isfile(m) for m in movies)
    assert call["options"] == {"alpha": 0.1} and call["progress"] is False
    assert call["output"] == str(out / "compare")
    record = json.load(open(out / "experiment.json"))
    assert record["groups"] == {label: [f"{label}-seed{s}" for s in (0, 1)] for label in SMALL_GROUPS}
    assert [r["status"] for r in record["runs"]] == ["finished"] * 6
    assert {r["control"] for r in record["runs"]} == {"none", "shuffled-targets"}
    assert record["compare"]["html"].endswith("compare.html") and record["spec"]["name"] == "small"
    metrics = json.load(open(out / "runs" / "tiny-bf16-pure-untied-seed1.json"))
    assert metrics["tied"] is False and metrics["seed"] == 1 and metrics["group"] == "tiny-bf16-pure-untied"
    # again: nothing trains, and compare sees the same groups
    before = _mtimes(out)
    summary = run_experiment(spec, out, workers=0, progress=False)
    assert (summary["finished"], summary["skipped"]) == (6, 6)
    assert _mtimes(out) == before
    assert fake_compare[1]["groups"] == call["groups"]
    assert [r["status"] for r in json.load(open(out / "experiment.json"))["runs"]] == ["resumed"] * 6
    # a seed more: only its runs train
    open(spec, "w").write(SMALL.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    summary = run_experiment(spec, out, workers=0, progress=False)
    assert (summary["runs"], summary["finished"], summary["skipped"]) == (9, 9, 6)
    assert {k: len(v) for k, v in summary["groups"].items()} == dict.fromkeys(SMALL_GROUPS, 3)
    assert {k: v for k, v in _mtimes(out).items() if k in before} == before
    # a changed steps: every run changed, and trains again
    open(spec, "w").write(SMALL.replace("steps: 6", "steps: 7"))
    before = _mtimes(out)
    said = []
    summary = run_experiment(spec, out, workers=0, progress=False, log=said.append)
    assert (summary["runs"], summary["finished"], summary["skipped"]) == (6, 6, 0)
    assert "6 runs, 0 already finished, 6 to run (6 of them changed in the spec since they ran)" in said[0]
    after = _mtimes(out)
    assert all(after[name] != before[name] for name in after if "seed2" not in name)
    assert json.load(open(out / "runs" / "tiny-bf16-pure-tied-seed0.json"))["steps"] == 7


def test_a_failed_run_is_reported_and_compare_runs_on_the_others(tmp_path, fake_compare, monkeypatch):
    real = sweep.run_one

    def flaky(run, run_dir):
        if run.run_id == "tiny-bf16-pure-untied-seed0":
            raise RuntimeError("planted failure")
        return real(run, run_dir)

    monkeypatch.setattr(sweep, "run_one", flaky)
    said = []
    summary = run_experiment(_spec(tmp_path, SMALL), tmp_path / "exp", workers=0, progress=False, log=said.append)
    assert summary["failed"] == {"tiny-bf16-pure-untied-seed0": "RuntimeError: planted failure"}
    assert summary["finished"] == 5
    assert any("tiny-bf16-pure-untied-seed0 failed: RuntimeError: planted failure" in line for line in said)
    assert fake_compare[0]["groups"]["tiny-bf16-pure-untied"] == [str(tmp_path / "exp" / "runs" /
                                                                      "tiny-bf16-pure-untied-seed1.h5")]
    status = {r["run"]: (r["status"], r.get("error")) for r in json.load(open(tmp_path / "exp" / "experiment.json"))["runs"]}
    assert status["tiny-bf16-pure-untied-seed0"] == ("failed", "RuntimeError: planted failure")
    assert status["tiny-bf16-pure-tied-seed0"] == ("finished", None)


def test_compare_is_checked_before_anything_trains(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="compare takes no option 'beta'; options: labels, alpha") as caught:
        run_experiment(_spec(tmp_path, SMALL + "compare: {beta: 1}\n"), tmp_path / "b", workers=0, progress=False)
    assert caught.value.path == str(tmp_path / "exp.yaml") and not (tmp_path / "b").exists()


def test_cli_runs_on_a_local_dask_cluster_without_compare(tmp_path):
    spec = _spec(tmp_path, SMALL.replace("seeds: [0, 1]", "seeds: [3]").replace("tied: [true, false]", "tied: [false]")
                 .replace("  - {control: shuffled-targets, tied: true}\n", ""))
    out = tmp_path / "exp"
    r = run_cli("experiment", spec, "-o", str(out), "--workers", "1", "--no-compare", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "experiment small: 1 runs, 0 already finished, 1 to run" in r.stderr
    assert f"1 of 1 runs finished (0 resumed) in 1 groups; runs in {out}/runs" in r.stdout
    record = json.load(open(out / "experiment.json"))
    assert [(x["run"], x["status"]) for x in record["runs"]] == [("tiny-bf16-pure-untied-seed3", "finished")]
    assert record["compare"] is None and os.path.isfile(record["runs"][0]["movie"])


def test_with_the_real_compare(tmp_path):
    summary = run_experiment(_spec(tmp_path, SMALL), tmp_path / "exp", workers=0, progress=False)
    assert summary["finished"] == 6 and os.path.isfile(summary["compare"]["html"])
    assert os.path.isfile(summary["compare"]["json"])
