"""docs/replication.md: what tokendyn measures on the lab log's findings, from the built-in
``lab-log`` experiment (``tokendyn experiment lab-log``), with error bars and a verdict for each.

    python scripts/replicate_lab_log.py [--dir runs/lab-log] [--workers 1] [--out docs/replication.md]

Runs the experiment (finished runs are skipped, so a second call only rewrites the page), then
reads its ``comparison.json``. Every number on the page comes from that file; the verdicts follow
the rules written beside each finding, so a finding that does not reproduce says so.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pm(est: dict[str, Any] | None, digits: str = ".3g") -> str:
    from tokendyn.stats import plus_minus

    if not est or est.get("value") is None:
        return "n/a"
    text = plus_minus(est["value"], est.get("error") if est.get("error") is not None else float("nan"), digits)
    return text + (f" (n={est['n']})" if est.get("n", 1) > 1 else "")


def cell(c: dict[str, Any], analysis: str, key: str, group: str) -> dict[str, Any] | None:
    return c["headlines"].get(analysis, {}).get(key, {}).get("groups", {}).get(group)


def run_values(c: dict[str, Any], analysis: str, key: str, group: str) -> list[Any]:
    runs = c["headlines"].get(analysis, {}).get(key, {}).get("runs", {})
    return [runs[p]["value"] for p in c["groups"][group] if p in runs]


def controls(c: dict[str, Any]) -> dict[str, str]:
    by_path = {r["path"]: r for r in c["runs"]}
    return {g: str(by_path[ps[0]].get("control", "none")) for g, ps in c["groups"].items()}


def table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def hypersphere(c: dict[str, Any]) -> str:
    rows, excess_ok, surface_ok = [], [], []
    for g in c["groups"]:
        ex = cell(c, "hypersphere", "outward_excess", g)
        rho = cell(c, "hypersphere", "rho_mean_all", g)
        expected = cell(c, "hypersphere", "rho_expected", g)
        iso = run_values(c, "hypersphere", "isotropic", g)
        if ex is None:
            continue
        rows.append([g, pm(ex), pm(rho), f"{expected['value']:.4f}" if expected else "n/a",
                     f"{sum(1 for v in iso if v is False)} of {len(iso)}"])
        if controls(c)[g] == "none":
            excess_ok.append(ex["value"] is not None and (ex.get("low") or -1) > 0)
            surface_ok.append(rho and expected and rho["value"] < 2 * expected["value"])
    excess = "reproduced" if excess_ok and all(excess_ok) else "not reproduced"
    surface = "reproduced" if surface_ok and all(surface_ok) else "not reproduced"
    return f"""## 1. Dead tokens walk on a hypersphere with excess outward motion

Measured: the hypersphere walk of the dead and phantom tokens about the centroid of all tokens
(the outward excess is the mean radial step over the RMS step; the radial fraction of an isotropic
step is 1/d). Each group: mean over its seeds ± its standard error.

{table(["group", "outward excess", "mean radial fraction", "1/d", "runs rejecting an isotropic walk"], rows)}

- **Excess outward motion: {excess}** (rule: the 95 % interval of the outward excess lies above 0 in
  every group without a control).
- **A walk on the hypersphere (steps isotropic, radius nearly constant): {surface}** (rule: the mean
  radial fraction below twice 1/d). The steps are mostly radial: the tokens move outward, they do not
  diffuse over a sphere.
"""


def inhale(c: dict[str, Any]) -> str:
    ev = c["events"].get("inhale", {})
    rows, two = [], []
    for g in c["groups"]:
        e = ev.get(g, {})
        if not e:
            continue
        causes = [v for k in ("phases.0.cause", "phases.1.cause") for v in run_values(c, "inhale", k, g) if v]
        counts = {cause: causes.count(cause) for cause in sorted(set(causes))}
        rows.append([g, e.get("inhale", {}).get("text", ""), e.get("phases", {}).get("text", ""),
                     e.get("first_phase", {}).get("text", ""), ", ".join(f"{k} {v}" for k, v in counts.items())])
        two.append((g, sum(1 for v in e.get("phases", {}).get("values", []) if v == 2)))
    best = max(two, key=lambda t: t[1]) if two else ("", 0)
    verdict = "reproduced" if best[1] >= 3 else "not reproduced"
    return f"""## 2. A two-step inhale before the expansion, in three runs

Measured: contraction phases of the cloud's mean radius before it expands for good (`inhale`), per
run, counted over each group's seeds; the cause of each phase (lattice: the learning rate let a
binade of coordinates cross the bf16 lattice at its start; learning: every coordinate moving).

