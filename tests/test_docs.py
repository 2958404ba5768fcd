"""The Sphinx docs build with warnings as errors, running every example of the gallery; their maths is
rendered offline (a bundled MathJax) and nothing on the analysis pages is cut at the right edge,
checked in headless Chromium. The docs are built once for the module."""
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, browser

ANALYSIS_PAGES = ("comoving", "geometry", "hypersphere", "inhale", "lattice")
WIDTHS = (1200, 760)  # a laptop window, and a narrow one (alabaster's layout turns fluid below 875 px)

# Waits for MathJax to load and typeset (MathJax.startup.promise); "absent" if it never loads.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1], limit = arguments[0], start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done("typeset"), e => done("error: " + e));
  } else if (Date.now() - start > limit) {
    done("absent");
  } else {
    setTimeout(poll, 50);
  }
})();
"""

# The visible text outside code, scripts and rendered maths that still holds $, \\( or \\[ (raw LaTeX),
# and the number of rendered formulas (mjx-container) and of TeX errors (mjx-merror).
RAW_MATHS = r"""
const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "NOSCRIPT", "MJX-CONTAINER"]);
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const raw = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  let skipped = false;
  for (let e = el; e; e = e.parentElement) if (skip.has(e.tagName)) { skipped = true; break; }
  if (skipped || !el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
  const text = node.textContent, m = text.match(/\$|\\\(|\\\[/);
  if (m) raw.push(text.slice(Math.max(0, m.index - 30), m.index + 40));
}
return {raw: raw, rendered: document.querySelectorAll("mjx-container").length,
        errors: document.querySelectorAll("mjx-merror").length};
"""

# Blocks whose content runs past them without a scrollbar (scrollWidth > clientWidth where overflow-x
# is neither auto nor scroll: clipped or spilling out), and elements whose right edge passes the text's
# (div.body's) with no scrolling box between them and it.
CUT_AT_THE_RIGHT = r"""
const body = document.querySelector("div.body") || document.body;
const right = body.getBoundingClientRect().right;
const scrolls = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
const name = e => e.tagName.toLowerCase() + (e.className ? "." + String(e.className).split(" ")[0] : "")
                  + ": " + (e.textContent || e.getAttribute("src") || "").trim().slice(0, 60);
const cut = [];
for (const e of body.querySelectorAll("pre, div.highlight, table, img, div.math, mjx-container, code")) {
  if (e.tagName !== "CODE" && e.scrollWidth > e.clientWidth + 1 && !scrolls(e)) {
    cut.push("overflows without a scrollbar: " + name(e));
    continue;
  }
  if (e.getBoundingClientRect().right > right + 1) {
    let inside = false;
    for (let a = e; a && a !== body; a = a.parentElement) if (scrolls(a)) { inside = true; break; }
    if (!inside) cut.push("past the right edge of the text: " + name(e));
  }
}
return cut;
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """The HTML of one docs build (warnings are errors; every gallery example runs)."""
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("myst_parser")
    tmp = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "MPLBACKEND": "Agg", "TOKENDYN_CACHE": str(tmp / "cache")}
    out = tmp / "html"
    try:
        r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            os.path.join(ROOT, "docs"), str(out)], capture_output=True, text=True, env=env,
                           timeout=900)
        assert r.returncode == 0, r.stderr[-4000:]
        yield out
    finally:
        shutil.rmtree(os.path.join(ROOT, "docs", "auto_examples"), ignore_errors=True)


@pytest.fixture(scope="module")
def chromium():
    driver = browser(window=f"{WIDTHS[0]},1600")
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def maths_on(driver, url: str, wait_ms: int = 30000) -> dict:
    """Open ``url``, wait for MathJax, and return what :data:`RAW_MATHS` finds, with ``mathjax``
    ("typeset", "absent" or "error: ...")."""
    driver.get(url)
    state = driver.execute_async_script(WAIT_FOR_MATHJAX, wait_ms)
    return {"mathjax": state, **driver.execute_script(RAW_MATHS)}


def cut_on(driver, url: str) -> list[str]:
    """Open ``url`` (MathJax typeset, when the page has it) and return what :data:`CUT_AT_THE_RIGHT` finds."""
    driver.get(url)
    if driver.execute_script("return !!document.querySelector('script[src*=mathjax]')"):
        driver.execute_async_script(WAIT_FOR_MATHJAX, 30000)
    return driver.execute_script(CUT_AT_THE_RIGHT)


def test_docs_build_with_warnings_as_errors_and_run_the_examples(docs):
    out = docs
    examples = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.startswith("plot_"))
    assert len(examples) >= 5
    for name in examples:  # every example ran and made at least one figure
        page = (out / "auto_examples" / name.replace(".py", ".html")).read_text()
        assert "sphx-glr-single-img" in page or "sphx-glr-multi-img" in page, name
    for page in ("getting_started", "format", "analyses/hypersphere", "analyses/lattice", "api"):
        assert (out / f"{page}.html").exists()
    assert "plot_directive" in (out / "analyses" / "inhale.html").read_text()  # the page's figure


