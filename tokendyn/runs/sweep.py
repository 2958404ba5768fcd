"""Sweeps: many training runs from one spec, each a task on a dask cluster, with a summary table
and plots. A sweep directory holds ``runs/<id>.h5`` (movie), ``runs/<id>.json`` (metrics, written
last, so a run counts as done only once it exists) and ``sweep.csv/.md/.html``; running the same
spec again skips the finished runs."""
from __future__ import annotations

import dataclasses
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

BUILTIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweeps")
SPEC_KEYS = {"name", "preset", "presets", "steps", "seeds", "precision", "grid", "set", "record", "device"}
GRID_KEYS = {"layers", "dim", "heads", "ffn", "ffn_ratio", "batch", "context", "lr", "precision", "steps"}


@dataclasses.dataclass
class Run:
    """One training run of a sweep."""

    run_id: str
    preset: str
    overrides: dict[str, Any]


def builtin_specs() -> list[str]:
    return sorted(os.path.splitext(f)[0] for f in os.listdir(BUILTIN) if f.endswith(".yaml"))


def load_spec(source: str) -> dict[str, Any]:
    """A spec from a YAML or TOML file, or the name of a built-in one (``efficiency-cliff``,
    ``architecture``)."""
    path = source
    if not os.path.exists(source) and source in builtin_specs():
        path = os.path.join(BUILTIN, source + ".yaml")
    if not os.path.exists(path):
        raise ConfigError(f"no sweep spec file or built-in spec of that name (built-in: {', '.join(builtin_specs())})",
                          source)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            spec = tomllib.loads(raw.decode("utf-8"))
        else:
            import yaml

            spec = yaml.safe_load(raw)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise ConfigError(f"cannot parse the sweep spec ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(spec, dict):
        raise ConfigError("a sweep spec is a mapping (name, preset or presets, grid, ...)", path)
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"unknown sweep spec key(s) {sorted(unknown)}; keys: {sorted(SPEC_KEYS)}", path)
    bad_grid = set(spec.get("grid") or {}) - GRID_KEYS
    if bad_grid:
        raise ConfigError(f"cannot sweep over {sorted(bad_grid)}; grid keys: {sorted(GRID_KEYS)}", path)
    if not spec.get("preset") and not spec.get("presets"):
        raise ConfigError("a sweep spec needs preset: NAME or presets: [NAMES]", path)
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return spec


def expand(spec: dict[str, Any]) -> list[Run]:
    """Every run of a spec: presets x grid x seeds, each config validated before anything trains."""
    from tokendyn.trainers.config import from_preset

    presets = spec.get("presets") or [spec["preset"]]
    grid = spec.get("grid") or {}
    keys = sorted(grid)
    seeds = spec.get("seeds") or [None]
    fixed = dict(spec.get("set") or {})
    for key in ("steps", "precision", "record", "device"):
        if key in spec:
            fixed[key] = spec[key]
    runs = []
    for preset in presets:
        for values in itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)):
            for seed in seeds:
                overrides = {**fixed, **dict(zip(keys, values))}
                if seed is not None:
                    overrides["seed"] = int(seed)
                parts = [preset] + [f"{k}{v}" for k, v in zip(keys, values)] + ([f"seed{seed}"] if seed is not None else [])
                cfg = from_preset(preset, **overrides)
                cfg.validate()
                runs.append(Run("-".join(str(p) for p in parts), preset, overrides))
    if len({r.run_id for r in runs}) != len(runs):
        raise ConfigError("the spec expands to duplicate runs")
    return runs


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
        "ffn_hidden": int(cfg["ffn"] or round(cfg["dim"] * cfg["ffn_ratio"])),
        "n_params": result.n_params, "device": result.device,
        "steps_per_second": result.steps_per_second, "tokens_per_second": result.steps_per_second * tokens_per_step,
        "frame_rate_steps_per_million_tokens": 1e6 / tokens_per_step,
        "final_loss": result.final_loss, "heldout_loss": result.heldout_loss,
        "unigram_entropy": result.unigram_entropy,
        "escapes_unigram": bool(result.final_loss < result.unigram_entropy),
        "loss_curve": {"step": ds.step.values.tolist(), "loss": [float(v) for v in ds["loss"].values]},
        "movie": movie, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
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
    from tokendyn.cluster import compute_on

    say = log or (lambda text: print(text, file=sys.stderr))
    spec = load_spec(source)
    runs = expand(spec)
    run_dir = os.path.join(os.path.abspath(out_dir), "runs")
    os.makedirs(run_dir, exist_ok=True)
    done = {r.run_id for r in runs if os.path.exists(os.path.join(run_dir, r.run_id + ".json"))}
    todo = [r for r in runs if r.run_id not in done]
    say(f"sweep {spec['name']}: {len(runs)} runs, {len(done)} already finished, {len(todo)} to run")
    if todo:
        with compute_on(scheduler, workers or 1) as client:
            from distributed import as_completed
            from tqdm.auto import tqdm

            futures = {client.submit(run_one, r, run_dir, key=f"tokendyn-run-{r.run_id}", pure=False): r for r in todo}
            with tqdm(total=len(todo), desc="sweep", unit="run", file=sys.stderr) as bar:
                for future in as_completed(futures):
                    run = futures[future]
                    try:
                        metrics = future.result()
                        bar.set_postfix_str(f"{run.run_id}: {metrics['tokens_per_second']:.0f} tok/s")
                    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                        say(f"run {run.run_id} failed: {exc}")
                    bar.update(1)
    results = []
    for r in runs:
        path = os.path.join(run_dir, r.run_id + ".json")
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
    if not results:
        raise ConfigError("no run of the sweep finished", out_dir)
    paths = summarize(spec, results, os.path.abspath(out_dir))
    return {"spec": spec, "runs": len(runs), "finished": len(results), "skipped": len(done), **paths}
