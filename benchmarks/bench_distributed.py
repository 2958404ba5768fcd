"""One analysis over the 2,000-frame Duckling II-size movie (made by bench_analysis.py) with the
plain local scheduler and on dask.distributed LocalClusters of 1 and 2 worker processes.

    python benchmarks/bench_distributed.py [--movie /tmp/tokendyn-d2-bench.h5] [--analysis inhale]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402


def timed(name: str, path: str) -> float:
    import tokendyn
    from tokendyn.analysis import registry

    ds = tokendyn.open_movie(path)
    t0 = time.perf_counter()
    registry.get(name)(ds).load()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-d2-bench.h5"))
    ap.add_argument("--analysis", default="inhale")
    args = ap.parse_args()
    if not os.path.exists(args.movie):
        sys.exit(f"{args.movie} is missing: run benchmarks/bench_analysis.py first (it writes the movie)")
    import dask
    from distributed import Client, LocalCluster

    timed(args.analysis, args.movie)  # warm: page cache, numba cache
    local = timed(args.analysis, args.movie)
    with dask.config.set(scheduler="synchronous"):
        single = timed(args.analysis, args.movie)
    cluster_times = {}
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster):
            timed(args.analysis, args.movie)  # warm the workers (imports, numba)
            cluster_times[n] = timed(args.analysis, args.movie)
    rows = [
        emit(figure=f"{args.analysis}: local threads (default scheduler)", value=local, unit="s", target="-",
             verdict="-"),
        emit(figure=f"{args.analysis}: local, one thread", value=single, unit="s", target="-", verdict="-"),
        emit(figure=f"{args.analysis}: 1 worker process", value=cluster_times[1], unit="s", target="-", verdict="-"),
        emit(figure=f"{args.analysis}: 2 worker processes", value=cluster_times[2], unit="s", target="-",
             verdict="-"),
        emit(figure="speed-up 2 workers / 1 worker", value=cluster_times[1] / cluster_times[2], target="(2 cores: <= 2)",
             verdict="-"),
        emit(figure="overhead: 1 worker / local one thread", value=cluster_times[1] / single, target="close to 1",
             verdict=verdict(cluster_times[1] / single, 1.2, False)),
        emit(figure="overhead: 2 workers / local threads", value=cluster_times[2] / local, target="close to 1",
             verdict=verdict(cluster_times[2] / local, 1.2, False)),
    ]
    table = figures_table(rows)
    update_section("distributed", f"""
## Analyses on dask.distributed (`benchmarks/bench_distributed.py`)

{machine()}. `{args.analysis}` over the {os.path.getsize(args.movie) / 1e9:.1f} GB benchmark movie, page cache warm;
LocalCluster workers with one thread each; the "close to 1" verdicts use 1.2 as the line.

{table}
""")


if __name__ == "__main__":
    main()
