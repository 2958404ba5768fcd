"""The Sphinx docs build with warnings as errors, running every example of the gallery."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def test_docs_build_with_warnings_as_errors_and_run_the_examples(tmp_path):
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("myst_parser")
    env = {**os.environ, "MPLBACKEND": "Agg", "TOKENDYN_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "html"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                        os.path.join(ROOT, "docs"), str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    examples = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.startswith("plot_"))
    assert len(examples) >= 5
    for name in examples:  # every example ran and made at least one figure
        page = (out / "auto_examples" / name.replace(".py", ".html")).read_text()
        assert "sphx-glr-single-img" in page or "sphx-glr-multi-img" in page, name
    for page in ("getting_started", "format", "analyses/hypersphere", "analyses/lattice", "api"):
        assert (out / f"{page}.html").exists()
    assert "plot_directive" in (out / "analyses" / "inhale.html").read_text()  # the page's figure
    shutil.rmtree(os.path.join(ROOT, "docs", "auto_examples"), ignore_errors=True)
