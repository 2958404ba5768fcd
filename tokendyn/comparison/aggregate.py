"""The comparison itself, from the runs' digests: headlines side by side with each group's mean
and its uncertainty, curves averaged over a group's runs with a bootstrap band, events counted,
and the token classes tested against each other within runs and across groups."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from tokendyn import format as fmt
from tokendyn.errors import CompareError
from tokendyn.stats import Estimate, band
from tokendyn.stats.twosample import compare_runs, compare_tokens, verdict_text

from .digest import RunDigest


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested headline as ``{"dead.final_mean_step_displacement": value, ...}`` (scalars only)."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = value
    return out


def error_of(key: str) -> str | None:
    """The headline number whose standard error ``key`` is (``X_error`` beside ``X``, or a part
    ``X_error`` of a nested path: ``msd_error.dead.4`` is the error of ``msd.dead.4``), else ``None``."""
    parts = key.split(".")
    if not any(part.endswith("_error") for part in parts):
        return None
    return ".".join(part[: -len("_error")] if part.endswith("_error") else part for part in parts)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def over_runs(values: Sequence[float], errors: Sequence[float | None], confidence: float = 0.95) -> Estimate:
    """A group's value of one number: the mean over its runs with the t interval of that mean
    (the spread between seeds); one run: its own value and error."""
    x = np.asarray([v for v in values if _is_number(v) and math.isfinite(v)], float)
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, confidence, 0, "no finite value")
    if x.size == 1:
        own = [e for v, e in zip(values, errors) if _is_number(v) and math.isfinite(v)][0]
        err = float(own) if _is_number(own) else math.nan
        z = sps.norm.ppf(0.5 + confidence / 2)
        return Estimate(float(x[0]), err, x[0] - z * err, x[0] + z * err, confidence, 1,
                        "one run: its own error" if math.isfinite(err) else "one run: no error")
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    t = sps.t.ppf(0.5 + confidence / 2, x.size - 1)
    return Estimate(float(x.mean()), se, float(x.mean() - t * se), float(x.mean() + t * se), confidence, int(x.size),
                    f"mean over {x.size} runs (t interval)")


def headlines(runs: Sequence[RunDigest], groups: Mapping[str, list[str]], name: str) -> dict[str, Any]:
    """Every headline number of one analysis: per run (value, error) and per group (:func:`over_runs`)."""
    flat = {r.path: flatten(r.analyses[name].headline) for r in runs if name in r.analyses}
    errors = {p: {error_of(k): v for k, v in values.items() if error_of(k)} for p, values in flat.items()}
    keys: list[str] = []
    for values in flat.values():
        keys += [k for k in values if k not in keys and not error_of(k)]
    table: dict[str, Any] = {}
    for key in keys:
        per_run = {p: {"value": v.get(key), "error": errors[p].get(key)} for p, v in flat.items() if key in v}
        row: dict[str, Any] = {"runs": per_run, "groups": {}}
        if any(_is_number(c["value"]) for c in per_run.values()):
            for label, members in groups.items():
                cells = [per_run[p] for p in members if p in per_run]
                if cells:
                    row["groups"][label] = over_runs([c["value"] for c in cells], [c["error"] for c in cells])
        table[key] = row
    return table


def _grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves of several runs on the union of their steps (NaN where a run has no frame)."""
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    out = np.full((len(curves), steps.size), np.nan)
    for i, (s, v) in enumerate(curves):
        out[i, np.searchsorted(steps, s)] = v
    return steps, out


def curves(runs: Sequence[RunDigest], groups: Mapping[str, list[str]], name: str) -> dict[str, Any]:
    """Each curve of one analysis, per class and group: the runs on common steps, their mean and its
    bootstrap band over the runs."""
    by_path = {r.path: r for r in runs}
    names: list[str] = []
    for r in runs:
        if name in r.analyses:
            names += [k for k in r.analyses[name].curves if k not in names]
    out: dict[str, Any] = {}
    for curve in names:
        first = next(r.analyses[name].curves[curve] for r in runs if name in r.analyses
                     and curve in r.analyses[name].curves)
        entry: dict[str, Any] = {"long_name": first.long_name, "units": first.units, "classes": {}}
        for label, members in groups.items():
            got = [by_path[p].analyses[name].curves[curve] for p in members
                   if name in by_path[p].analyses and curve in by_path[p].analyses[name].curves]
            for c in got:
                for cls, values in c.by_class().items():
                    entry["classes"].setdefault(cls, {}).setdefault(label, []).append((c.steps, values))
        for per_group in entry["classes"].values():
            for label, pairs in list(per_group.items()):
                steps, grid = _grid(pairs)
                mean, low, high = band(grid)
                per_group[label] = {"steps": steps, "runs": grid, "mean": mean, "low": low, "high": high}
        out[curve] = entry
    return out


