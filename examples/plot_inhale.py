"""
The inhale in a fresh run
=========================

In several runs the notes saw the mean radius of the token cloud contract before the cloud expands
("the inhale before the sneeze"). :func:`tokendyn.analysis.inhale` finds each contraction phase, the
minimum, and the step where the expansion begins. First on a synthetic cloud with a planted
two-step inhale, then on a fresh training run.
"""
import os
import tempfile

import matplotlib.pyplot as plt

import tokendyn
from tokendyn import synthetic
from tokendyn.analysis import inhale

work = tempfile.mkdtemp()
planted = os.path.join(work, "planted.h5")
synthetic.inhale_cloud(planted, frames=260, phases=((40, 60, 0.05), (90, 110, 0.04)), expand_from=150)
ev = inhale(tokendyn.open_movie(planted))
print("planted: phases start", ev.phase_start.values, "bottom", ev.phase_bottom.values)

run = os.path.join(work, "tiny.h5")
tokendyn.train("tiny", out=run, steps=200, progress=False, sample_tokens=0, log=lambda s: None)
real = inhale(tokendyn.open_movie(run), smooth=3)
print(f"fresh run: {int(real.n_phases)} contraction phase(s), expansion from step {float(real.expansion_step):.0f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, result, title in ((axes[0], ev, "planted two-step inhale"), (axes[1], real, "tiny run")):
    ax.plot(result.step, result.radius, lw=1)
    for s, b in zip(result.phase_start.values, result.phase_bottom.values):
        ax.axvspan(s - 1, b, color="tab:red", alpha=0.2)  # from the frame before its first fall
    ax.set(xlabel="step", ylabel="mean radius R(t)", title=title)
plt.tight_layout()
