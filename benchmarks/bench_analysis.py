"""Analyses on a 2,000-frame Duckling II-size bf16 movie (8192 x 128, 4 GB on disk raw).

For each analysis, measured in one run: its time / a plain h5py sequential read of ``W`` (target
<= 2), its speed against its float64 numpy reference (``tests/reference.py``; target >= 5x), and its
peak RSS (target < 1.5 GB). Each analysis runs in its own subprocess so its peak RSS is its own;
it is timed ``--repeats`` times after an untimed first call on a few frames (numba loading its
kernels: timed and reported on its own), and the median is reported, against the median of as many
h5py reads made right before it. The numpy reference holds its frames in memory, so it runs on the
first ``--ref-frames`` frames and speeds are compared per frame.

    python benchmarks/bench_analysis.py [--movie /tmp/d2-bench.h5] [--frames 2000] [--ref-frames 100]
                                        [--repeats 3] [--analyses inhale,lattice_motion]
                                        [--section analysis]

The analyses are those of the registry (``tokendyn.analysis.registry``), by function name; one
without a numpy reference in :data:`REFERENCES` gets no speed-against-numpy row.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402

WARM_FRAMES = 8  # the untimed first call: numba loads the kernels from its cache (or compiles them)
# benchmark settings per analysis: the hypersphere walk on every token (the movie has only 200 dead ones)
OPTIONS = {"hypersphere_walk": {"tokens": "all"}}
N_LIVE, N_PHANTOM, DIM = 6144, 2048, 128


def make_movie(path: str, frames: int, seed: int = 0) -> None:
    """A bf16 random walk the size of Duckling II: live tokens move, dead and phantom ones drift
    slowly, and the tokens freeze one after another on the lattice."""
    from tqdm.auto import tqdm

    from tokendyn.format import BF16Bits
    from tokendyn.recorder import Recorder

    rng = np.random.default_rng(seed)
    n = N_LIVE + N_PHANTOM
    cls = np.zeros(n, np.uint8)
    cls[N_LIVE - 200:N_LIVE] = 1
    cls[N_LIVE:] = 2
    x = rng.normal(0, 0.02, (n, DIM)).astype(np.float32)
    freeze = rng.integers(frames // 4, frames * 2, n)  # about 60% freeze within the movie
    scale = np.where(cls == 0, 2e-4, 3e-5).astype(np.float32)[:, None]
    with Recorder(path, token_class=cls, overwrite=True, title="tokendyn benchmark movie",
                  config={"model": "bench_analysis", "frames": frames}) as rec:
        for t in tqdm(range(frames), desc="writing the benchmark movie", unit="frame"):
            bits = (x.view(np.uint32) + 0x8000 >> 16).astype(np.uint16)
            rec.capture(t, W=BF16Bits(bits))
            moving = (freeze > t)[:, None]
            x += np.where(moving, rng.standard_normal((n, DIM), dtype=np.float32) * scale, 0)


def hold_in_memory(path: str):
    """Keep the movie's pages in the page cache (mapped and ``mlock``-ed while the returned map
    lives), so every figure reads from memory as it says; ``None`` where the system refuses (then
    the pages may be reclaimed between runs, as this VM's were: reads of the warm movie 1.1-2.5 s)."""
    import ctypes
    import mmap

    if not hasattr(mmap, "MAP_POPULATE"):
        return None
    with open(path, "rb") as f:
        pages = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock(ctypes.c_void_p(np.frombuffer(pages, np.uint8).ctypes.data), ctypes.c_size_t(len(pages))):
        print(f"# could not lock the movie in memory: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        pages.close()
        return None
    pages.madvise(mmap.MADV_DONTFORK)  # the analyses' processes must not inherit it (nor count it in their RSS)
    return pages


def h5py_read_seconds(path: str) -> float:
    """Read every frame of W with h5py, one chunk after another, into a reused buffer."""
    import h5py

    with h5py.File(path, "r") as f:
        dset = f["W"]
        buf = np.empty(dset.shape[1:], dset.dtype)
        t0 = time.perf_counter()
        for i in range(dset.shape[0]):
            dset.read_direct(buf, np.s_[i])
        return time.perf_counter() - t0


def run_ours(name: str, path: str, frames: int | None, repeats: int = 1) -> dict:
    """Time one analysis (computed and loaded) ``repeats`` times in this process, after a first
    call on a few frames that loads its compiled kernels (timed on its own). ``name`` may carry
    options after a colon: ``cloud_geometry:k=0``."""
    import ast

    import tokendyn
    from tokendyn.analysis import registry

    ds = tokendyn.open_movie(path)
    name, _, options = name.partition(":")
    analysis = registry.get(name)
    kwargs = dict(OPTIONS.get(name, {}))
    for pair in filter(None, options.split(",")):
        key, _, text = pair.partition("=")
        kwargs[key] = ast.literal_eval(text)
    t0 = time.perf_counter()
    analysis(ds, frames=slice(0, WARM_FRAMES), **kwargs).load()
    first_call = time.perf_counter() - t0
    sel = None if frames is None else slice(0, frames)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        analysis(ds, frames=sel, **kwargs).load()
        times.append(time.perf_counter() - t0)
    return {"seconds": float(np.median(times)), "all_seconds": times, "first_call_seconds": first_call,
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident set since it started its program (``VmHWM``; ``ru_maxrss`` would
    also count what the parent held when it forked this process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _geometry_reference(reference, x: np.ndarray, bits: np.ndarray, path: str) -> None:
    """The same quantities as cloud_geometry: radii, quantiles, top-5 principal variances per class."""
    import h5py

    reference.geometry(x)
    with h5py.File(path, "r") as f:
        classes = f["token_class"][...]
    reference.principal_variances(x, classes, 5)


# each analysis's float64 numpy reference (tests/reference.py), given (reference, x, bits, path)
REFERENCES = {
    "comoving_displacement": lambda ref, x, bits, path: ref.comoving(x, np.ones(x.shape[1], bool), 0, (1, 2, 4, 8, 16)),
    "hypersphere_walk": lambda ref, x, bits, path: ref.radial_steps(x),
    "lattice_motion": lambda ref, x, bits, path: ref.lattice(bits),
    "inhale": lambda ref, x, bits, path: ref.radius(x),
    "cloud_geometry": _geometry_reference,
}


def analysis_names(asked: list[str] | None = None) -> list[str]:
    """The function names of the analyses ``asked`` for (short or function names), else of every
    registered analysis, in the registry's order."""
    from tokendyn.analysis import registry

    specs = [registry.get(name) for name in asked] if asked else registry.analyses().values()
    return [spec.function.__name__ for spec in specs]


def run_reference(name: str, path: str, frames: int) -> dict:
    """The numpy way: load the frames (float64), compute on whole arrays."""
    import h5py
    import reference

    from tokendyn.sources.decode import bf16_bits_to_float32

    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        bits = f["W"][:frames]
    x = bf16_bits_to_float32(bits).astype(np.float64)
    REFERENCES[name](reference, x, bits, path)
    return {"seconds": time.perf_counter() - t0}


def covariance_floor(path: str, frames: int, k: int = 5) -> dict:
    """The principal variances' linear algebra alone, as cloud_geometry does it, on every core:
    per frame and class, the float32 covariance by BLAS ``syrk`` (and then its top ``k``
    eigenvalues), for ``frames`` frames, all on the centred positions of one frame already in
    memory (no reading, decoding, centring or radii: a lower bound on cloud_geometry's time)."""
    from concurrent.futures import ThreadPoolExecutor

    import h5py
    from threadpoolctl import threadpool_limits

    from tokendyn.analysis._eigen import top_eigenvalues
    from tokendyn.sources.decode import bf16_bits_to_float32

    with h5py.File(path, "r") as f:
        x = bf16_bits_to_float32(f["W"][f["W"].shape[0] // 2]).astype(np.float64)
        classes = f["token_class"][...]
    centred = [(x[classes == c] - x[classes == c].mean(0)).astype(np.float32)
               for c in np.unique(classes) if (classes == c).sum() >= 2]
    workers = os.cpu_count() or 1

    def part(count: int, eigenvalues: bool) -> None:
        product, top = np.empty((x.shape[1],) * 2, np.float32), np.empty(k)
        for _ in range(count):
            for y in centred:
                np.matmul(y.T, y, out=product)
                if eigenvalues:
                    top_eigenvalues(product, top)

    top_eigenvalues(np.eye(x.shape[1]), np.empty(k))  # load the kernel
    out = {}
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for label, eigenvalues in (("syrk", False), ("syrk_eig", True)):
            shares = [frames // workers + (j < frames % workers) for j in range(workers)]
            t0 = time.perf_counter()
            list(pool.map(part, shares, [eigenvalues] * workers))
            out[label] = time.perf_counter() - t0
    return out


def child(args: argparse.Namespace) -> None:
    if args.child == "covariance-floor":
        return print(json.dumps(covariance_floor(args.movie, args.child_frames)))
    if args.child_reference:
        result = run_reference(args.child, args.movie, args.ref_frames)
    else:
        result = run_ours(args.child, args.movie, args.child_frames, args.repeats)
    print(json.dumps(result))


def in_subprocess(*extra: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *extra], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-d2-bench.h5"))
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--ref-frames", type=int, default=100)
    ap.add_argument("--analyses", default=None, help="comma-separated function names (default: every registered one)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is reported")
    ap.add_argument("--section", default="analysis",
                    help="the section of RESULTS.md to write (another machine's figures get their own)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-reference", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-frames", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import h5py

    fresh = True
    if os.path.exists(args.movie):
        with h5py.File(args.movie, "r") as f:
            fresh = f["W"].shape[0] != args.frames
    if fresh:
        make_movie(args.movie, args.frames)
    size_gb = os.path.getsize(args.movie) / 1e9
    held = hold_in_memory(args.movie)
    h5py_read_seconds(args.movie)  # warm the page cache: every figure below reads from memory
    reads = []
    rows = []
    for name in analysis_names(args.analyses.split(",") if args.analyses else None):
        # the baseline is measured again beside each analysis: this VM's page cache is not stable
        # (the movie's pages are partly reclaimed between runs), so a ratio uses the read next to it
        read_times = [h5py_read_seconds(args.movie) for _ in range(args.repeats)]
        read_s = float(np.median(read_times))
        reads.extend(read_times)
        repeats = ("--repeats", str(args.repeats))
        ours = in_subprocess("--child", name, "--movie", args.movie, *repeats)
        io_ratio = ours["seconds"] / read_s
        rows.append(emit(figure=f"{name} time / h5py read", value=io_ratio, seconds=ours["seconds"],
                         runs=ours["all_seconds"], h5py_read_seconds=read_s, h5py_runs=read_times,
                         target="<= 2", verdict=verdict(io_ratio, 2, False)))
        rows.append(emit(figure=f"{name} first full run / h5py read (fresh memory, pools empty)",
                         value=ours["all_seconds"][0] / read_s, target="(context)", verdict="-"))
        rows.append(emit(figure=f"{name} first call on {WARM_FRAMES} frames (s; loads the kernels)",
                         value=ours["first_call_seconds"], target="(context)", verdict="-"))
        if name in REFERENCES:
            ours_ref = in_subprocess("--child", name, "--movie", args.movie, "--child-frames", str(args.ref_frames),
                                     *repeats)
            ref = in_subprocess("--child", name, "--movie", args.movie, "--child-reference",
                                "--ref-frames", str(args.ref_frames))
            speed = ref["seconds"] / ours_ref["seconds"]
            rows.append(emit(figure=f"{name} speed vs numpy reference ({args.ref_frames} frames)", value=speed,
                             ours_seconds=ours_ref["seconds"], reference_seconds=ref["seconds"], target=">= 5",
                             verdict=verdict(speed, 5, True)))
        rows.append(emit(figure=f"{name} peak RSS (MB)", value=ours["peak_rss_mb"], target="< 1536",
                         verdict=verdict(ours["peak_rss_mb"], 1536, False)))
        if name == "cloud_geometry":  # what limits it: the principal variances (see RESULTS' notes)
            bare = in_subprocess("--child", "cloud_geometry:k=0", "--movie", args.movie, *repeats)
            rows.append(emit(figure="cloud_geometry with k=0 (no principal variances) time / h5py read",
                             value=bare["seconds"] / read_s, seconds=bare["seconds"], runs=bare["all_seconds"],
                             target="(context)", verdict="-"))
            floor = in_subprocess("--child", "covariance-floor", "--movie", args.movie,
                                  "--child-frames", str(args.frames))
            rows.append(emit(figure="its float32 covariances (syrk) alone, one frame in memory, all cores / h5py read",
                             value=floor["syrk"] / read_s, seconds=floor["syrk"], target="(context)", verdict="-"))
            rows.append(emit(figure="its covariances and their top-5 eigenvalues alone, likewise / h5py read",
                             value=floor["syrk_eig"] / read_s, seconds=floor["syrk_eig"], target="(context)",
                             verdict="-"))
    rows.insert(0, emit(figure="h5py sequential read of W (median of all)", value=float(np.median(reads)),
                        seconds=float(np.median(reads)), runs=reads, target="(baseline)", verdict="-", gb=size_gb))
    table = figures_table(rows)
    title = "" if args.section == "analysis" else f", `--section {args.section}`"
    update_section(args.section, f"""
## Analyses (`benchmarks/bench_analysis.py`{title})

{machine()}. Movie: {args.frames} frames x {N_LIVE + N_PHANTOM} tokens x {DIM} bf16, {size_gb:.2f} GB, page
cache warm ({"its pages locked in memory for the whole run" if held is not None else "not locked in memory"}). Each \
analysis in its own process (peak RSS is its own), timed {args.repeats} times after an
untimed first call on {WARM_FRAMES} frames (its time is given: numba loading the kernels), the median
reported; the h5py read of W is timed {args.repeats} times right before each analysis and its median is
that analysis's baseline (all reads: {min(reads):.2f}-{max(reads):.2f} s). numpy references (float64,
`tests/reference.py`) and ours timed on the first {args.ref_frames} frames for the speed ratio. Below
cloud_geometry, what limits it: the same pass with `k=0` (no principal variances), and the principal
variances' linear algebra alone (`covariance_floor`: per frame and class the float32 `syrk`, then also
the top-5 eigenvalues, on one frame's centred positions held in memory, all cores: a lower bound).

{table}
""")


if __name__ == "__main__":
    main()
