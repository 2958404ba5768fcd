"""docs/images/inhale_pure_vs_mixed.png: R(t) of two flannel runs of one seed, bf16-pure vs bf16-mixed,
with the inhale's phases, the learning rate and the coordinates moved and predicted to cross.

    tokendyn train --preset flannel --set steps=300 --set batch=8 --device cpu --precision bf16-pure --out pure.h5
    tokendyn train --preset flannel --set steps=300 --set batch=8 --device cpu --precision bf16-mixed --out mixed.h5
    python scripts/inhale_pure_vs_mixed.py pure.h5 mixed.h5 docs/images/inhale_pure_vs_mixed.png
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn.analysis.inhale import _summary_lines, inhale, plot_phases  # noqa: E402

LAST_STEP = 26  # the phases and the turn to expansion lie in the first 26 steps

fig, axes = plt.subplots(2, 2, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": (3, 2)})
for col, (name, path) in enumerate((("bf16-pure", sys.argv[1]), ("bf16-mixed", sys.argv[2]))):
    ev = inhale(tokendyn.open_movie(path))
    print(name, _summary_lines(ev))
    plot_phases(ev, axes[0, col], axes[1, col], zoom=True, label=f"R(t), {name}")
    axes[0, col].set_title(f"flannel, {name}: {int(ev.n_phases)} phase(s)")
    axes[0, col].set_xlim(0, LAST_STEP)
    early = ev.radius.values[: LAST_STEP + 1]
    pad = 0.1 * (np.nanmax(early) - np.nanmin(early))
    axes[0, col].set_ylim(np.nanmin(early) - pad, np.nanmax(early) + pad)
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=110)
