"""The analyses' benchmark for two versions of the code side by side: this tree and a baseline tree,
alternated (this, baseline, this) on one movie, so a refactor's speed is compared with what it replaced.

    git archive 03029c5 | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    python benchmarks/bench_compare.py --base-tree /tmp/base [--movie /tmp/tokendyn-d2-bench.h5]
                                       [--section compare] [--log compare.log]
    python benchmarks/bench_compare.py --from-log compare.log --base-name 03029c5 --section NAME

Each run is ``benchmarks/bench_analysis.py`` of its own tree (``--repeats 3 --ref-frames 20``); their
JSON lines are printed tagged ``new``, ``base`` or ``new2`` and kept in ``--log``. ``--from-log`` writes
the RESULTS.md section from such a log (of a run on another machine) without running anything.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import machine, update_section  # noqa: E402

ROOT = os.path.dirname(HERE)
RUNS = (("new", ROOT), ("base", None), ("new2", ROOT))


def run(tag: str, tree: str, movie: str, log: str, frames: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "bench_analysis.py"), "--movie", movie,
           "--repeats", "3", "--ref-frames", "20", "--frames", str(frames), "--section", f"scratch-{tag}"]
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
    with open(log, "a") as f:
        for line in out.splitlines():
            if line.startswith("{") and '"figure"' in line:
                print(f"{tag} {line}", flush=True)
                f.write(f"{tag} {line}\n")


def table(log: str, base_name: str) -> str:
    figures: dict[str, dict[str, dict]] = {}
    for line in open(log):
        tag, _, payload = line.partition(" ")
        fig = json.loads(payload)
        if "time / h5py read" in fig["figure"] or "peak RSS" in fig["figure"]:
            figures.setdefault(fig["figure"], {})[tag] = fig
    rows = [f"| figure | new | {base_name} (baseline) | new, again | new / baseline | seconds: new / baseline |",
            "|---|---|---|---|---|---|"]
    for name, by_tag in figures.items():
        values = [by_tag.get(t, {}).get("value", float("nan")) for t in ("new", "base", "new2")]
        seconds = [by_tag.get(t, {}).get("seconds") for t in ("new", "base", "new2")]
        cells = [f"{v:.3g}" + (f" ({s:.3f} s)" if s is not None else "") for v, s in zip(values, seconds)]
        ratio = f"{values[0] / values[1]:.2f}, {values[2] / values[1]:.2f}" if values[1] else "-"
        in_seconds = (f"{seconds[0] / seconds[1]:.2f}, {seconds[2] / seconds[1]:.2f}"
                      if None not in seconds and seconds[1] else "-")
        rows.append(f"| {name} | {' | '.join(cells)} | {ratio} | {in_seconds} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-tree", help="a checkout of the baseline (git archive REV | tar -x -C DIR)")
    ap.add_argument("--base-name", default="baseline", help="how the table names the baseline (its commit)")
    ap.add_argument("--movie", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-d2-bench.h5"))
    ap.add_argument("--log", default="compare.log")
    ap.add_argument("--frames", type=int, default=2000, help="frames of the benchmark movie (made if missing)")
    ap.add_argument("--from-log", default=None, help="write the section from this log; run nothing")
    ap.add_argument("--section", default="compare")
    ap.add_argument("--machine", default=None, help="the machine the log's runs were made on (with --from-log)")
    args = ap.parse_args()
    if args.from_log is None:
        if not args.base_tree:
            ap.error("--base-tree is needed to run (or --from-log to tabulate a log)")
        open(args.log, "w").close()
        results = os.path.join(HERE, "RESULTS.md")
        kept = open(results).read()  # each bench_analysis run writes a scratch section: not kept
        try:
            for tag, tree in RUNS:
                run(tag, tree or os.path.abspath(args.base_tree), args.movie, args.log, args.frames)
        finally:
            with open(results, "w") as f:
                f.write(kept)
    log = args.from_log or args.log
    update_section(args.section, f"""
## This tree against {args.base_name}, side by side (`benchmarks/bench_compare.py`, `--section {args.section}`)

{args.machine or machine()}. `bench_analysis.py` of each tree on one Duckling II movie, run
new, baseline, new again (three timed runs each, median; each analysis against the median of the h5py
reads made right before it). Values: time / h5py read (seconds in brackets), or peak RSS in MB.

{table(log, args.base_name)}
""")


if __name__ == "__main__":
    main()
