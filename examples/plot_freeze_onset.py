"""
Find the freeze onset of a bf16-pure run
========================================

With parameters stored in bfloat16, every embedding coordinate sits on the bf16 lattice; as the
learning rate decays, updates become smaller than half a lattice spacing and tokens stop moving for
good. :func:`tokendyn.analysis.lattice_motion` counts lattice sites moved on the raw bits and finds
each token's freeze step and the cloud's freeze onset ("fimbulwinter").
"""
import os
import tempfile

import matplotlib.pyplot as plt

import tokendyn
from tokendyn.analysis import lattice_motion

path = os.path.join(tempfile.mkdtemp(), "bf16.h5")
tokendyn.train("tiny", out=path, steps=300, precision="bf16-pure", progress=False, sample_tokens=0,
               log=lambda s: None)
lat = lattice_motion(tokendyn.open_movie(path))
print(lat.freeze_onset.to_pandas())

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
for cls in lat["class"].values:
    t = lat.temperature.sel({"class": cls})
    a.plot(lat.step, t.where(t > 0), label=str(cls))
    b.plot(lat.step, lat.frozen_fraction.sel({"class": cls}), label=str(cls))
    onset = float(lat.freeze_onset.sel({"class": cls, "threshold": 0.5}))
    b.axvline(onset, ls=":", color=b.lines[-1].get_color())
a.set(xlabel="step", ylabel="temperature (sites² per coordinate)", yscale="log")
b.set(xlabel="step", ylabel="frozen fraction", title="dotted: half frozen")
a.legend()
plt.tight_layout()
