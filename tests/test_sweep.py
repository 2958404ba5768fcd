"""tokendyn sweep: specs, expansion, the efficiency cliff, resume, outputs."""
import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("distributed")

from conftest import run_cli  # noqa: E402

from tokendyn.errors import ConfigError  # noqa: E402
from tokendyn.runs.sweep import builtin_specs, expand, find_cliff, finished_result, load_spec  # noqa: E402
from tokendyn.surfaces import cli  # noqa: E402

SPEC = """
name: small
preset: tiny
steps: 12
seeds: [0]
record: "4"
grid:
  batch: [4, 8]
set:
  corpus_chars: 60000
  foreign_chars: 10000
  eval_every: 0
  warmup: 2
"""


def test_find_cliff_on_planted_throughputs():
    assert find_cliff([32, 64, 128, 256], [100, 200, 400, 500])["cliff_batch"] == 128
    assert find_cliff([256, 32, 128, 64], [500, 100, 400, 200])["cliff_batch"] == 128  # any order
    assert find_cliff([32, 64, 128], [100, 195, 400])["cliff_batch"] is None  # linear throughout
    assert find_cliff([32, 64], [100, 100])["cliff_batch"] == 32


def test_builtin_specs_expand_to_the_notes_two_phases():
    assert set(builtin_specs()) >= {"efficiency-cliff", "architecture"}
    cliff = expand(load_spec("efficiency-cliff"))
    assert [r.overrides["batch"] for r in cliff] == [32, 64, 128, 256]
    arch = expand(load_spec("architecture"))
    assert [r.preset for r in arch] == ["goldilocks-lean", "goldilocks-balanced", "goldilocks-rich"]
    assert {r.overrides["batch"] for r in arch} == {128}


def test_toml_and_yaml_specs_expand_alike(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC)
    (tmp_path / "s.toml").write_text('name = "small"\npreset = "tiny"\nsteps = 12\nseeds = [0]\nrecord = "4"\n'
                                     '[grid]\nbatch = [4, 8]\n[set]\ncorpus_chars = 60000\nforeign_chars = 10000\n'
                                     'eval_every = 0\nwarmup = 2\n')
    a, b = expand(load_spec(str(tmp_path / "s.yaml"))), expand(load_spec(str(tmp_path / "s.toml")))
    assert [(r.run_id, r.overrides) for r in a] == [(r.run_id, r.overrides) for r in b]
    assert [r.run_id for r in a] == ["tiny-batch4-seed0", "tiny-batch8-seed0"]


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nbogus: 1\n", "unknown sweep spec key"),
    ("preset: tiny\ngrid:\n  vocab_size: [1, 2]\n", "cannot sweep over"),
    ("grid:\n  batch: [1]\n", "needs preset"),
    ("preset: tiny\ngrid:\n  heads: [3]\n", "heads (3) must divide dim"),
    ("preset: nosuch\n", "unknown preset"),
    ("preset: [tiny\n", "cannot parse"),
])
def test_bad_specs_fail_before_any_training(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand(load_spec(str(path)))
    r = run_cli("sweep", str(path), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "runs").exists() or not os.listdir(tmp_path / "out" / "runs")


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nsteps: text\n", "run tiny: cannot read steps='text' as int"),
    ("preset: tiny\nseeds: 0\n", "the sweep spec's seeds must be a list of whole numbers"),
    ("preset: tiny\nseeds: [0.5]\n", "the sweep spec's seeds must be a list of whole numbers"),
    ("presets: tiny\n", "the sweep spec's presets must be a list of preset names"),
    ("preset: tiny\ngrid: [1, 2]\n", "the sweep spec's grid must be a mapping"),
    ("preset: tiny\ngrid:\n  batch: []\n", "the grid's batch must be a value or a non-empty list"),
    ("preset: tiny\nset: [1]\n", "the sweep spec's set must be a mapping"),
    ("preset: tiny\nset:\n  nosuch: 1\n", "run tiny: unknown config field(s): nosuch"),
    ("name: 5\npreset: tiny\n", "the sweep spec's name must be a word"),
    ("preset: tiny\ngrid:\n  batch: [4, 4]\n", "the spec expands to the run 'tiny-batch4' more than once"),
    ("preset: tiny\nseeds: [1, 1]\n", "the spec expands to the run 'tiny-seed1' more than once"),
    ("preset: tiny\nsteps: 3\npreset: tiny\n", "cannot parse the sweep spec (the key 'preset' is given twice"),
    ("preset: !!python/object/apply:os.system [echo]\n", "cannot parse the sweep spec (could not determine a constructor"),
    ("", "a sweep spec is a mapping"),
    (b"preset: \xff\n", "cannot parse the sweep spec ('utf-8' codec can't decode"),
])
def test_bad_specs_are_one_line_naming_the_file(tmp_path, text, message, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as caught:
        load_spec(str(path))
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)
    assert cli.main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokendyn: error: {path}: ") and err.count("\n") == 1
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("where", ["nosuch.yaml", "."])
def test_a_spec_that_is_not_a_file_is_one_line_naming_it(tmp_path, where):
    with pytest.raises(ConfigError, match="no sweep spec file or built-in spec of that name") as caught:
        load_spec(str(tmp_path / where))
    assert caught.value.path == str(tmp_path / where)