def loss_curves(runs: Sequence[RunDigest], groups: Mapping[str, list[str]]) -> dict[str, Any]:
    """The training loss of each group, as :func:`curves` gives an analysis's."""
    by_path = {r.path: r for r in runs}
    out: dict[str, Any] = {}
    for label, members in groups.items():
        pairs = [(by_path[p].loss.steps, by_path[p].loss.values) for p in members if by_path[p].loss is not None]
        if pairs:
            steps, grid = _grid(pairs)
            mean, low, high = band(grid)
            out[label] = {"steps": steps, "runs": grid, "mean": mean, "low": low, "high": high}
    return out


def _event_text(kind: str, values: list[Any]) -> str:
    n = len(values)
    if kind == "bool":
        return f"{sum(bool(v) for v in values)} of {n} runs"
    if kind == "int":
        counts: dict[int, int] = {}
        for v in values:
            counts[int(v)] = counts.get(int(v), 0) + 1
        return ", ".join(f"{k} in {c} of {n}" for k, c in sorted(counts.items(), reverse=True))
    finite = np.asarray([v for v in values if _is_number(v) and math.isfinite(v)], float)
    if finite.size == 0:
        return f"in none of {n} runs"
    spread = f" ± {finite.std(ddof=1):.3g}" if finite.size > 1 else ""
    return f"step {finite.mean():.4g}{spread} (in {finite.size} of {n} runs)"


def events(runs: Sequence[RunDigest], groups: Mapping[str, list[str]], name: str) -> dict[str, Any]:
    """One analysis's events counted over each group's runs, with a sentence for each."""
    by_path = {r.path: r for r in runs}
    out: dict[str, Any] = {}
    for label, members in groups.items():
        digests = [by_path[p].analyses[name] for p in members if name in by_path[p].analyses]
        if not digests or not any(d.events for d in digests):
            continue
        group: dict[str, Any] = {}
        for key in digests[0].events:
            values = [d.events.get(key) for d in digests]
            values = [math.nan if v is None else v for v in values]
            kind = "bool" if all(isinstance(v, bool) for v in values) else \
                "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "step"
            group[key] = {"kind": kind, "values": values, "text": _event_text(kind, values)}
        _pair_phases(group)
        out[label] = group
    return out


def _pair_phases(group: dict[str, Any]) -> None:
    """``X_start`` and ``X_bottom`` as one range: "steps 12-40 ± 4"."""
    for key in [k for k in group if k.endswith("_start")]:
        stem = key[: -len("_start")]
        if stem + "_bottom" not in group:
            continue
        start = np.asarray([v for v in group[key]["values"] if _is_number(v) and math.isfinite(v)], float)
        bottom = np.asarray([v for v in group[stem + "_bottom"]["values"] if _is_number(v) and math.isfinite(v)], float)
        if start.size and bottom.size:
            sd = max(start.std(ddof=1) if start.size > 1 else 0.0, bottom.std(ddof=1) if bottom.size > 1 else 0.0)
            spread = f" ± {sd:.2g}" if start.size > 1 else ""
            group[stem] = {"kind": "range", "values": [], "text": f"steps {start.mean():.4g}-{bottom.mean():.4g}{spread}"
                           f" (in {start.size} of {len(group[key]['values'])} runs)"}


CLASS_PAIRS = [("live", "dead"), ("live", "phantom"), ("dead", "phantom")]


