"""The figures of the analysis pages (docs/analyses/*.md) from a real run: each analysis's own report
figures, drawn by the functions the report uses (the registry's ``figures``), on the Quick start run.

    tokendyn train --preset tiny --steps 600 --precision bf16-pure --out runs/quickstart.h5 --overwrite
    python scripts/docs_figures.py                      # runs/quickstart.h5 -> docs/images/quickstart_*.png
    python scripts/docs_figures.py MOVIE OUT_FOLDER

An analysis's first figure is ``quickstart_NAME.png`` and any further one ``quickstart_NAME_ID.png``
(``ID`` its report section id), drawn in the report's style (``tokendyn.surfaces.figures.style``).
Rerun it whenever the report's figures change: the pages show what ``tokendyn report`` draws.
"""
from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn.analysis import registry  # noqa: E402
from tokendyn.surfaces.figures import style  # noqa: E402
from tokendyn.surfaces.palette import CLASS_COLOURS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "quickstart"
DPI = 100


def save(fig, path: str) -> str:
    """Save ``fig`` with nothing cut off (tight bounding box) and close it."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    movie = argv[0] if argv else os.path.join(ROOT, "runs", "quickstart.h5")
    out = argv[1] if len(argv) > 1 else os.path.join(ROOT, "docs", "images")
    os.makedirs(out, exist_ok=True)
    ds = tokendyn.open_movie(movie)
    for name, spec in registry.analyses().items():
        tokens = spec.report_tokens(ds, None)
        if not spec.applies(ds, tokens):
            continue
        result = spec.standard_run(ds, tokens, progress=None).load()
        if spec.figures is None:
            continue
        with style():
            figures = [(f[0], f[2]) for f in spec.figures(result, CLASS_COLOURS)]
            for i, (fid, fig) in enumerate(figures):
                file = f"{PREFIX}_{name}.png" if i == 0 else f"{PREFIX}_{name}_{fid}.png"
                print(save(fig, os.path.join(out, file)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
