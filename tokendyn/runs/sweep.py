"""Sweeps: many training runs from one spec, each a task on a dask cluster, with a summary table
and plots. A sweep directory holds ``runs/<id>.h5`` (movie), ``runs/<id>.json`` (metrics, written
last, so a run counts as done only once it exists) and ``sweep.csv/.md/.html``. Running a spec
again skips the runs finished with the same config (each result carries a hash of its run's whole
config): a changed spec runs again exactly the runs it changed."""
from __future__ import annotations

import dataclasses
import hashlib
import html
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tokendyn.errors import ConfigError

from .spec import (  # noqa: F401 - the spec functions, where sweeps and experiments always found them
    BUILTIN,
    GRID_KEYS,
    SPEC_KEYS,
    _parse,
    builtin_specs,
    check_shape,
    read_spec,
    spec_path,
)


@dataclasses.dataclass
class Run:
    """One training run of a sweep; ``config_hash`` identifies everything its result depends on
    (its whole resolved config), so a result made from another spec is never taken for it."""

    run_id: str
    preset: str
    overrides: dict[str, Any]
    config_hash: str = ""
    group: str = ""  # an experiment's group: the run's configuration without its seed


def load_spec(source: str) -> dict[str, Any]:
    """A spec from a YAML or TOML file, or the name of a built-in one (``efficiency-cliff``,
    ``architecture``), checked through: its keys and their types, and every run it expands to
    (:func:`expand`). Every problem is one :class:`ConfigError` naming the file."""
    path, spec = read_spec(source)
    check_shape(spec, path)
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    expand(spec, path)  # every run's config is checked before anything trains
    return spec


def expand(spec: dict[str, Any], path: str | None = None) -> list[Run]:
    """Every run of a spec: presets x grid x seeds, each config validated before anything trains
    (errors name ``path``, the spec's file, and the run)."""
    presets = spec.get("presets") or [spec["preset"]]
    grid = spec.get("grid") or {}
    keys = sorted(grid)
    seeds = spec.get("seeds") or [None]
    fixed = fixed_overrides(spec)
    runs = []
    for preset in presets:
        for values in itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)):
            for seed in seeds:
                overrides = {**fixed, **dict(zip(keys, values))}
                if seed is not None:
                    overrides["seed"] = int(seed)
                parts = [preset] + [f"{k}{v}" for k, v in zip(keys, values)] + ([f"seed{seed}"] if seed is not None else [])
                run_id = "-".join(str(p) for p in parts)
                runs.append(make_run(run_id, preset, overrides, path)[0])
    check_unique(runs, path)
    return runs


def fixed_overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """The config values every run of a spec shares: its ``set`` and its steps, precision, record, device."""
    fixed = dict(spec.get("set") or {})
    for key in ("steps", "precision", "record", "device"):
        if key in spec:
            fixed[key] = spec[key]
    return fixed


def make_run(run_id: str, preset: str, overrides: dict[str, Any], path: str | None = None,
             group: str = "") -> tuple[Run, Any]:
    """A run and its resolved, validated :class:`~tokendyn.trainers.config.TrainConfig`; an invalid
    config is a :class:`ConfigError` naming ``path`` (the spec's file) and the run."""
    from tokendyn.trainers.config import from_preset

    try:
        cfg = from_preset(preset, **overrides)
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"run {run_id}: {exc.problem}", path or exc.path) from None
    return Run(run_id, preset, overrides, config_hash(cfg.to_dict()), group), cfg


def check_unique(runs: list[Run], path: str | None = None) -> None:
    """No two runs of a spec share an id (a value given twice in the spec)."""
    seen: set[str] = set()
    twice = [r.run_id for r in runs if r.run_id in seen or seen.add(r.run_id)]
    if twice:
        raise ConfigError(f"the spec expands to the run {twice[0]!r} more than once (a value given twice in "
                          "presets, the grid or seeds)", path)


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of a resolved config: what a run's result depends on."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_result(run: Run, run_dir: str) -> dict[str, Any] | None:
    """The metrics a finished run left in ``run_dir``, or ``None`` where there are none, or where
    they were made from another config (the spec changed since: the run must run again)."""
    path = os.path.join(run_dir, run.run_id + ".json")
    try:
        with open(path) as f:
            metrics = json.load(f)
    except (OSError, ValueError):  # none, unreadable or not JSON: not a result, so it runs (again)
        return None
    if not isinstance(metrics, dict) or metrics.get("config_hash") != run.config_hash:
        return None
    return metrics