def _fake_results(runs, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    for r in runs:
        with open(os.path.join(run_dir, r.run_id + ".json"), "w") as f:
            json.dump({"run": r.run_id, "config_hash": r.config_hash}, f)


def test_a_result_counts_only_for_the_config_it_was_made_with(tmp_path):
    """Results are keyed by a hash of each run's whole config: a changed spec runs again exactly
    the runs it changed, and keeps the others."""
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    runs = expand(load_spec(str(spec)))
    run_dir = str(tmp_path / "runs")
    _fake_results(runs, run_dir)
    assert all(finished_result(r, run_dir)["run"] == r.run_id for r in runs)
    spec.write_text(SPEC.replace("warmup: 2", "warmup: 3"))  # every run changes
    changed = expand(load_spec(str(spec)))
    assert [r.run_id for r in changed] == [r.run_id for r in runs]
    assert all(finished_result(r, run_dir) is None for r in changed)
    spec.write_text(SPEC.replace("batch: [4, 8]", "batch: [4, 8, 16]"))  # one run more, two unchanged
    grown = expand(load_spec(str(spec)))
    assert [finished_result(r, run_dir) is not None for r in grown] == [True, True, False]
    assert expand(load_spec(str(spec)))[0].config_hash == grown[0].config_hash  # the same spec, the same hash
    with open(os.path.join(run_dir, runs[0].run_id + ".json"), "w") as f:
        f.write("{not json")  # a damaged result is no result
    assert finished_result(runs[0], run_dir) is None


def test_sweep_runs_writes_tables_and_plots_and_resumes(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "sweep"
    env_cache = os.environ.get("TOKENDYN_CACHE")
    r = run_cli("sweep", str(spec), "-o", str(out), "--workers", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import pandas as pd

    table = pd.read_csv(out / "sweep.csv")
    assert table["batch"].tolist() == [4, 8]
    assert (table["tokens_per_second"] > 0).all()
    assert (table["frame_rate_steps_per_million_tokens"] == 1e6 / (table["batch"] * 64)).all()
    for name in ("sweep.md", "sweep.html"):
        assert (out / name).stat().st_size > 500
    page = (out / "sweep.html").read_text()
    assert page.count("<img") == 3  # throughput vs batch, loss curves, frame rate
    summary = json.load(open(out / "sweep.json"))
    assert summary["cliff"]["batches"] == [4, 8]
    metrics = json.load(open(out / "runs" / "tiny-batch4-seed0.json"))
    assert len(metrics["loss_curve"]["step"]) == 4 and metrics["unigram_entropy"] > 0  # steps 0, 4, 8, 12
    # resume: remove one finished run; only that one runs again
    keep = out / "runs" / "tiny-batch8-seed0.json"
    before = keep.stat().st_mtime_ns
    (out / "runs" / "tiny-batch4-seed0.json").unlink()
    r = run_cli("sweep", str(spec), "-o", str(out), "--workers", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 already finished, 1 to run" in r.stderr
    assert keep.stat().st_mtime_ns == before
    assert (out / "runs" / "tiny-batch4-seed0.json").exists()
    # a changed spec: its changed run runs again, and the stale result is never reported
    before = keep.stat().st_mtime_ns
    spec.write_text(SPEC.replace("warmup: 2", "warmup: 3").replace("batch: [4, 8]", "batch: [8]"))
    r = run_cli("sweep", str(spec), "-o", str(out), "--workers", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 runs, 0 already finished, 1 to run (1 of them changed in the spec since they ran)" in r.stderr
    assert keep.stat().st_mtime_ns != before
    assert pd.read_csv(out / "sweep.csv")["batch"].tolist() == [8]
    assert env_cache == os.environ.get("TOKENDYN_CACHE")
