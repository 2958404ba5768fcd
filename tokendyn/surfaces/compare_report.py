"""``tokendyn compare``: a comparison of runs as one self-contained HTML page (figures embedded,
no server, no network) and ``comparison.json`` with every number of it."""
from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tokendyn.jsonable import jsonable
from tokendyn.stats import plus_minus

VERDICT_COLOURS = {"different": "#d62728", "same": "#2ca02c", "inconclusive": "#7f7f7f", "too few": "#bbbbbb"}


def compare(runs: Sequence[str | os.PathLike] | Mapping[str, Sequence[str | os.PathLike]],
            output: str | os.PathLike | None = None, *, labels: Sequence[str] | Mapping[str, str] | None = None,
            alpha: float = 0.05, margin: float = 0.2, run_margin: float = 0.5, progress: bool = True) -> dict[str, str]:
    """Compare runs; write ``index.html`` and ``comparison.json`` into ``output`` (default:
    ``comparison/``). Returns the two paths.

    Parameters
    ----------
    runs : sequence of movie paths, or mapping of group label to movie paths
        The runs. Runs that share a label form a group (seeds of one configuration).
    output : path, optional
        The folder written.
    labels : sequence of ``"NAME=GLOB"`` or mapping of name to glob, optional
        Groups by path: runs matching a label's glob form its group; other runs are groups of one.
    alpha, margin, run_margin : float
        The level of the tests and the equivalence margins (see :func:`tokendyn.comparison.build`).
    progress : bool
        A progress bar on stderr.
    """
    from tokendyn.comparison import build
    from tokendyn.surfaces.report import check_output_folder, make_output_folder

    out_dir = os.fspath(output) if output else "comparison"
    check_output_folder(out_dir, "comparison")
    comparison = build(runs, labels, alpha=alpha, margin=margin, run_margin=run_margin, progress=progress)
    make_output_folder(out_dir, "comparison")
    json_path = os.path.join(out_dir, "comparison.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(as_json(comparison), f, indent=1)
    html_path = os.path.join(out_dir, "index.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(page(comparison))
    return {"html": html_path, "json": json_path}


def _band_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"steps": entry["steps"], "mean": entry["mean"], "low": entry["low"], "high": entry["high"],
            "runs": int(entry["runs"].shape[0])}


def as_json(c: Any) -> dict[str, Any]:
    """Everything the page shows, as JSON (curves as each group's mean and band)."""
    curves = {name: {curve: {"long_name": e["long_name"], "units": e["units"],
                             "classes": {cls: {g: _band_json(v) for g, v in per.items()}
                                         for cls, per in e["classes"].items()}}
                     for curve, e in per_analysis.items()} for name, per_analysis in c.curves.items()}
    runs = [{**r.describe(), "analyses": {n: {"tokens": d.tokens, "seconds": d.seconds, "events": d.events}
                                          for n, d in r.analyses.items()},
             "not_applied": r.not_applied, "failed": r.failed} for r in c.runs]
    return jsonable({"options": c.options, "groups": c.groups, "runs": runs, "notes": c.notes,
                     "headlines": c.headlines, "events": c.events, "phantom_vs_dead": c.phantom_vs_dead,
                     "tests": c.tests, "curves": curves,
                     "loss": {g: _band_json(v) for g, v in c.loss.items()}})


# --- the page ---------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], raw: bool = False) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{v if raw else _e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _estimate_text(est: Any) -> str:
    if est is None:
        return ""
    value, error = est.value, est.error
    text = plus_minus(value, error) if math.isfinite(value) else "n/a"
    return f"{text} (n={est.n})" if est.n > 1 else text


def _value_text(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return ""
    v, e = cell.get("value"), cell.get("error")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    return plus_minus(v, e if isinstance(e, (int, float)) else None)


def _colours(labels: Sequence[str]) -> dict[str, str]:
    import matplotlib

    cycle = matplotlib.colormaps["tab10"]
    return {label: matplotlib.colors.to_hex(cycle(i % 10)) for i, label in enumerate(labels)}


def _band_axes(ax: Any, per_group: Mapping[str, Any], colours: Mapping[str, str]) -> None:
    for label, entry in per_group.items():
        colour = colours[label]
        steps = entry["steps"]
        for run in entry["runs"]:
            ok = np.isfinite(run)
            ax.plot(steps[ok], run[ok], color=colour, lw=0.6, alpha=0.35)
        ok = np.isfinite(entry["mean"])
        n = entry["runs"].shape[0]
        ax.plot(steps[ok], entry["mean"][ok], color=colour, lw=1.6, label=f"{label} (mean of {n})" if n > 1 else label)
        shade = np.isfinite(entry["low"])
        if shade.any():
            ax.fill_between(steps[shade], entry["low"][shade], entry["high"][shade], color=colour, alpha=0.2, lw=0)


def _log_scale(per_class: Mapping[str, Any]) -> bool:
    values = np.concatenate([e["mean"] for per in per_class.values() for e in per.values()])
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() / values.min() > 100)


def figures(c: Any) -> list[tuple[str, str, str]]:
    """(id, title, base64 PNG): the loss, every analysis's curves per class, the class tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokendyn.surfaces.report import png_data

    colours = _colours(list(c.groups))
    out = []
    if c.loss:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        _band_axes(ax, c.loss, colours)
        ax.set(xlabel="step", ylabel="training loss (nats/token)", title="loss")
        ax.legend(fontsize=7)
        out.append(("loss", "Training loss", png_data(fig)))
    for name, per_analysis in c.curves.items():
        for curve, entry in per_analysis.items():
            classes = list(entry["classes"])
            fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes) + 1, 3.2), squeeze=False,
                                     sharey=True)
            for ax, cls in zip(axes[0], classes):
                _band_axes(ax, entry["classes"][cls], colours)
                ax.set(xlabel="step", title=cls if cls != "all" else "")
                if _log_scale(entry["classes"]):
                    ax.set_yscale("log")
            axes[0][0].set_ylabel(f"{entry['long_name']} ({entry['units']})"[:70], fontsize=8)
            axes[0][-1].legend(fontsize=7)
            fig.suptitle(f"{name}: {curve}", fontsize=9)
            out.append((f"{name}-{curve}", f"{name}: {entry['long_name']}", png_data(fig)))
    rows = c.tests["within_group"] or c.tests["within_run"]
    if rows:
        out.append(("class-tests", "Token classes compared (effect size and its interval)", png_data(_forest(rows))))
    return out


def _forest(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Each class comparison's effect size with its interval, coloured by verdict."""
    import matplotlib.pyplot as plt

    rows = list(rows)[:60]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        colour = VERDICT_COLOURS.get(r["verdict"], "black")
        if r["effect_size"] is not None:
            lo = r["effect_low"] if r["effect_low"] is not None else r["effect_size"]
            hi = r["effect_high"] if r["effect_high"] is not None else r["effect_size"]
            ax.plot([lo, hi], [i, i], color=colour, lw=2)
            ax.plot(r["effect_size"], i, "o", color=colour, ms=4)
    labels = [f"{r.get('group', '')}: {r['quantity']} {r['a']} vs {r['b']} ({r['effect']})"[:70] for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("effect size (b over a) with its equivalence interval; colour: verdict")
    for verdict, colour in VERDICT_COLOURS.items():
        ax.plot([], [], color=colour, lw=2, label=verdict)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _where(row: Mapping[str, Any], key: str) -> str:
    if key == "run":
        return os.path.basename(str(row["run"])) if "run" in row else f"its {row.get('runs', '')} runs"
    return str(row.get(key, ""))


def _is_pvalue(key: str) -> bool:
    last = key.split(".")[-1]
    return "pvalue" in last or last == "p"


def _pvalue_range(row: Mapping[str, Any], members: Sequence[str]) -> str:
    """A p-value's cell of the headline table: its range over the group's runs (a p-value has no mean)."""
    values = [row["runs"][p]["value"] for p in members if p in row["runs"]]
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not values:
        return ""
    low, high = min(values), max(values)
    return f"{low:.3g}" if low == high else f"{low:.3g} .. {high:.3g}"


def _test_rows(rows: Sequence[Mapping[str, Any]], where: Sequence[str]) -> list[list[str]]:
    out = []
    for r in rows:
        diff = r.get("difference") or {}
        diff_text = plus_minus(diff.get("value"), diff.get("error")) if diff.get("value") is not None else "n/a"
        out.append([*(_where(r, w) for w in where),
                    f"{r['analysis']}: {r['quantity']}", f"{r['a']} vs {r['b']}", f"{r['n_a']} / {r['n_b']}",
                    diff_text + (f" {r['units']}" if r.get("units") and r["units"] != "1" else ""),
                    r["verdict"], r["text"]])
    return out


def page(c: Any) -> str:
    """The comparison's HTML page (every string from a movie escaped)."""
    figs = figures(c)
    head = ["label", "movie", "frames", "steps", "tokens (live/dead/phantom)", "dim", "dtype", "precision", "tied",
            "control", "seed"]
    run_rows = []
    for r in c.runs:
        d = r.describe()
        per = d["tokens_per_class"]
        run_rows.append([d["label"], os.path.basename(d["path"]), d["frames"], "..".join(map(str, d["steps"] or [])),
                         f"{d['tokens']} ({per.get('live', 0)}/{per.get('dead', 0)}/{per.get('phantom', 0)})", d["dim"],
                         d["dtype"], d.get("precision", ""), d.get("tied", ""), d.get("control", ""),
                         d.get("seed", "")])
    groups = list(c.groups)
    head_rows = []
    for name, table in c.headlines.items():
        for key, row in table.items():
            if not row["groups"]:
                continue
            head_rows.append([f"{name}: {key}", *(_pvalue_range(row, c.groups[g]) if _is_pvalue(key)
                                                  else _estimate_text(row["groups"].get(g)) for g in groups)])
    per_run_rows = []
    for name, table in c.headlines.items():
        for key, row in table.items():
            per_run_rows.append([f"{name}: {key}", *(_value_text(row["runs"].get(r.path)) for r in c.runs)])
    event_rows = []
    for name, per_group in c.events.items():
        keys = list(dict.fromkeys(k for g in per_group.values() for k in g))
        for key in keys:
            event_rows.append([f"{name}: {key}", *(per_group.get(g, {}).get(key, {}).get("text", "") for g in groups)])
    test_head = ["quantity", "classes", "n", "difference (b - a)", "verdict", "the test"]
    o = c.options
    level = (f"Tests at level α = {o['alpha']}: <b>different</b> when p &lt; α; <b>same</b> when the "
             f"{1 - 2 * o['alpha']:.0%} interval of the effect size lies within ± {o['margin']} (Cliff's delta, "
             f"per token) or ± {o['run_margin']} (Hedges' g, over runs); else <b>inconclusive</b>. Tokens of one run "
             "share one model, so a per-token test speaks for that run; only tests over runs speak for a configuration.")
    body = "\n".join(f'<section id="fig-{_e(fid)}"><h3>{_e(title)}</h3><img alt="{_e(title)}" '
                     f'src="data:image/png;base64,{png}"></section>' for fid, title, png in figs)
    notes = "".join(f"<li>{_e(n)}</li>" for n in c.notes) or "<li>The runs compare as they are.</li>"
    pvd = c.phantom_vs_dead
    pvd_html = (_table(["group", "run", *test_head], _test_rows(pvd, ("group", "run"))) if pvd else
                "<p>No run holds both natural dead and phantom tokens.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tokendyn comparison: {_e(", ".join(groups))[:200]}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}} img{{max-width:100%}}
table{{border-collapse:collapse;font-size:80%;margin-bottom:1em}} th,td{{border:1px solid #ddd;padding:2px 6px;text-align:left}}
details{{margin:.5em 0}}</style></head>
<body>
<h1>tokendyn comparison: {len(c.runs)} runs in {len(groups)} groups</h1>
<section id="runs"><h2>Runs</h2>{_table(head, run_rows)}</section>
<section id="notes"><h2>What limits this comparison</h2><ul>{notes}</ul></section>
<section id="headlines"><h2>Headline numbers</h2><p>Each group: the mean over its runs ± its standard error
(t interval over seeds, n = runs); a group of one run shows that run's own error.</p>
{_table(["number", *groups], head_rows)}
<details><summary>Each run's numbers (± the error within the run)</summary>
{_table(["number", *(r.label + ": " + os.path.basename(r.path) for r in c.runs)], per_run_rows)}</details></section>
<section id="events"><h2>Events</h2>{_table(["event", *groups], event_rows) if event_rows else "<p>No events.</p>"}</section>
<section id="phantom-vs-dead"><h2>Do phantom tokens behave like natural dead tokens?</h2><p>{level}</p>{pvd_html}</section>
<section id="class-tests"><h2>Token classes within each group (over its runs)</h2>
{_table(["group", "runs", *test_head], _test_rows(c.tests["within_group"], ("group", "runs"))) if c.tests["within_group"]
 else "<p>No group has two runs.</p>"}
<details><summary>Within each run (per token)</summary>{_table(["group", "run", *test_head],
 _test_rows(c.tests["within_run"], ("group", "run")))}</details></section>
<section id="across-groups"><h2>One class across groups</h2>
{_table(["class", "basis", *test_head], _test_rows(c.tests["across_groups"], ("class", "basis")))
 if c.tests["across_groups"] else "<p>One group only.</p>"}</section>
<section id="curves"><h2>Curves</h2><p>Thin lines: runs; thick: a group's mean; shaded: its 95 % bootstrap band over
the group's runs (where all its runs have a frame).</p>{body}</section>
</body></html>
"""
