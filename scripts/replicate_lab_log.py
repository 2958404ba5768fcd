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


def config_of(c: dict[str, Any], group: str) -> dict[str, Any]:
    by_path = {r["path"]: r for r in c["runs"]}
    return by_path[c["groups"][group][0]]


def hypersphere(c: dict[str, Any]) -> str:
    rows, holds, lacks = [], [], []
    for g in c["groups"]:
        ex = cell(c, "hypersphere", "outward_excess", g)
        rho = cell(c, "hypersphere", "rho_mean_all", g)
        expected = cell(c, "hypersphere", "rho_expected", g)
        iso = run_values(c, "hypersphere", "isotropic", g)
        if ex is None:
            continue
        rows.append([g, pm(ex), pm(rho), f"{expected['value']:.4f}" if expected else "n/a",
                     f"{sum(1 for v in iso if v is False)} of {len(iso)}"])
        (holds if ex.get("low") is not None and ex["low"] > 0 else lacks).append(g)
    def values(groups: list[str]) -> str:
        return ", ".join(pm(cell(c, "hypersphere", "outward_excess", g)).split(" (n=")[0] for g in groups)

    tied = [g for g in c["groups"] if config_of(c, g).get("tied") is True and cell(c, "hypersphere", "outward_excess", g)]
    untied = [g for g in c["groups"] if config_of(c, g).get("tied") is False
              and cell(c, "hypersphere", "outward_excess", g)]
    clear = [g for g in holds if cell(c, "hypersphere", "outward_excess", g)["value"] > 0.1]
    if clear and set(clear) == set(tied):
        excess = (f"reproduced in the tied runs** (outward excess {values(tied)}), **not in the untied ones** "
                  f"({values(untied)}: at most a hundredth of the step)")
    elif clear:
        excess = f"reproduced in {len(clear)} of {len(rows)} groups ({', '.join(clear)})**"
    else:
        excess = "not reproduced**"
    return f"""## 1. Dead tokens walk on a hypersphere with excess outward motion

Measured: the hypersphere walk of the dead and phantom tokens about the centroid of all tokens
(the outward excess is the mean radial step over the RMS step; the radial fraction of an isotropic
step is 1/d). Each group: mean over its seeds ± its standard error.

{table(["group", "outward excess", "mean radial fraction", "1/d", "runs rejecting an isotropic walk"], rows)}

- **Excess outward motion: {excess} (rule: the 95 % interval of a group's outward excess lies
  above 0 and the excess is more than a tenth of the step).
- **A walk on the hypersphere (steps isotropic, radius nearly constant): not what these runs show**
  where the excess holds: the mean radial fraction is many times 1/d, so the tokens' steps are
  mostly radial, outward; they do not diffuse over a sphere.
- **What pushes them outward** (the lab log's mechanistic question): in the untied runs the dead and
  phantom rows of W (the input embedding) never receive a gradient, since those ids never occur in
  the input; only weight decay moves them, and the excess vanishes. In the tied runs the same rows
  are also the output embedding, and the softmax's gradient pushes every row that is not the target
  away from the hidden states. The shuffled-targets control, which learns nothing, still shows the
  excess: the push does not need correct answers, only a softmax over tokens that are never targets.
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
  group; most: {best[1]} in {best[0] or "none"}). `inhale` counts a phase only where the radius falls by
  at least 3 times its frame-to-frame noise (z ≥ 3); a dip smaller than that is not told apart from
  noise, and is not counted.
"""