{table(["group", "an inhale", "phases (count in runs)", "first phase", "causes of the phases"], rows)}

- **Two contraction phases in three runs: {verdict}** (rule: two phases in at least 3 runs of one
  group; most: {best[1]} in {best[0] or "none"}).
"""


def lattice(c: dict[str, Any]) -> str:
    rows, froze = [], []
    ev = c["events"].get("lattice", {})
    for g in c["groups"]:
        if "lattice" not in c["headlines"] or not any(g in v.get("groups", {}) for v in c["headlines"]["lattice"].values()):
            continue
        fr = [pm(cell(c, "lattice", f"{cls}.frozen_fraction_last", g), ".2g") for cls in ("live", "dead", "phantom")]
        half = ev.get(g, {}).get("half_frozen", {})
        rows.append([g, *fr, half.get("text", "")])
        froze.append(any(half.get("values", [])))
    verdict = "reproduced" if froze and any(froze) else "not reproduced"
    return f"""## 3. Tokens freeze below the bf16 lattice

Measured: `lattice_motion` on bf16 movies: the fraction of tokens whose bits never change again
(binomial error), and whether half of a class froze.

{table(["group", "live frozen at the end", "dead", "phantom", "half of a class frozen"], rows)}

- **A freeze: {verdict}** at this length (rule: half of a class frozen in some run). The learning rate of
  these runs decays to 10 % of its peak, not to zero; a freeze at the end of a schedule that ends at
  zero would be the schedule's doing, and `lattice_motion` says so.
"""


def phantom_vs_dead(c: dict[str, Any]) -> str:
    rows, verdicts = [], []
    for r in c["phantom_vs_dead"]:
        if "runs" not in r:
            continue
        d = r.get("difference") or {}
        rows.append([r["group"], f"{r['analysis']}: {r['quantity']}", pm(d), r["verdict"], r["text"]])
        verdicts.append(r["verdict"])
    counts = ", ".join(f"{v} {verdicts.count(v)}" for v in ("same", "different", "inconclusive", "too few")
                       if v in verdicts)
    return f"""## 4. Phantom tokens against natural dead tokens

Measured: one number per token (displacement, radius, outward excess, radial fraction, freeze step,
frozen), the runs' class means compared over each group's seeds (Welch's t; `same` when the 90 %
interval of Hedges' g lies within ± {c['options']['run_margin']}). Per-token tests within each run are in
the comparison page.

{table(["group", "quantity", "phantom − dead", "verdict", "the test"], rows)}

Verdicts: {counts or "none"}.
"""


def page(c: dict[str, Any], seconds: float | None, source: str) -> str:
    from tokendyn.stats import plus_minus

    runs = c["runs"]
    loss_rows = []
    for g, entry in c["loss"].items():
        last = [v for v in entry["mean"] if v is not None]
        loss_rows.append([g, controls(c)[g], f"{last[-1]:.3f}" if last else "n/a"])
    took = f" It took {seconds / 60:.1f} min on this machine." if seconds else ""
    _ = plus_minus
    return f"""# Replicating the lab log

This page is generated by `python scripts/replicate_lab_log.py` from the built-in experiment
`lab-log` ({len(runs)} runs in {len(c['groups'])} groups: `tokendyn experiment lab-log`).{took} Each
section states a finding of the research notes, what tokendyn measures on these runs with its
uncertainty, and whether the finding reproduces, by the rule written beside it. These are small runs
of the `tiny` preset on the embedded corpus; a finding that does not reproduce here may need the
sizes or lengths of the original runs, and the page says only what these runs show.

Source: `{source}`.

{hypersphere(c)}
{inhale(c)}
{lattice(c)}
{phantom_vs_dead(c)}
## The groups' final losses

{table(["group", "control", "mean final training loss"], loss_rows)}

What limits this comparison:

{chr(10).join("- " + n for n in c["notes"]) or "- nothing noted"}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "runs", "lab-log"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "replication.md"))
    ap.add_argument("--no-run", action="store_true", help="only rewrite the page from an existing comparison.json")
    args = ap.parse_args()
    seconds = None
    if not args.no_run:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tokendyn.surfaces.cli", "experiment", "lab-log", "-o", args.dir,
                        "--workers", str(args.workers)], check=True)
        seconds = time.perf_counter() - start
    found = sorted(glob.glob(os.path.join(args.dir, "**", "comparison.json"), recursive=True))
    if not found:
        sys.exit(f"no comparison.json under {args.dir}")
    with open(found[0], encoding="utf-8") as f:
        c = json.load(f)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page(c, seconds, os.path.relpath(found[0], ROOT)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