def run_one(run: Run, run_dir: str) -> dict[str, Any]:
    """Train one run (in a worker) and write its metrics; returns them."""
    from tokendyn.sources.dataset import open_movie
    from tokendyn.trainers import train

    movie = os.path.join(run_dir, run.run_id + ".h5")
    result = train(run.preset, out=movie, overwrite=True, progress=False, log=lambda s: None, sample_tokens=0,
                   **run.overrides)
    ds = open_movie(movie)
    cfg = ds.attrs["config"]
    tokens_per_step = int(cfg["batch"]) * int(cfg["context"])
    metrics = {
        "run": run.run_id, "preset": run.preset, **{k: cfg[k] for k in ("layers", "dim", "heads", "batch", "context",
                                                                       "precision", "steps", "seed")},
        "tied": bool(cfg.get("tied", True)), "control": cfg.get("control", "none"), "group": run.group,
        "ffn_hidden": int(cfg["ffn"] or round(cfg["dim"] * cfg["ffn_ratio"])),
        "n_params": result.n_params, "device": result.device,
        "steps_per_second": result.steps_per_second, "tokens_per_second": result.steps_per_second * tokens_per_step,
        "frame_rate_steps_per_million_tokens": 1e6 / tokens_per_step,
        "final_loss": result.final_loss, "heldout_loss": result.heldout_loss,
        "unigram_entropy": result.unigram_entropy,
        "escapes_unigram": bool(result.final_loss < result.unigram_entropy),
        "loss_curve": {"step": ds.step.values.tolist(), "loss": [float(v) for v in ds["loss"].values]},
        "movie": movie, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "config_hash": run.config_hash,
    }
    tmp = os.path.join(run_dir, run.run_id + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=1)
    os.replace(tmp, os.path.join(run_dir, run.run_id + ".json"))  # written last: the run is done
    return metrics


def find_cliff(batches: list[int], tokens_per_second: list[float], threshold: float = 0.8) -> dict[str, Any]:
    """The efficiency cliff: going from one batch to the next, throughput should grow in proportion;
    the cliff is the last batch before a step whose gain is below ``threshold`` of proportional
    (``None`` if scaling stays linear over the whole range)."""
    order = np.argsort(batches)
    b = np.asarray(batches, float)[order]
    t = np.asarray(tokens_per_second, float)[order]
    gains = (t[1:] / t[:-1]) / (b[1:] / b[:-1])
    below = np.flatnonzero(gains < threshold)
    return {"batches": b.astype(int).tolist(), "scaling_gain": gains.tolist(), "threshold": threshold,
            "cliff_batch": int(b[below[0]]) if below.size else None}


def summarize(spec: dict[str, Any], results: list[dict[str, Any]], out_dir: str) -> dict[str, str]:
    """Write ``sweep.csv``, ``sweep.md`` and ``sweep.html`` (table and plots) for finished runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from tokendyn.surfaces.report import png_data

    cols = ["run", "preset", "layers", "dim", "heads", "ffn_hidden", "batch", "context", "precision", "steps", "seed",
            "n_params", "steps_per_second", "tokens_per_second", "frame_rate_steps_per_million_tokens", "final_loss",
            "unigram_entropy", "escapes_unigram"]
    table = pd.DataFrame([{c: r.get(c) for c in cols} for r in results])
    csv_path = os.path.join(out_dir, "sweep.csv")
    table.to_csv(csv_path, index=False)
    figures = []
    cliff = None
    if table["batch"].nunique() > 1:
        by_batch = table.groupby("batch")["tokens_per_second"].mean()
        cliff = find_cliff(by_batch.index.tolist(), by_batch.tolist())
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(by_batch.index, by_batch.values, "o-", label="measured")
        b0, t0 = by_batch.index[0], by_batch.values[0]
        ax.plot(by_batch.index, t0 * by_batch.index / b0, "k:", label="linear scaling")
        if cliff["cliff_batch"] is not None:
            ax.axvline(cliff["cliff_batch"], color="tab:red", ls="--", label=f"cliff: batch {cliff['cliff_batch']}")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="throughput (tokens/s)",
               title="efficiency cliff")
        ax.legend(fontsize=8)
        figures.append(("Throughput against batch size", png_data(fig)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        ax.plot(r["loss_curve"]["step"], r["loss_curve"]["loss"], lw=1, label=r["run"])
    if results:
        ax.axhline(results[0]["unigram_entropy"], color="grey", ls="--", lw=1, label="unigram baseline")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="loss curves")
    ax.legend(fontsize=6)
    figures.append(("Loss curves", png_data(fig)))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh(table["run"], table["frame_rate_steps_per_million_tokens"])
    ax.set(xlabel="frame rate (steps per million tokens)", title="how finely each run samples training")
    figures.append(("Frame rate", png_data(fig)))
    md_table = _markdown(table)
    cliff_text = ""
    if cliff is not None:
        cliff_text = (f"Efficiency cliff: batch {cliff['cliff_batch']} (the last batch before throughput grows less "
                      f"than {cliff['threshold']:.0%} of proportionally)." if cliff["cliff_batch"] is not None
                      else "No efficiency cliff in this range: throughput scales about linearly with the batch.")
    md_path = os.path.join(out_dir, "sweep.md")
    with open(md_path, "w") as f:
        f.write(f"# Sweep {spec['name']}\n\n{cliff_text}\n\n{md_table}\n")
    html_path = os.path.join(out_dir, "sweep.html")
    imgs = "\n".join(f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{p}">'
                     for t, p in figures)
    with open(html_path, "w") as f:
        f.write(f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sweep {html.escape(spec['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse;font-size:80%}}
td,th{{border:1px solid #ddd;padding:2px 5px}}</style></head><body>
<h1>Sweep {html.escape(spec['name'])}</h1><p>{html.escape(cliff_text)}</p>
{table.to_html(index=False, float_format=lambda v: f"{v:.4g}")}
{imgs}</body></html>""")
    with open(os.path.join(out_dir, "sweep.json"), "w") as f:
        json.dump({"spec": spec, "cliff": cliff, "runs": [r["run"] for r in results]}, f, indent=1)
    return {"csv": csv_path, "md": md_path, "html": html_path}


