"""``tokendyn compare``: a comparison of runs as one self-contained HTML page (figures embedded,
no server, no network) and ``comparison.json`` with every number of it."""
from __future__ import annotations

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
    """(id, title, inline SVG markup): the loss, every analysis's curves per class (each panel's
    title in its class's colour), the class tests."""
    from tokendyn.surfaces.figures import ordered_classes, style, subplots, svg_markup
    from tokendyn.surfaces.palette import class_colour

    colours = _colours(list(c.groups))
    made = []
    with style():
        if c.loss:
            fig, ax = subplots(height=3.2, width=7.5)
            _band_axes(ax, c.loss, colours)
            ax.set(xlabel="step", ylabel="training loss (nats/token)", title="loss")
            ax.legend(loc="upper right")
            made.append(("loss", "Training loss", fig))
        for name, per_analysis in c.curves.items():
            for curve, entry in per_analysis.items():
                classes = ordered_classes(entry["classes"])
                fig, axes = subplots(1, len(classes), height=3.3, squeeze=False, sharey=True)
                for ax, cls in zip(axes[0], classes):
                    _band_axes(ax, entry["classes"][cls], colours)
                    ax.set(xlabel="step")
                    if cls != "all":
                        ax.set_title(cls, color=class_colour(cls), fontweight="bold")
                    if _log_scale(entry["classes"]):
                        ax.set_yscale("log")
                    if len(entry["classes"][cls]) > 1 or any(e["runs"].shape[0] > 1
                                                             for e in entry["classes"][cls].values()):
                        ax.legend(loc="best", fontsize=7)
                axes[0][0].set_ylabel(_wrap(f"{entry['long_name']} ({entry['units']})", 45), fontsize=8)
                fig.suptitle(f"{name}: {curve}")
                made.append((f"{name}-{curve}", f"{name}: {entry['long_name']}", fig))
        rows = c.tests["within_group"] or c.tests["within_run"]
        if rows:
            made.append(("class-tests", "Token classes compared (effect size and its interval)", _forest(rows)))
        return [(fid, title, svg_markup(fig, title=title, prefix=f"{fid}-")) for fid, title, fig in made]


def _wrap(text: str, width: int) -> str:
    """A long axis label on at most two lines (the rest cut with an ellipsis)."""
    import textwrap

    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def _forest(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Each class comparison's effect size with its interval, coloured by verdict."""

    from tokendyn.surfaces.figures import subplots

    rows = list(rows)[:60]
    fig, ax = subplots(height=0.2 * len(rows) + 1.4, width=9.0)
    for i, r in enumerate(rows):
        colour = VERDICT_COLOURS.get(r["verdict"], "black")
        if r["effect_size"] is not None:
            lo = r["effect_low"] if r["effect_low"] is not None else r["effect_size"]
            hi = r["effect_high"] if r["effect_high"] is not None else r["effect_size"]
            ax.plot([lo, hi], [i, i], color=colour, lw=2)
            ax.plot(r["effect_size"], i, "o", color=colour, ms=4)
    labels = [f"{r.get('group', '')}: {r['quantity']} {r['a']} vs {r['b']} ({r['effect']})"[:70] for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("effect size (b over a) with its equivalence interval; colour: verdict")
    for verdict, colour in VERDICT_COLOURS.items():
        ax.plot([], [], color=colour, lw=2, label=verdict)
    ax.legend(loc="lower right", title="verdict")
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
    """The comparison's HTML page (a Jinja2 template; every string from a movie autoescaped)."""
    from markupsafe import Markup

    from tokendyn.surfaces.report import render

    figs = figures(c)
    head = ["label", "movie", "frames", "steps", "tokens (live · dead · phantom)", "dim", "dtype", "precision",
            "tied", "control", "seed"]
    run_rows = []
    for r in c.runs:
        d = r.describe()
        per = d["tokens_per_class"]
        run_rows.append([d["label"], os.path.basename(d["path"]), d["frames"], " .. ".join(map(str, d["steps"] or [])),
                         f"{d['tokens']} ({per.get('live', 0)} · {per.get('dead', 0)} · {per.get('phantom', 0)})",
                         d["dim"], d["dtype"], d.get("precision", ""), d.get("tied", ""), d.get("control", ""),
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
    o = c.options
    return render("compare.html", title=", ".join(groups)[:200], runs=c.runs, groups=groups, run_head=head,
                  run_rows=run_rows, notes=list(c.notes), head_rows=head_rows,
                  run_labels=[r.label + ": " + os.path.basename(r.path) for r in c.runs], per_run_rows=per_run_rows,
                  event_rows=event_rows, alpha=o["alpha"], interval=f"{1 - 2 * o['alpha']:.0%}", margin=o["margin"],
                  run_margin=o["run_margin"], test_head=_TEST_HEAD,
                  pvd_rows=_test_rows(c.phantom_vs_dead, ("group", "run")),
                  within_group_rows=_test_rows(c.tests["within_group"], ("group", "runs")),
                  within_run_rows=_test_rows(c.tests["within_run"], ("group", "run")),
                  across_rows=_test_rows(c.tests["across_groups"], ("class", "basis")),
                  figures=[{"id": fid, "title": title, "markup": Markup(svg)} for fid, title, svg in figs])


_TEST_HEAD = ["quantity", "classes", "n", "difference (b - a)", "verdict", "the test"]