def lattice(c: dict[str, Any]) -> str:
    rows, froze = [], []
    if "lattice" not in c["headlines"]:
        return "## 3. Tokens freeze below the bf16 lattice\n\nNo run is a bf16 movie.\n"
    for g in c["groups"]:
        cells = {cls: cell(c, "lattice", f"{cls}.frozen_fraction_last", g) for cls in ("live", "dead", "phantom")}
        if not any(cells.values()):
            continue
        rows.append([g, *(pm(cells[cls], ".2g") for cls in ("live", "dead", "phantom"))])
        froze += [(g, cls) for cls, est in cells.items() if est and est.get("value") is not None and est["value"] >= 0.5]
    where = ", ".join(f"{cls} in {g}" for g, cls in froze)
    verdict = f"half of a class or more frozen: {where}" if froze else "no class half frozen"
    untied_note = ""
    if any(config_of(c, g).get("tied") is False for g, _ in froze):
        untied_note = (" The frozen classes of the untied runs are rows that receive no gradient at all (ids never in "
                       "the input); weight decay alone moves them by less than half a bf16 spacing, so round-to-nearest "
                       "never moves them: frozen from the first steps, below the lattice, but not by the dynamics the "
                       "lab log describes.")
    return f"""## 3. Tokens freeze below the bf16 lattice

Measured: `lattice_motion` on the bf16-pure movies (a bf16-mixed run keeps fp32 weights, so it has no
lattice to freeze on): the fraction of each class whose bits never change again, mean over the seeds ±
its standard error.

{table(["group", "live frozen at the end", "dead", "phantom"], rows)}

- **{verdict}.**{untied_note} Live tokens do not freeze in these 200 steps. The learning rate of these
  runs decays to 10 % of its peak, not to zero; a freeze at the end of a schedule that ends at zero
  would be the schedule's doing, and `lattice_motion` says so.
"""


def phantom_vs_dead(c: dict[str, Any]) -> str:
    per_run: dict[tuple[str, str], list[str]] = {}
    for r in c["tests"]["within_run"]:
        if (r["a"], r["b"]) == ("dead", "phantom"):
            per_run.setdefault((r["group"], f"{r['analysis']}: {r['quantity']}"), []).append(r["verdict"])
    rows, tallies = [], {"same": 0, "different": 0, "inconclusive": 0, "too few": 0}
    for r in c["tests"]["within_group"]:
        if (r["a"], r["b"]) != ("dead", "phantom"):
            continue
        key = (r["group"], f"{r['analysis']}: {r['quantity']}")
        verdicts = per_run.get(key, [])
        counts = ", ".join(f"{v} {verdicts.count(v)}" for v in tallies if v in verdicts)
        for v in verdicts:
            tallies[v] += 1
        rows.append([r["group"], key[1], pm(r.get("difference")), counts, r["verdict"]])
    total = sum(tallies.values())
    summary = ", ".join(f"{v} in {n}" for v, n in tallies.items() if n)
    repeated = [k for k, v in per_run.items() if v.count("different") > 1]
    if tallies["different"] == 0:
        answer = "no per-token test tells them apart"
    elif not repeated:
        answer = (f"{tallies['different']} of {total} per-token tests say `different` (at α = 0.05 about "
                  f"{0.05 * total:.0f} would by chance), and none of them repeats in a second seed of its group")
    else:
        answer = "these differ in more than one seed: " + "; ".join(f"{g}: {q}" for g, q in repeated)
    verdict = "behave like natural dead tokens" if not repeated else "differ from natural dead tokens in part"
    return f"""## 4. Phantom tokens against natural dead tokens

Measured: one number per token (displacement, radius, outward excess, radial fraction, freeze step,
frozen). Within each run, per token: Mann-Whitney U, `same` when the 90 % interval of Cliff's delta
lies within ± {c['options']['margin']}. Over each group's three seeds: Welch's t on the runs' class
means, `same` when the 90 % interval of Hedges' g lies within ± {c['options']['run_margin']} (with three
seeds that interval is about ± 1.3 wide, so over runs the answer is `inconclusive` unless the classes
differ a lot).

{table(["group", "quantity", "phantom − dead (over seeds)", "per token, within each run", "over seeds"], rows)}

Per-token tests, all groups and quantities: {summary} of {total}. **Phantom tokens {verdict} in these
runs**: {answer}. Over seeds, no quantity is `different`. (Both kinds of row are ids the model never
sees in its input here: the natural dead ones come from a script the tokenizer saw and the model never
does; so the lab log's question is answered for these two kinds, not for rare-but-seen tokens.)
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
