"""Experiments: a grid of presets x precisions x controls x grid values x seeds, trained on the
sweep machinery (:mod:`tokendyn.runs.sweep`: each run a dask task, resumable by config hash), then
compared with :func:`tokendyn.compare`, one group per configuration without its seed.

An experiment folder holds ``runs/<id>.h5`` (movie) and ``runs/<id>.json`` (metrics, written last),
``experiment.json`` (the spec, every run with its group, status and movie) and ``compare/`` (the
comparison). Running a spec again skips the runs finished with the same config; a changed run
runs again.

A spec (YAML or TOML)::

    name: lab-log
    preset: tiny                    # or presets: [tiny, duckling]
    steps: 300
    seeds: [0, 1, 2]
    precisions: [bf16-pure, bf16-mixed]   # or precision: bf16-pure
    grid:                           # the sweep's grid keys, and tied
      tied: [true, false]
    controls:                       # default [none]
      - none
      - {control: shuffled-targets, precision: bf16-pure, tied: true}   # only where these hold
    set: {eval_every: 0}            # config values every run shares
    compare: {alpha: 0.05}          # options passed to compare
"""
from __future__ import annotations

import inspect
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tokendyn.errors import ConfigError, TokendynError
from tokendyn.runs import sweep
from tokendyn.runs.sweep import Run

BUILTIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")
WHAT = "experiment spec"
SPEC_KEYS = {"name", "preset", "presets", "steps", "seeds", "precision", "precisions", "controls", "grid", "set",
             "record", "device", "compare"}
GRID_KEYS = (sweep.GRID_KEYS - {"precision"}) | {"tied"}  # precisions have their own key
NOT_IN_SET = {"control": "controls", "precision": "precision or precisions", "seed": "seeds", "tied": "grid: {tied: ...}"}

__all__ = ["BUILTIN", "builtin_experiments", "load_experiment", "expand_experiment", "groups_of", "run_experiment"]


def builtin_experiments() -> list[str]:
    """The names of the built-in experiment specs (``lab-log``)."""
    return sweep.builtin_specs(BUILTIN)


def load_experiment(source: str) -> dict[str, Any]:
    """An experiment spec from a YAML or TOML file, or the name of a built-in one (``lab-log``),
    checked through: its keys, the types of their values, and every run it expands to
    (:func:`expand_experiment`). Every problem is one :class:`ConfigError` naming the file."""
    path, spec = sweep.read_spec(source, builtin=BUILTIN, what=WHAT)
    sweep.check_shape(spec, path, keys=SPEC_KEYS, grid_keys=GRID_KEYS, what=WHAT)
    _check_experiment(spec, path)
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    expand_experiment(spec, path)  # every run's config is checked before anything trains
    return spec


def _fail(message: str, path: str) -> ConfigError:
    return ConfigError(f"the {WHAT}'s {message}"[:400], path)


def _check_experiment(spec: dict[str, Any], path: str) -> None:
    """What an experiment spec has beyond a sweep's: precisions, controls, tied, compare."""
    from tokendyn.trainers.config import CONTROLS, PRECISIONS

    for one, many in (("preset", "presets"), ("precision", "precisions")):
        if one in spec and many in spec:
            raise ConfigError(f"the {WHAT} gives both {one} and {many}; give one of them", path)
    if "precision" in spec and spec["precision"] not in PRECISIONS:
        raise _fail(f"precision must be one of {', '.join(PRECISIONS)}, not {spec['precision']!r}", path)
    if "precisions" in spec:
        values = spec["precisions"]
        if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
            raise _fail(f"precisions must be a list of precisions, e.g. [bf16-pure, bf16-mixed], not {values!r}", path)
        bad = [v for v in values if v not in PRECISIONS]
        if bad:
            raise _fail(f"precisions: {bad[0]!r} is not a precision; choose from {', '.join(PRECISIONS)}", path)
    fixed = spec.get("set") or {}
    for key, instead in NOT_IN_SET.items():
        if key in fixed:
            raise _fail(f"set gives {key}; an experiment takes it from {instead}", path)
    tied = (spec.get("grid") or {}).get("tied")
    if tied is not None:
        values = tied if isinstance(tied, list) else [tied]
        if not all(isinstance(v, bool) for v in values):
            raise _fail(f"grid's tied must be true, false or [true, false], not {tied!r}", path)
    if "compare" in spec:
        options = spec["compare"]
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise _fail(f"compare must be a mapping of compare options, e.g. {{alpha: 0.05}}, not {options!r}", path)
    controls = spec.get("controls", ["none"])
    if not isinstance(controls, list) or not controls:
        raise _fail(f"controls must be a list of controls ({', '.join(CONTROLS)}), not {controls!r}", path)
    names = []
    for item in controls:
        name = item.get("control") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise _fail(f"controls: each is a control name or a mapping {{control: NAME, KEY: VALUES}} where "
                        f"KEY is preset, precision or a grid key; not {item!r}", path)
        if name not in CONTROLS:
            raise _fail(f"controls: unknown control {name!r}; choose one of {', '.join(CONTROLS)}", path)
        if name in names:
            raise _fail(f"controls: {name!r} is given twice", path)
        names.append(name)
        if isinstance(item, dict):
            _check_where(spec, name, {k: v for k, v in item.items() if k != "control"}, path)


