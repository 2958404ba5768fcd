"""
The hypersphere test on dead tokens, against a null model
=========================================================

Dead tokens never appear in the training data; the research notes found that they wander like a
random walk on the surface of a hypersphere, with *more outward motion than geometry predicts*.
:func:`tokendyn.analysis.hypersphere_walk` tests that. First check it on synthetic null models with
planted truth (an isotropic walk, and the same with a 5% outward drift), then on a real run.
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

import tokendyn
from tokendyn import synthetic
from tokendyn.analysis import hypersphere_walk

work = tempfile.mkdtemp()
rows = []
for outward in (0.0, 0.05):
    path = os.path.join(work, f"walk-{outward}.h5")
    synthetic.hypersphere_walk(path, n_tokens=400, dim=32, frames=150, outward=outward, seed=3)
    h = hypersphere_walk(tokendyn.open_movie(path))
    rows.append((outward, bool(h.isotropic), float(h.outward_excess), float(h.sign_pvalue)))
    print(f"planted outward {outward:.2f}: isotropic={bool(h.isotropic)}, "
          f"outward excess {float(h.outward_excess):+.3f}, sign-test p {float(h.sign_pvalue):.2g}")

# %%
# Now the dead tokens of a real (tiny) run, in fp32.
run = os.path.join(work, "tiny.h5")
tokendyn.train("tiny", out=run, steps=200, progress=False, sample_tokens=0, log=lambda s: None)
h = hypersphere_walk(tokendyn.open_movie(run), tokens="dead")
d = int(h.attrs["dim"])
print(f"dead tokens: isotropic={bool(h.isotropic)}, outward excess {float(h.outward_excess):+.3f}, "
      f"rho {float(h.rho_mean_all):.4f} vs 1/d = {1 / d:.4f}")
fig, ax = plt.subplots(figsize=(6, 3.5))
counts = h.rho_histogram.values.astype(float)
width = float(h.rho_bin[1] - h.rho_bin[0])
ax.bar(h.rho_bin, counts / (counts.sum() * width), width=width, alpha=0.6, label="dead tokens")
grid = np.linspace(1e-3, 1, 300)
ax.plot(grid, stats.beta(0.5, (d - 1) / 2).pdf(grid), "k-", label="isotropic: Beta(1/2, (d-1)/2)")
ax.set(xlabel="radial fraction of a step", ylabel="density", yscale="log", ylim=(1e-3, None))
ax.legend()
plt.tight_layout()
