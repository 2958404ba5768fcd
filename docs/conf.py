"""Sphinx configuration: MyST pages, API reference from the numpy-style docstrings, and the
examples/ scripts run as a sphinx-gallery at build time (on ``tiny`` runs, so it takes minutes).

The maths is rendered by a MathJax bundled into the build (``sphinx-mathjax-offline`` copies it into
``_static/mathjax``), so the pages need no network; every figure is saved with a tight bounding box,
so no axis label is cut off."""
import functools
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
os.environ.setdefault("MPLBACKEND", "Agg")

from sphinx_gallery.scrapers import matplotlib_scraper  # noqa: E402

from tokendyn._version import __version__  # noqa: E402

project = "tokendyn"
author = "the tokendyn developers"
copyright = "2026, the tokendyn developers"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 from the package, not a CDN (its module name has hyphens)
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["tokendyn.css"]  # code blocks and wide tables scroll, long inline code wraps
html_js_files = [("tokendyn.js", {"defer": "defer"})]  # long names in inline code may break after "_"
plot_rcparams = {"savefig.bbox": "tight"}  # the plot directive's figures: no label cut off
suppress_warnings = ["config.cache"]


# sphinx-gallery resets rcParams before each example, so ``savefig.bbox`` cannot be set once: its
# matplotlib scraper saves with a tight bounding box instead (a partial pickles, a local class does not)
tight_matplotlib_scraper = functools.partial(matplotlib_scraper, bbox_inches="tight")

sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "image_scrapers": (tight_matplotlib_scraper,),
}
