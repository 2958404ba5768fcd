"""The HTML player at the Duckling II size: 8,192 tokens x 2,000 frames, in headless Chromium.

    python benchmarks/bench_player.py [--tokens 8192] [--frames 2000] [--dim 16] [--seconds 3] [--repeats 3]
                                      [--variants canvas,plotly] [--movie /tmp/tokendyn-player-bench.h5]

Builds a synthetic bf16 movie (a rotating, drifting cloud; live/dead/phantom tokens with texts and
counts) unless ``--movie`` exists, writes the player with ``play(..., max_frames=FRAMES)`` and loads it
in headless Chromium (``tests/conftest.browser``). Prints one JSON line per figure: the Python ``play``
time, the HTML size, the load time (navigation start to ``window.tdplayerReady``, set once the first
frame is drawn) and the playback rate (frames drawn per second over ``--seconds`` of
requestAnimationFrame-driven playback at the "max" speed: one movie frame per animation frame).

The ``plotly`` variant is the same data in a page built on plotly.js (bundled from the ``plotly`` pip
package, not a tokendyn dependency: ``pip install plotly``): one ``scattergl`` trace per class,
``Plotly.restyle`` per frame. It is here to compare a kept library against the hand-written canvas
by the same measurement. The figures replace the section ``player`` of ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402

LOAD_TARGET_S, FPS_TARGET = 3.0, 30.0


def synthetic_movie(path: str, n_tokens: int = 8192, frames: int = 2000, dim: int = 16, seed: int = 0) -> str:
    """A bf16 movie of a cloud that rotates in its leading plane and drifts, with noise: classes
    60 % live, 30 % dead, 10 % phantom; texts ``▁w<i>`` (empty for phantoms) and counts."""
    from tokendyn.format import BF16Bits, float32_to_bf16_bits
    from tokendyn.recorder import Recorder

    rng = np.random.default_rng(seed)
    cls = np.zeros(n_tokens, np.uint8)
    cls[int(0.6 * n_tokens):] = 1
    cls[int(0.9 * n_tokens):] = 2
    text = [f"\u2581w{i}" if c != 2 else "" for i, c in enumerate(cls)]
    count = np.where(cls == 0, rng.integers(1, 10_000, n_tokens), 0)
    base = rng.normal(size=(n_tokens, dim)) * np.linspace(2.0, 0.2, dim)
    drift = rng.normal(size=(n_tokens, dim)) * 0.3
    with Recorder(path, token_class=cls, token_text=text, token_count=count, config={"model": "player bench"},
                  overwrite=True, flush_every=200) as rec:
        for f in range(frames):
            a = 2 * np.pi * f / frames
            x = base.copy()
            x[:, 0], x[:, 1] = np.cos(a) * base[:, 0] - np.sin(a) * base[:, 1], np.sin(a) * base[:, 0] + np.cos(a) * base[:, 1]
            x += drift * f / frames + rng.normal(scale=0.01, size=x.shape)
            rec.capture(f, W=BF16Bits(float32_to_bf16_bits(x.astype(np.float32))), loss=5 * np.exp(-f / frames),
                        lr=1e-3 * (1 - f / frames))
    return path


def measure_page(page: str, seconds: float = 3.0, window: str = "1200,900") -> dict[str, float]:
    """Load ``page`` in headless Chromium: seconds from navigation start to ``window.tdplayerReady``,
    and frames drawn per second of playback at the "max" speed (``window.tdplayers[...]``)."""
    from conftest import browser

    driver = browser(window)
    try:
        driver.set_page_load_timeout(120)
        driver.get("file://" + os.path.abspath(page))
        t0 = time.perf_counter()
        while driver.execute_script("return window.tdplayerReady === undefined"):
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"{page}: the player never got ready; console: {driver.get_log('browser')}")
            time.sleep(0.05)
        load = driver.execute_script("return window.tdplayerReady") / 1000
        driver.set_script_timeout(seconds + 30)
        fps = driver.execute_async_script("""
            const done = arguments[arguments.length - 1], p = Object.values(window.tdplayers)[0];
            p.setFrame(0); p.speed("max"); const n0 = p.state.drawn, t0 = performance.now(); p.play();
            setTimeout(function () { const n = p.state.drawn - n0, dt = (performance.now() - t0) / 1000; p.pause();
                                     done(n / dt); }, arguments[0] * 1000);""", seconds)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if severe:
            raise RuntimeError(f"{page}: errors in the console: {severe}")
        return {"load_s": float(load), "fps": float(fps)}
    finally:
        driver.quit()


_PLOTLY_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>plotly player</title>
<script>%(plotly)s</script></head><body>
<div><button id="play">play</button> <input id="scrub" type="range" min="0" value="0"> <span id="label"></span></div>
<div id="plot" style="width:700px;height:600px"></div>
<script type="application/json" id="meta">%(meta)s</script>
<script type="application/octet-stream" id="xy">%(xy)s</script>
<script>
const meta = JSON.parse(document.getElementById("meta").textContent);
const b64 = document.getElementById("xy").textContent.trim();
const xy = new Int16Array((Uint8Array.fromBase64 ? Uint8Array.fromBase64(b64)
  : Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); })).buffer);
const nT = meta.nT, nF = meta.nF, members = meta.members;
function frameTraces(f) {
  return members.map(function (m) {
    const x = new Float32Array(m.length), y = new Float32Array(m.length);
    for (let i = 0; i < m.length; i++) { x[i] = xy[(f * nT + m[i]) * 2]; y[i] = xy[(f * nT + m[i]) * 2 + 1]; }
    return [x, y];
  });
}
const first = frameTraces(0);
const traces = members.map(function (m, c) {
  return {type: "scattergl", mode: "markers", name: meta.names[c], x: first[c][0], y: first[c][1],
          text: m.map(function (t) { return meta.text[t] + " #" + meta.ids[t]; }), hoverinfo: "text",
          marker: {color: meta.colours[c], size: 3}};
});
const state = {frame: 0, drawn: 0, playing: false, rate: 12};
const layout = {xaxis: {range: [-33000, 33000], title: {text: "PC1"}}, yaxis: {range: [-33000, 33000], title: {text: "PC2"}},
                margin: {t: 10}, showlegend: true};
function show(f) {
  const xs = frameTraces(f);
  Plotly.restyle("plot", {x: xs.map(function (p) { return p[0]; }), y: xs.map(function (p) { return p[1]; })});
  state.frame = f; state.drawn++; document.getElementById("label").textContent = "step " + meta.steps[f];
}
function tick() { if (!state.playing) return; if (state.frame >= nF - 1) { state.playing = false; return; }
  show(state.frame + 1); requestAnimationFrame(tick); }
const api = {state: state, setFrame: function (f) { show(f); }, speed: function () {},
             play: function () { state.playing = true; requestAnimationFrame(tick); },
             pause: function () { state.playing = false; }};
window.tdplayers = {plotly: api};
document.getElementById("play").onclick = function () { state.playing ? api.pause() : api.play(); };
Plotly.newPlot("plot", traces, layout, {staticPlot: false}).then(function () {
  state.drawn++; window.tdplayerReady = performance.now(); });
</script></body></html>
"""