def test_the_maths_comes_from_the_build_not_a_cdn(docs):
    assert (docs / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (docs / "_static" / "tokendyn.css").is_file() and (docs / "_static" / "tokendyn.js").is_file()
    for page in docs.rglob("*.html"):  # no page loads MathJax from the network (a CDN)
        remote = re.findall(r"<script[^>]*src=\"((?:https?:)?//[^\"]+)\"", page.read_text())
        assert [s for s in remote if "mathjax" in s.lower()] == [], (page.relative_to(docs), remote)
    for name in ANALYSIS_PAGES:
        page = (docs / "analyses" / f"{name}.html").read_text()
        scripts = re.findall(r"<script[^>]*src=\"([^\"]+)\"", page)
        assert not [s for s in scripts if "://" in s or s.startswith("//")], (name, scripts)
        assert any(s.endswith("_static/mathjax/tex-chtml.js") for s in scripts), (name, scripts)
        assert "_static/tokendyn.css" in page and "_static/tokendyn.js" in page, name


def test_every_analysis_page_shows_its_figure_from_the_quickstart_run(docs):
    for name in ANALYSIS_PAGES:
        assert os.path.isfile(os.path.join(ROOT, "docs", "images", f"quickstart_{name}.png")), name
        page = (docs / "analyses" / f"{name}.html").read_text()
        assert f'src="../_images/quickstart_{name}.png"' in page, name
        assert (docs / "_images" / f"quickstart_{name}.png").is_file(), name
        caption = re.search(r"<figcaption>(.*?)</figcaption>", page[page.index(f"quickstart_{name}.png"):], re.S)
        assert caption and "runs/quickstart.h5" in caption.group(1), name


def dark_edges(png) -> list[str]:
    """The edges of an image (2 px) holding dark pixels: where an axis label or a title was cut off
    (every figure is saved with a margin; transparent pixels count as white)."""
    import matplotlib.image

    a = matplotlib.image.imread(png)
    rgb = a[..., :3] * a[..., 3:] + (1 - a[..., 3:]) if a.shape[-1] == 4 else a[..., :3]
    dark = rgb.mean(axis=-1) < 0.5
    edges = {"top": dark[:2], "bottom": dark[-2:], "left": dark[:, :2], "right": dark[:, -2:]}
    return [name for name, strip in edges.items() if strip.any()]


def test_no_figure_in_the_docs_is_cut_at_its_edges(docs):
    pngs = sorted(p for p in (docs / "_images").glob("*.png") if not p.name.endswith("_thumb.png"))
    assert len(pngs) >= 10 and any(p.name.startswith("sphx_glr_") for p in pngs)
    assert {p.name for p in pngs} >= {f"quickstart_{name}.png" for name in ANALYSIS_PAGES}
    assert {p.name: dark_edges(p) for p in pngs if dark_edges(p)} == {}


def test_the_analysis_pages_render_their_maths_offline_in_chromium(docs, chromium):
    for name in ANALYSIS_PAGES:
        found = maths_on(chromium, (docs / "analyses" / f"{name}.html").as_uri())
        assert found["mathjax"] == "typeset", (name, found)
        assert found["rendered"] > 0 and found["errors"] == 0, (name, found)
        assert found["raw"] == [], (name, found["raw"][:5])


def test_nothing_on_the_analysis_pages_is_cut_at_the_right_edge(docs, chromium):
    try:
        for width in WIDTHS:
            chromium.set_window_size(width, 1600)
            for name in ANALYSIS_PAGES:
                assert cut_on(chromium, (docs / "analyses" / f"{name}.html").as_uri()) == [], (width, name)
    finally:
        chromium.set_window_size(WIDTHS[0], 1600)


def test_the_checks_fail_on_raw_maths_and_on_a_clipped_code_block(tmp_path, chromium):
    """The two browser checks above can fail: raw LaTeX on a page without MathJax (what the CDN's
    script does offline), and a code block that is clipped or spills past the text."""
    page = tmp_path / "page.html"
    long = "x" * 400
    page.write_text(f"""<!DOCTYPE html><html><body><div class="body" style="width:500px">
<p>a radius of $\\sqrt{{d}}$ and <span class="math">\\(x_i\\)</span></p>
<pre style="overflow:hidden">{long}</pre><pre style="overflow:visible">{long}</pre>
<pre style="overflow-x:auto">{long}</pre><code>{long}</code></div></body></html>""")
    found = maths_on(chromium, page.as_uri(), wait_ms=500)
    assert found["mathjax"] == "absent" and found["rendered"] == 0
    assert len(found["raw"]) == 2 and "$\\sqrt{d}$" in found["raw"][0] and "\\(x_i\\)" in found["raw"][1]
    cut = cut_on(chromium, page.as_uri())
    assert len(cut) == 3, cut  # both unscrolled code blocks and the inline code; not the scrolled block
    assert sum(c.startswith("overflows without a scrollbar: pre") for c in cut) == 2, cut
    assert cut[-1].startswith("past the right edge of the text: code"), cut


def test_the_edge_check_finds_a_cut_label(tmp_path):
    """A figure saved without its margin (an x-label cut at the bottom) is found; with it, not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("step", fontsize=14)
    fig.subplots_adjust(bottom=0.02)  # the label falls below the figure's edge
    fig.savefig(tmp_path / "cut.png")
    fig.savefig(tmp_path / "tight.png", bbox_inches="tight")
    plt.close(fig)
    assert "bottom" in dark_edges(tmp_path / "cut.png")
    assert dark_edges(tmp_path / "tight.png") == []