def class_tests(runs: Sequence[RunDigest], groups: Mapping[str, list[str]], *, alpha: float, margin: float,
                run_margin: float) -> dict[str, list[dict[str, Any]]]:
    """The token classes compared with a test: within each run (per token), within each group over
    its runs (run means of each class), and one class across groups (over runs where both groups
    have two or more, else over the tokens of their runs)."""
    by_path = {r.path: r for r in runs}
    within, grouped, across = [], [], []
    quantities: list[tuple[str, str]] = []
    for r in runs:
        for name, d in r.analyses.items():
            quantities += [(name, q) for q in d.token_values if (name, q) not in quantities]

    def values(path: str, name: str, quantity: str, cls: str) -> np.ndarray | None:
        d = by_path[path].analyses.get(name)
        if d is None or quantity not in d.token_values:
            return None
        return d.token_values[quantity].by_class.get(cls)

    def row(where: dict[str, Any], name: str, quantity: str, comparison: Any) -> dict[str, Any]:
        q = next(by_path[p].analyses[name].token_values[quantity] for p in by_path
                 if name in by_path[p].analyses and quantity in by_path[p].analyses[name].token_values)
        return {**where, "analysis": name, "long_name": q.long_name, "units": q.units, "note": q.note,
                **comparison.as_dict(), "text": verdict_text(comparison)}

    for label, members in groups.items():
        for name, quantity in quantities:
            for a, b in CLASS_PAIRS:
                run_means: dict[str, list[float]] = {a: [], b: []}
                for path in members:
                    va, vb = values(path, name, quantity, a), values(path, name, quantity, b)
                    if va is None or vb is None:
                        continue
                    c = compare_tokens(va, vb, quantity=quantity, names=(a, b), alpha=alpha, margin=margin)
                    within.append(row({"group": label, "run": path}, name, quantity, c))
                    for cls, v in ((a, va), (b, vb)):
                        finite = v[np.isfinite(v)]
                        run_means[cls].append(float(finite.mean()) if finite.size else math.nan)
                if len(run_means[a]) >= 2:
                    c = compare_runs(run_means[a], run_means[b], quantity=quantity, names=(a, b), alpha=alpha,
                                     margin=run_margin)
                    grouped.append(row({"group": label, "runs": len(run_means[a])}, name, quantity, c))
    for (ga, ma), (gb, mb) in itertools.combinations(groups.items(), 2):
        for name, quantity in quantities:
            for cls in fmt.TOKEN_CLASSES:
                per_a = [v for v in (values(p, name, quantity, cls) for p in ma) if v is not None]
                per_b = [v for v in (values(p, name, quantity, cls) for p in mb) if v is not None]
                if not per_a or not per_b:
                    continue
                if len(per_a) >= 2 and len(per_b) >= 2:
                    mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan  # noqa: E731
                    c = compare_runs([mean(v) for v in per_a], [mean(v) for v in per_b], quantity=quantity,
                                     names=(ga, gb), alpha=alpha, margin=run_margin)
                    basis = "run means"
                else:
                    c = compare_tokens(np.concatenate(per_a), np.concatenate(per_b), quantity=quantity,
                                       names=(ga, gb), alpha=alpha, margin=margin)
                    basis = "tokens (fewer than two runs in a group: the test cannot see seed-to-seed spread)"
                across.append(row({"class": cls, "basis": basis}, name, quantity, c))
    return {"within_run": within, "within_group": grouped, "across_groups": across}


def notes(runs: Sequence[RunDigest]) -> list[str]:
    """What limits the comparison: runs of different shapes, analyses that apply to some runs only."""
    out = []
    dims = sorted({r.meta["dim"] for r in runs})
    if len(dims) > 1:
        out.append(f"The runs have embedding dims {dims}: lengths in embedding units, and the radial fraction "
                   "(whose isotropic value is 1/d), compare only between runs of one dim.")
    tokens = sorted({r.meta["tokens"] for r in runs})
    if len(tokens) > 1:
        out.append(f"The runs have {tokens} tokens: curves and tests are per token class, so they compare; "
                   "class sizes differ (see the runs' table).")
    spans = sorted({tuple(r.meta["steps"] or ()) for r in runs})
    if len(spans) > 1:
        out.append(f"The runs cover different steps ({', '.join('..'.join(map(str, s)) for s in spans)}): curves are "
                   "aligned on step and a group's band is drawn only where all its runs have a frame.")
    names = sorted({n for r in runs for n in (*r.analyses, *r.not_applied, *r.failed)})
    for name in names:
        ran = [r for r in runs if name in r.analyses]
        if 0 < len(ran) < len(runs):
            why: dict[str, int] = {}
            for r in runs:
                if name not in r.analyses:
                    reason = f"{r.label} (failed: {r.failed[name]})" if name in r.failed else f"{r.label} (does not apply)"
                    why[reason] = why.get(reason, 0) + 1
            missing = [f"{n} runs of {reason}" if n > 1 else f"1 run of {reason}" for reason, n in why.items()]
            out.append(f"{name} ran on {len(ran)} of {len(runs)} runs; not on " + "; ".join(missing[:6])
                       + (" ..." if len(missing) > 6 else ""))
    return out


def common_analyses(runs: Sequence[RunDigest]) -> list[str]:
    """The analyses that ran on every run; :class:`CompareError` where there is none."""
    sets = [set(r.analyses) for r in runs]
    common = set.intersection(*sets) if sets else set()
    if not common:
        ran = "; ".join(f"{r.path}: {_ran(r)}" for r in runs)
        raise CompareError(f"the runs have no analysis in common, so nothing compares ({ran})",
                           runs[0].path if len(runs) == 1 else None)
    return [n for n in runs[0].analyses if n in common]


def _ran(run: RunDigest) -> str:
    """What ran on a run, and why the others did not."""
    parts = [", ".join(run.analyses) or "no analysis ran"]
    parts += [f"{name} failed: {problem}" for name, problem in run.failed.items()]
    if run.not_applied:
        parts.append(f"{', '.join(run.not_applied)} do not apply")
    return "; ".join(parts)
