"""
Open a movie and plot token trajectories
========================================

Train the ``tiny`` preset for a few hundred steps, open its movie, and follow a few tokens through
weight space in a fixed 2-D PCA plane (fitted once on all frames, so the motion is the tokens').
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import tokendyn
from tokendyn.surfaces.player import project

path = os.path.join(tempfile.mkdtemp(), "tiny.h5")
tokendyn.train("tiny", out=path, steps=200, progress=False, sample_tokens=0, log=lambda s: None)
ds = tokendyn.open_movie(path)
print(ds)

# %%
# The most frequent live token, a rare one, a dead one and a phantom one.
counts = ds.token_count.values
cls = ds.token_class.values
live = np.flatnonzero(cls == 0)
picks = {"frequent": live[np.argmax(counts[live])], "rare": live[np.argmin(counts[live])],
         "dead": np.flatnonzero(cls == 1)[0], "phantom": np.flatnonzero(cls == 2)[0]}
proj = project(ds, fit="all", max_frames=201)
fig, ax = plt.subplots(figsize=(6, 5))
ax.scatter(proj.xy[-1, :, 0], proj.xy[-1, :, 1], s=3, color="0.8", label="all tokens, last frame")
for label, token in picks.items():
    path_xy = proj.xy[:, token]
    ax.plot(path_xy[:, 0], path_xy[:, 1], lw=1.2, label=f"{label} (token {token}: {ds.token_text.values[token]!r})")
    ax.plot(*path_xy[-1], "o", ms=4, color=ax.lines[-1].get_color())
ax.set(xlabel="PC 1", ylabel="PC 2", title="token trajectories, steps 0-200")
ax.legend(fontsize=7)
plt.tight_layout()
