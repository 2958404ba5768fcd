"""
Writing an analysis: mean and RMS norm per class
================================================

A complete new analysis in one file, following the pattern of :mod:`tokendyn.analysis.base`: the
tokens and frames selected in, one kernel per block of stored frames, the blocks' results merged by
name, a named Dataset out with ``long_name`` and ``units`` on every variable, option errors that
name the movie and the option. Registered once, it is listed and run by ``tokendyn analyse``, gets
a section and a summary.json entry in ``tokendyn report`` and lines in the train summary. Here it
runs on a synthetic bf16 movie whose tokens freeze on the lattice (``tokendyn.synthetic``). The page
:doc:`/writing_an_analysis` explains each piece.
"""
import json
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import base, registry
from tokendyn.errors import AnalysisError


# %%
# The kernel: one block of stored frames in, named fields out
# -----------------------------------------------------------
# ``block`` holds ``lead`` frames of context and then the frames analysed, as stored (bf16 bits);
# its rows are all the movie's tokens, so it is indexed with the selection's ``rows``. A real
# analysis writes this in numba (``nogil=True``) in its own ``_NAME_kernels.py``; numpy releases
# the GIL too, and keeps the example short.
def _norm_block(block, lead, start, rows, groups, n_groups, squared):
    norms = np.linalg.norm(base.decoded(block[lead:])[:, rows].astype(np.float64), axis=2)  # (frames, tokens)
    if squared:
        norms = norms**2
    per_class = [norms[:, groups == g] for g in range(n_groups)]
    return {"mean_norm": np.stack([n.mean(axis=1) for n in per_class], axis=1),
            "rms_norm": np.stack([np.sqrt((n**2).mean(axis=1)) for n in per_class], axis=1)}


# %%
# The analysis: selection in, one streaming pass, merged by name, a named Dataset out
# -----------------------------------------------------------------------------------
def class_norms(ds, tokens="all", *, frames=None, measure="norm", progress=None):
    """Mean and RMS norm of the tokens of each class, frame by frame.

    ``measure="squared"`` takes the squared norm instead. One streaming pass; the per-(frame,
    class) curves are ``mean_norm`` and ``rms_norm``, and ``final_mean_norm`` is the mean norm of
    the selection at the last frame.
    """
    base.check_choice(ds, "class_norms", "measure", measure, ("norm", "squared"))
    sel = base.selection(ds, tokens, frames)
    groups, names = base.class_groups(sel.sub[fmt.TOKEN_CLASS].values)
    parts = base.stream(base.StoredFrames(ds), sel.positions, _norm_block, sel.rows, groups, len(names),
                   measure == "squared", progress=progress)
    got = base.merge(parts, {"mean_norm": "concat", "rms_norm": "concat"})
    units = "embedding units" if measure == "norm" else "embedding units^2"
    out = xr.Dataset(coords={**base.frame_coords(sel.sub), "class": names})
    out["mean_norm"] = base.annotate(xr.DataArray(got["mean_norm"], dims=("frame", "class")),
                                "mean token norm per class", units)
    out["rms_norm"] = base.annotate(xr.DataArray(got["rms_norm"], dims=("frame", "class")),
                               "RMS token norm per class", units)
    counts = np.bincount(groups, minlength=len(names))
    out["final_mean_norm"] = base.annotate(xr.DataArray((got["mean_norm"][-1] * counts).sum() / counts.sum()),
                                      "mean token norm at the last frame", units)
    return base.finish(out, "class_norms", measure=measure, tokens=str(tokens))


# %%
# Its registration: how the report and the summaries use it
# ---------------------------------------------------------
# In a module of ``tokendyn/analysis/`` this is ``add(Analysis(...))`` (or the ``@register``
# decorator) at the end of the file; here, a ``with`` block registers it for this page only.
def _figures(result, colours):
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for cls in result["class"].values:
        ax.plot(result.step, result.mean_norm.sel({"class": cls}), color=colours.get(str(cls)), label=str(cls))
    ax.set(xlabel="step", ylabel="mean norm (embedding units)")
    ax.legend(fontsize=8)
    return [registry.ReportFigure("class-norms", "Mean token norm per class", fig)]


spec = registry.Analysis(
    "norms", class_norms,
    applies=lambda ds, tokens: ds.sizes["frame"] >= 2,
    headline=lambda r: {"final_mean_norm": r.final_mean_norm.item()},
    summary_lines=lambda r: [("class norms", f"mean norm {float(r.final_mean_norm):.4g} at the end")],
    figures=_figures,
)

work = tempfile.mkdtemp()
movie = os.path.join(work, "freeze.h5")
synthetic.lattice_freeze(movie, n_tokens=96, dim=12, frames=90, seed=3)

with registry.registered(spec):
    from tokendyn.surfaces.cli import main
    from tokendyn.surfaces.report import write_report
    from tokendyn.surfaces.summary import movie_summary

    main(["analyse", movie])  # the listing: its help is the docstring's first paragraph
    main(["analyse", movie, "norms", "-O", "measure=squared", "-q"])  # its scalars, as JSON
    ds = tokendyn.open_movie(movie)
    result = registry.get("norms")(ds)  # the same as class_norms(ds), with the result checked
    print(result)
    report = write_report(movie, os.path.join(work, "report"), progress=False)
    print("summary.json:", json.load(open(report["summary"]))["norms"])
    print("\n".join(line for line in movie_summary(movie).splitlines() if "class norms" in line))
    try:
        class_norms(ds, measure="cubed")
    except AnalysisError as exc:
        print("an option error names the movie and the option:", exc)

# %%
# The result
# ----------
# The live tokens hop until they freeze; their norms drift, then stay put.
fig, ax = plt.subplots(figsize=(7, 3.2))
for cls in result["class"].values:
    ax.plot(result.step, result.mean_norm.sel({"class": cls}), label=f"{cls}: mean")
    ax.plot(result.step, result.rms_norm.sel({"class": cls}), ls="--", label=f"{cls}: RMS")
ax.set(xlabel="step", ylabel="norm (embedding units)", title="class_norms on a lattice-freeze movie")
ax.legend(fontsize=8)
plt.tight_layout()