def _check_where(spec: dict[str, Any], name: str, where: dict[str, Any], path: str) -> None:
    """A control's restriction: each key a dimension of the spec, each value one of its values."""
    dims = _dimensions(spec)
    for key, wanted in where.items():
        if key not in dims:
            raise _fail(f"controls: {name} is restricted by {key!r}, which the spec does not vary; "
                        f"restrict by {', '.join(sorted(dims)) or 'nothing'}", path)
        values = wanted if isinstance(wanted, list) else [wanted]
        missing = [v for v in values if not any(_same(v, d) for d in dims[key])]
        if not values or missing:
            raise _fail(f"controls: {name}'s {key} {missing[0] if missing else wanted!r} is not one of the "
                        f"spec's {key} values {dims[key]}", path)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # True is not 1 here


def _dimensions(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """The spec's varied dimensions and their values: preset, precision (where given), grid keys."""
    dims: dict[str, list[Any]] = {"preset": spec.get("presets") or [spec.get("preset")]}
    if "precisions" in spec or "precision" in spec:
        dims["precision"] = spec.get("precisions") or [spec["precision"]]
    for key, values in (spec.get("grid") or {}).items():
        dims[key] = values if isinstance(values, list) else [values]
    return dims


def _label_part(key: str, value: Any) -> str:
    if key == "tied":
        return "tied" if value else "untied"
    return f"{key}{value}"


def expand_experiment(spec: dict[str, Any], path: str | None = None) -> list[Run]:
    """Every run of an experiment spec, in groups: presets x precisions x grid x controls, and
    within a group the seeds. A run's ``group`` is its configuration without the seed
    (``tiny-bf16-pure-untied``, ``tiny-bf16-pure-tied-shuffled-targets``: preset, precision,
    grid values, the control unless none); its id is the group and ``-seedN``. Each config is
    validated before anything trains (errors name ``path`` and the run)."""
    dims = _dimensions(spec)
    presets = dims["preset"]
    precisions = dims.get("precision", [None])
    grid = spec.get("grid") or {}
    keys = sorted(grid, key=lambda k: (k == "tied", k))  # tied last: tiny-bf16-pure-lr0.001-untied
    seeds = spec.get("seeds") or [None]
    fixed = sweep.fixed_overrides(spec)
    fixed.pop("precision", None)
    controls = []
    for item in spec.get("controls") or ["none"]:
        if isinstance(item, dict):
            where = {k: v if isinstance(v, list) else [v] for k, v in item.items() if k != "control"}
            controls.append((item["control"], where))
        else:
            controls.append((item, {}))
    runs: list[Run] = []
    matched = {name: False for name, _ in controls}
    for preset, precision in itertools.product(presets, precisions):
        for values in itertools.product(*(dims[k] for k in keys)):
            point = {"preset": preset, "precision": precision, **dict(zip(keys, values))}
            for control, where in controls:
                if not all(any(_same(point[k], v) for v in wanted) for k, wanted in where.items()):
                    continue
                matched[control] = True
                base = {**fixed, **dict(zip(keys, values)), "control": control}
                if precision is not None:
                    base["precision"] = precision
                defaults = _preset_defaults(preset, path)
                resolved = precision or defaults.precision
                group = "-".join([str(preset), resolved] + [_label_part(k, v) for k, v in zip(keys, values)]
                                 + ([control] if control != "none" else []))
                for seed in seeds:
                    overrides = dict(base)
                    if seed is not None:
                        overrides["seed"] = int(seed)
                    # without seeds, the preset's own seed (set cannot give one), named in the id all the same
                    run_id = f"{group}-seed{defaults.seed if seed is None else seed}"
                    runs.append(sweep.make_run(run_id, str(preset), overrides, path, group=group)[0])
    unused = [name for name, hit in matched.items() if not hit]
    if unused:
        raise ConfigError(f"the {WHAT}'s control {unused[0]} is restricted to values no run has", path)
    sweep.check_unique(runs, path)
    return runs


def _preset_defaults(preset: str, path: str | None) -> Any:
    """The preset's own config: the precision and seed a run takes from it where the spec gives none."""
    from tokendyn.trainers.config import from_preset

    try:
        return from_preset(preset)
    except ConfigError as exc:
        raise ConfigError(f"run {preset}: {exc.problem}", path or exc.path) from None


def groups_of(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs by group, in the spec's order (a group's runs differ only in their seed)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def _compare_function(options: dict[str, Any], path: str) -> Callable[..., dict[str, str]]:
    """:func:`tokendyn.compare`, checked here (before anything trains, so an option it does not
    take fails at once, naming the spec's file)."""
    from tokendyn.surfaces import compare_report

    compare = compare_report.compare
    try:
        params = inspect.signature(compare).parameters
    except (TypeError, ValueError):
        return compare
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        names = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        bad = sorted(set(options) - set(names) - {"progress"})
        if bad:
            raise _fail(f"compare: compare takes no option {bad[0]!r}; options: {', '.join(names)}", path)
    return compare


def run_experiment(source: str, out_dir: str | os.PathLike | None = None, *, workers: int | None = None,
                   scheduler: str | None = None, compare: bool = True, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) an experiment, then compare its groups.

    Parameters
    ----------
    source
        A ``.yaml``/``.toml`` experiment spec, or a built-in's name (:func:`builtin_experiments`).
    out_dir
        The experiment folder (default ``experiments/NAME``).
    workers
        Local worker processes of the dask cluster (default: one per CPU core, at most one per
        run to train); ``0`` trains here, one run after another, without dask.
    scheduler
        The address of a running dask.distributed scheduler to run on instead.
    compare
        Compare the finished runs, one group per configuration without the seed, with
        :func:`tokendyn.compare` (the spec's ``compare`` options passed on).
    progress
        Show a progress bar (runs), and compare's.
    log
        Where the status lines go (default: stderr; with ``progress=False``, failures only).

    Returns
    -------
    dict
        ``spec``, ``runs`` (how many), ``finished``, ``skipped`` (finished before), ``failed``
        (run id -> error), ``groups`` (label -> the movies of its finished runs), ``experiment``
        (the path of experiment.json) and ``compare`` (compare's ``{"html", "json"}``, or ``None``).
    """
    path = sweep.spec_path(source, BUILTIN)
    spec = load_experiment(source)
    runs = expand_experiment(spec, path)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers must be a whole number >= 0, got {workers!r}")
    options = dict(spec.get("compare") or {})
    compare_fn = _compare_function(options, path) if compare else None
    quiet_log: Callable[[str], None] = lambda text: None  # noqa: E731
    stderr_log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)  # noqa: E731
    say = log or (stderr_log if progress else quiet_log)
    warn = log or stderr_log  # a failed run is reported, quiet or not
    out = os.path.abspath(out_dir if out_dir is not None else os.path.join("experiments", spec["name"]))
    run_dir = os.path.join(out, "runs")
    if workers is None:
        todo = sum(sweep.finished_result(r, run_dir) is None for r in runs)
        workers = max(1, min(os.cpu_count() or 1, todo))
    started = time.time()

    def report(text: str) -> None:
        (warn if " failed: " in text else say)(text)

    outcome = sweep.run_all(runs, run_dir, workers=workers, scheduler=scheduler, say=report,
                            title=f"experiment {spec['name']}", desc="experiment", progress=progress)
    results = {r.run_id: sweep.finished_result(r, run_dir) for r in runs}
    movie = lambda r: os.path.join(run_dir, r.run_id + ".h5")  # noqa: E731 - here, wherever it ran
    groups = {label: [movie(r) for r in members if results[r.run_id] is not None]
              for label, members in groups_of(runs).items()}
    groups = {label: movies for label, movies in groups.items() if movies}
    summary = {"experiment": spec["name"], "spec_file": os.path.abspath(path), "spec": spec, "folder": out,
               "wall_seconds": None, "groups": {label: [r.run_id for r in members]
                                                for label, members in groups_of(runs).items()},
               "runs": [_run_record(r, results[r.run_id], outcome, movie(r)) for r in runs], "compare": None}
    record_path = os.path.join(out, "experiment.json")
    _write_json(record_path, summary)
    finished = sum(m is not None for m in results.values())
    if not finished:
        raise TokendynError("no run of the experiment finished (see experiment.json)", out)
    compared = None
    if compare_fn is not None:
        say(f"comparing {len(groups)} groups: {', '.join(groups)}")
        compared = compare_fn(groups, os.path.join(out, "compare"), progress=progress, **options)
        summary["compare"] = compared
    summary["wall_seconds"] = round(time.time() - started, 1)
    _write_json(record_path, summary)
    return {"spec": spec, "runs": len(runs), "finished": finished, "skipped": len(outcome["skipped"]),
            "failed": outcome["failed"], "groups": groups, "experiment": record_path, "compare": compared,
            "folder": out}


def _run_record(run: Run, metrics: dict[str, Any] | None, outcome: dict[str, Any], movie: str) -> dict[str, Any]:
    """One run as experiment.json lists it."""
    if metrics is not None:
        status = "resumed" if run.run_id in outcome["skipped"] else "finished"
    else:
        status = "failed" if run.run_id in outcome["failed"] else "not run"
    record = {"run": run.run_id, "group": run.group, "preset": run.preset, "status": status,
              "control": run.overrides.get("control", "none"), "seed": run.overrides.get("seed"),
              "overrides": run.overrides, "config_hash": run.config_hash,
              "movie": movie if metrics else None}
    if metrics is not None:
        record.update({k: metrics.get(k) for k in ("final_loss", "heldout_loss", "unigram_entropy",
                                                   "steps_per_second", "n_params", "device", "finished")})
        record["seed"] = metrics.get("seed", record["seed"])
    if run.run_id in outcome["failed"]:
        record["error"] = outcome["failed"][run.run_id]
    return record


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)