def _markdown(table) -> str:
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return head + "\n".join("| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False))


def run_sweep(source: str, out_dir: str, *, workers: int = 1, scheduler: str | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a sweep; every run is a task on a dask cluster (a local one of ``workers``
    processes by default, or the scheduler at ``scheduler``)."""
    say = log or (lambda text: print(text, file=sys.stderr))
    path = spec_path(source)
    spec = load_spec(source)
    runs = expand(spec, path)
    run_dir = os.path.join(os.path.abspath(out_dir), "runs")
    outcome = run_all(runs, run_dir, workers=workers or 1, scheduler=scheduler, say=say,
                      title=f"sweep {spec['name']}", desc="sweep")
    done = len(outcome["skipped"])
    results = [metrics for metrics in (finished_result(r, run_dir) for r in runs) if metrics is not None]
    if not results:
        raise ConfigError("no run of the sweep finished", out_dir)
    paths = summarize(spec, results, os.path.abspath(out_dir))
    return {"spec": spec, "runs": len(runs), "finished": len(results), "skipped": done, **paths}


def run_all(runs: list[Run], run_dir: str, *, workers: int = 1, scheduler: str | None = None,
            say: Callable[[str], None] | None = None, title: str = "sweep", desc: str = "sweep",
            progress: bool = True) -> dict[str, Any]:
    """Run every run of ``runs`` that has no finished result in ``run_dir`` with its config (a
    result made from another config is removed first, so it is never reported), each a task on a
    dask cluster: the scheduler at ``scheduler``, else a local cluster of ``workers`` processes;
    ``workers=0`` runs them here, one after another, without dask. A failed run is reported
    through ``say`` and the others go on.

    Returns
    -------
    dict
        ``skipped`` (the ids finished before), ``ran`` (the ids that finished now), ``failed``
        (id -> the error, one line) and ``stale`` (the ids whose old result was from another config).
    """
    from tokendyn.cluster import compute_on

    say = say or (lambda text: print(text, file=sys.stderr))
    os.makedirs(run_dir, exist_ok=True)
    todo = [r for r in runs if finished_result(r, run_dir) is None]
    stale = [r for r in todo if os.path.isfile(os.path.join(run_dir, r.run_id + ".json"))]
    for r in stale:  # made from another spec: gone before the run starts again, so never reported
        os.remove(os.path.join(run_dir, r.run_id + ".json"))
    done = [r.run_id for r in runs if r not in todo]
    say(f"{title}: {len(runs)} runs, {len(done)} already finished, {len(todo)} to run"
        + (f" ({len(stale)} of them changed in the spec since they ran)" if stale else ""))
    ran: list[str] = []
    failed: dict[str, str] = {}
    if not todo:
        return {"skipped": done, "ran": ran, "failed": failed, "stale": [r.run_id for r in stale]}
    from tokendyn.progress import progress_bar

    def finish(run: Run, get: Callable[[], dict[str, Any]], bar: Any) -> None:
        try:
            metrics = get()
            ran.append(run.run_id)
            bar.set_postfix_str(f"{run.run_id}: {metrics['tokens_per_second']:.0f} tok/s")
        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
            failed[run.run_id] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            say(f"run {run.run_id} failed: {failed[run.run_id]}")
        bar.update(1)

    with progress_bar(len(todo), desc, " runs", disable=not progress) as bar:
        if scheduler is None and not workers:
            for run in todo:
                finish(run, lambda run=run: run_one(run, run_dir), bar)
        else:
            with compute_on(scheduler, workers or 1) as client:
                from distributed import as_completed

                futures = {client.submit(run_one, r, run_dir, key=f"tokendyn-run-{r.run_id}-{r.config_hash}",
                                         pure=False): r for r in todo}
                for future in as_completed(futures):
                    finish(futures[future], future.result, bar)
    return {"skipped": done, "ran": ran, "failed": failed, "stale": [r.run_id for r in stale]}