def plotly_page(proj, path: str) -> str:
    """The same projection in a page built on plotly.js (scattergl, restyled per frame)."""
    from plotly.offline import get_plotlyjs

    span = float(np.nanmax(np.abs(proj.xy))) or 1.0
    q = np.round(np.nan_to_num(proj.xy) / span * 32767).astype("<i2")
    names = list(dict.fromkeys(str(c) for c in proj.classes))
    from tokendyn.surfaces.palette import CLASS_COLOURS
    from tokendyn.surfaces.player import json_for_script

    meta = {"nT": len(proj.token_ids), "nF": len(proj.steps), "names": names,
            "colours": [CLASS_COLOURS[n] for n in names], "steps": [int(s) for s in proj.steps],
            "members": [[int(t) for t in np.flatnonzero(proj.classes == n)] for n in names],
            "ids": [int(t) for t in proj.token_ids], "text": [str(t) for t in proj.token_text]}
    with open(path, "w", encoding="utf-8") as f:
        f.write(_PLOTLY_PAGE % {"plotly": get_plotlyjs().replace("</script", "<\\/script"), "meta": json_for_script(meta),
                                "xy": base64.b64encode(q.tobytes()).decode()})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds of playback to measure")
    ap.add_argument("--variants", default="canvas,plotly")
    ap.add_argument("--repeats", type=int, default=3, help="page loads measured (the median is the figure)")
    ap.add_argument("--movie", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-player-bench.h5"))
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokendyn-player-bench"))
    ap.add_argument("--section", default="player", help="the section of RESULTS.md to write")
    args = ap.parse_args()
    from tokendyn.sources.dataset import open_movie
    from tokendyn.surfaces.player import play, project

    os.makedirs(args.out, exist_ok=True)
    size = f"{args.tokens} tokens x {args.frames} frames"
    if not os.path.exists(args.movie):
        synthetic_movie(args.movie, args.tokens, args.frames, args.dim)
    print(f"# {machine()}; {size}, dim {args.dim}", file=sys.stderr)
    rows: list[dict] = []
    for variant in args.variants.split(","):
        page = os.path.join(args.out, f"{variant}.html")
        t0 = time.perf_counter()
        if variant == "canvas":
            play(args.movie, page, max_frames=args.frames, max_tokens=args.tokens, trace=["w0"])
        else:
            plotly_page(project(open_movie(args.movie), max_frames=args.frames, max_tokens=args.tokens), page)
        seconds = time.perf_counter() - t0
        rows.append(emit(figure=f"{variant}: play (Python) time, {size} (s)", value=seconds, target="info", verdict="-"))
        mb = os.path.getsize(page) / 1e6
        rows.append(emit(figure=f"{variant}: HTML size (MB)", value=mb, target="info", verdict="-"))
        rows.append(emit(figure=f"{variant}: 'https://' in the page", value=open(page, encoding="utf-8").read().count("https://"),
             target="0", verdict="-"))
        runs = [measure_page(page, args.seconds) for _ in range(args.repeats)]  # a fresh browser each time
        load, fps = (float(np.median([m[key] for m in runs])) for key in ("load_s", "fps"))
        rows.append(emit(figure=f"{variant}: load, navigation start to ready (s, median of {args.repeats})", value=load,
             target=f"< {LOAD_TARGET_S}", verdict=verdict(load, LOAD_TARGET_S, False), runs=[m["load_s"] for m in runs]))
        rows.append(emit(figure=f"{variant}: playback (frames drawn / s, median of {args.repeats})", value=fps,
             target=f">= {FPS_TARGET}", verdict=verdict(fps, FPS_TARGET, True), runs=[m["fps"] for m in runs]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    details = (f"{machine()}; a synthetic bf16 movie of {size}, dim {args.dim}, every frame shown "
               f"(`--max-frames {args.frames}`); load average {load:.1f} at the end. Load: navigation start to the "
               f"first frame drawn; playback: frames drawn per second at the \"max\" speed over {args.seconds:g} s; "
               f"medians of {args.repeats} fresh headless-Chromium sessions. plotly.js (scattergl, bundled from the "
               "`plotly` pip package) is the kept-library alternative measured the same way.")
    update_section(args.section, f"## The player in headless Chromium (`benchmarks/bench_player.py`)\n\n{details}\n\n"
                   + figures_table(rows))


if __name__ == "__main__":
    main()
