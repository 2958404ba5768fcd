"""The hypersphere walk's power: how often its verdict rejects isotropy, against a planted outward drift.

    python benchmarks/hypersphere_power.py [--walks 200] [--dim 64] [--out benchmarks/hypersphere_power.jsonl]
                                           [--figure docs/images/hypersphere_power.png]

Each walk is ``tokens`` tokens on the unit sphere taking isotropic Gaussian steps of RMS length
0.01 for ``frames`` frames (``tokendyn.synthetic.hypersphere_walk``'s model), with a push of
``outward`` x the step length along the radius at every step; ``outward = 0`` is the null. The
tests run the way ``hypersphere_walk`` runs them (its numba kernel over the positions in memory,
then ``walk_statistics``), about the centroid of all tokens (the default centre). For every
(tokens, frames, outward) the script writes one JSON line: the rejection rate of the verdict (the
Cauchy combination of the four tests) at alpha = 0.01 and 0.05 with its Wilson 95% interval, the
rates of the t and sign tests alone, and the mean measured outward excess. Seeds are fixed: the
numbers are reproducible. Then it draws the power curves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
from tokendyn.analysis import hypersphere as H  # noqa: E402
from tokendyn.analysis._centroids import SharedCentroids  # noqa: E402

OUTWARD = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)  # fractions of the step length
SIZES = ((64, 50), (256, 50), (256, 150))  # (tokens, frames)
ALPHAS = (0.01, 0.05)
STEP = 0.01


def walk(rng: np.random.Generator, tokens: int, dim: int, frames: int, outward: float) -> np.ndarray:
    """(frames, tokens, dim) float32 positions of one walk."""
    x = rng.normal(size=(tokens, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out = np.empty((frames, tokens, dim), np.float32)
    for t in range(frames):
        out[t] = x
        x = x + rng.normal(scale=STEP / np.sqrt(dim), size=x.shape) + outward * STEP * x / np.linalg.norm(
            x, axis=1, keepdims=True)
    return out


def tests(x: np.ndarray) -> dict:
    """``hypersphere_walk``'s statistics of positions ``x`` about the centroid of all tokens."""
    frames, tokens, dim = x.shape
    rows = np.arange(tokens, dtype=np.int64)
    edges = H.beta_edges(dim, H.ks_bins(tokens * (frames - 1)))
    part = H._walk_block(x, 0, 0, rows, SharedCentroids(rows), "centroid", rows[:0], np.array([1], np.int64), edges)
    return H.walk_statistics({k: part[f"centroid:{k}"] for k in H._SUMS}, part["centroid:rho_histogram"], dim)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95% interval of a rate of k in n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def run(walks: int, dim: int, out: str) -> list[dict]:
    rows = []
    with open(out, "w") as f:
        for tokens, frames in SIZES:
            for j, outward in enumerate(OUTWARD):
                rng = np.random.default_rng([tokens, frames, dim, j])
                t0 = time.perf_counter()
                got = [tests(walk(rng, tokens, dim, frames, outward)) for _ in range(walks)]
                excess = np.array([g["outward_excess"] for g in got])
                for alpha in ALPHAS:
                    k = sum(g["combined_pvalue"] < alpha for g in got)
                    lo, hi = wilson(k, walks)
                    row = {"tokens": tokens, "frames": frames, "steps": tokens * (frames - 1), "dim": dim,
                           "outward": outward, "alpha": alpha, "walks": walks, "center": "centroid",
                           "rejected": int(k), "rate": k / walks, "rate_low": lo, "rate_high": hi,
                           "t_rate": float(np.mean([g["t_pvalue"] < alpha for g in got])),
                           "sign_rate": float(np.mean([g["sign_pvalue"] < alpha for g in got])),
                           "outward_excess_mean": float(excess.mean()),
                           "outward_excess_sd": float(excess.std(ddof=1)),
                           "seconds": round(time.perf_counter() - t0, 2)}
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def figure(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ALPHAS), figsize=(11, 3.8), sharey=True)
    for ax, alpha in zip(axes, ALPHAS):
        for i, (tokens, frames) in enumerate(SIZES):
            pts = [r for r in rows if r["alpha"] == alpha and r["tokens"] == tokens and r["frames"] == frames]
            x = np.array([max(r["outward"], 3e-4) for r in pts]) * 100  # the null drawn at the left edge
            rate = np.array([r["rate"] for r in pts])
            err = np.array([[r["rate"] - r["rate_low"] for r in pts], [r["rate_high"] - r["rate"] for r in pts]])
            ax.errorbar(x, rate, yerr=err, marker="o", ms=3, capsize=2, color=f"C{i}",
                        label=f"{tokens} tokens x {frames - 1} steps ({pts[0]['steps']} steps)")
        ax.axhline(alpha, color="k", ls=":", lw=0.8, label=f"alpha = {alpha}")
        ax.set(xscale="log", xlabel="outward drift (% of the step length; leftmost: none)",
               title=f"verdict about the centroid, alpha = {alpha}, d = {rows[0]['dim']}")
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="rejection rate (Wilson 95%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=200)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--out", default=os.path.join(HERE, "hypersphere_power.jsonl"))
    parser.add_argument("--figure", default=os.path.join(ROOT, "docs", "images", "hypersphere_power.png"))
    args = parser.parse_args()
    figure(run(args.walks, args.dim, args.out), args.figure)


if __name__ == "__main__":
    main()
