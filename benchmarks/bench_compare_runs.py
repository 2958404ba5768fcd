"""``tokendyn compare`` on six Duckling II-size bf16 movies (8192 x 128): its cost against the sum of
the analyses it runs, and its peak memory as the number of runs grows.

For each movie, in one run of this script: every analysis that applies, run on its own as the
report runs it (``standard_run(...).load()`` and its headline, on the tokens ``compare`` gives it), summed over the
analyses and the movies (the baseline); then ``tokendyn.compare`` of 2 and of all the movies, each
in its own subprocess (its peak RSS its own). Baseline and compare alternate (base, compare, base)
so that a drift of the machine shows; the ratio is compare over the mean of the two baselines.
Target: ratio <= 1.10, peak RSS < 1.5 GB whatever the number of runs.

    python benchmarks/bench_compare_runs.py [--runs 6] [--frames 200] [--dir /tmp/tokendyn-cmp-bench]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402
from bench_analysis import DIM, N_LIVE, N_PHANTOM, make_movie, peak_rss_mb  # noqa: E402


def baseline(paths: list[str]) -> dict:
    """Every applicable analysis of every movie, run and loaded on its own: the sum of their times."""
    from tokendyn.analysis import registry
    from tokendyn.sources.dataset import open_movie

    seconds: dict[str, float] = {}
    for path in paths:
        ds = open_movie(path)
        for name, spec in registry.analyses().items():
            tokens = spec.tokens_to_compare(ds)
            if not spec.applies(ds, tokens):
                continue
            start = time.perf_counter()
            result = spec.standard_run(ds, tokens).load()
            if spec.headline is not None:  # as the report does
                spec.headline(result)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return {"seconds": sum(seconds.values()), "by_analysis": seconds, "peak_rss_mb": peak_rss_mb()}


def compare(paths: list[str], out: str) -> dict:
    import tokendyn

    start = time.perf_counter()
    tokendyn.compare(paths, out, labels=["bench=*"], progress=False)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def warm(path: str) -> None:
    """numba loads (or compiles) every kernel once, outside the timings."""
    from tokendyn.analysis import registry
    from tokendyn.sources.dataset import open_movie

    ds = open_movie(path)
    for spec in registry.analyses().values():
        tokens = spec.tokens_to_compare(ds)
        if spec.applies(ds, tokens):
            spec.standard_run(ds, tokens, frames=(0, 8)).load()


def in_subprocess(mode: str, paths: list[str], out: str = "") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--child-out", out, *paths]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-cmp-bench"))
    ap.add_argument("--section", default="compare-runs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = {"baseline": baseline, "warm": lambda p: warm(p[0]) or {}}.get(args.child)
        out = result(args.paths) if result else compare(args.paths, args.child_out)
        print(json.dumps(out))
        return
    os.makedirs(args.dir, exist_ok=True)
    paths = []
    for i in range(args.runs):
        path = os.path.join(args.dir, f"run-{i}.h5")
        marker = path + f".{args.frames}-frames"
        if not (os.path.exists(path) and os.path.exists(marker)):
            make_movie(path, args.frames, seed=i)
            open(marker, "w").close()
        paths.append(path)
    in_subprocess("warm", paths[:1])
    base1 = in_subprocess("baseline", paths)
    full = in_subprocess("compare", paths, os.path.join(args.dir, "cmp-all"))
    base2 = in_subprocess("baseline", paths)
    two = in_subprocess("compare", paths[:2], os.path.join(args.dir, "cmp-two"))
    base = (base1["seconds"] + base2["seconds"]) / 2
    ratio = full["seconds"] / base
    rows = [
        emit(figure=f"compare {args.runs} runs / sum of their analyses", value=ratio, target="<= 1.10",
             verdict=verdict(ratio, 1.10, False)),
        emit(figure=f"compare {args.runs} runs peak RSS (MB)", value=full["peak_rss_mb"], target="< 1500",
             verdict=verdict(full["peak_rss_mb"], 1500, False)),
        emit(figure="compare 2 runs peak RSS (MB)", value=two["peak_rss_mb"], target="info", verdict="-"),
    ]
    details = (f"{machine()}; {args.runs} movies of {args.frames} frames, W {N_LIVE + N_PHANTOM}x{DIM} bf16 "
               f"({(N_LIVE + N_PHANTOM) * DIM * 2 / 2**20:.0f} MiB a frame). Baseline (the analyses alone, "
               f"summed over the movies): {base1['seconds']:.1f} s and {base2['seconds']:.1f} s "
               f"({', '.join(f'{k} {v:.1f} s' for k, v in base1['by_analysis'].items())}); compare of all "
               f"{args.runs}: {full['seconds']:.1f} s, peak RSS {full['peak_rss_mb']:.0f} MB (2 runs: "
               f"{two['seconds']:.1f} s, {two['peak_rss_mb']:.0f} MB; the analyses alone peak at "
               f"{base1['peak_rss_mb']:.0f} MB).")
    update_section(args.section, f"## Comparing runs (`benchmarks/bench_compare_runs.py`)\n\n{details}\n\n"
                   + figures_table(rows))


if __name__ == "__main__":
    main()
