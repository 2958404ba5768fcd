"""Play a movie: the token cloud in one fixed 2-D PCA projection, animated over frames.

The projection is fitted once (on all shown frames, or on one chosen frame), so motion on screen is
motion of the tokens, not an artefact of refitting. Outputs: a self-contained HTML player (play,
pause, scrub; works offline), a GIF (Pillow, through matplotlib), or an MP4 (needs ffmpeg).
"""
from __future__ import annotations

import base64
import html
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.surfaces.palette import CLASS_COLOURS


@dataclass
class Projection:
    """Token positions in a fixed 2-D PCA plane, for a subset of frames."""

    frames: np.ndarray  # frame indices shown
    steps: np.ndarray
    loss: np.ndarray  # NaN where the movie has no loss
    xy: np.ndarray  # (frame, token, 2) float32
    token_ids: np.ndarray
    classes: np.ndarray  # class names per token
    explained: np.ndarray  # variance fraction of the two components (on the fit data)
    fit: str
    finite: np.ndarray | None = None  # per shown frame: all of W finite (a diverged run's frames are not)

    def __post_init__(self) -> None:
        if self.finite is None:
            self.finite = np.isfinite(self.xy).all(axis=(1, 2))


def project(ds: Any, *, tokens: Any = "all", frames: slice | None = None, fit: str | int = "all",
            max_frames: int = 200, max_tokens: int = 3000, trace: Sequence[int] | None = None,
            seed: int = 0) -> Projection:
    """Fit a PCA plane once and project the selected tokens of up to ``max_frames`` frames onto it.

    Frames holding NaN or infinite values (a diverged run) are left out of the fit; their
    positions are NaN and :attr:`Projection.finite` marks them.

    Raises
    ------
    TokendynError
        ``max_frames`` or ``max_tokens`` below 1, a ``fit`` frame outside the movie or not finite,
        or no finite frame to fit the plane on.
    """
    from tokendyn.analysis.base import select

    for name, value in (("max_frames", max_frames), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise TokendynError(f"{name} must be a whole number >= 1, got {value!r}")

    sub = select(ds, tokens, frames)
    n_frames, n_tokens = sub.sizes[fmt.DIM_FRAME], sub.sizes[fmt.DIM_TOKEN]
    shown = np.unique(np.linspace(0, n_frames - 1, min(max_frames, n_frames)).round().astype(int))
    keep = np.arange(n_tokens)
    if n_tokens > max_tokens:  # a readable, light sample; traced tokens always kept
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(n_tokens, max_tokens, replace=False))
        if trace:
            ids = sub[fmt.DIM_TOKEN].values
            keep = np.union1d(keep, np.flatnonzero(np.isin(ids, trace)))
    sub = sub.isel({fmt.DIM_TOKEN: keep})
    w = sub["W"].data[shown]
    x = np.asarray(w.compute() if hasattr(w, "compute") else w, np.float64)  # (shown, tokens, dim)
    finite = np.isfinite(x).all(axis=(1, 2))
    if fit == "all":
        if not finite.any():
            raise TokendynError("no shown frame of W is finite (NaN or infinite everywhere: a diverged run?), so "
                                "there is no cloud to draw")
        fit_data = x[finite].reshape(-1, x.shape[-1])
    else:
        try:
            fit_index = int(fit)
        except ValueError:
            raise TokendynError(f"--fit takes 'all' or a frame index, got {fit!r}") from None
        if not -n_frames <= fit_index < n_frames:
            raise TokendynError(f"--fit frame {fit_index} is outside the movie's {n_frames} frames")
        fit_data = np.asarray(sub["W"].isel({fmt.DIM_FRAME: fit_index}).values, np.float64)
        if not np.isfinite(fit_data).all():
            raise TokendynError(f"--fit frame {fit_index} holds NaN or infinite values; fit on 'all' or another frame")
    mean = fit_data.mean(axis=0)
    _, s, vt = np.linalg.svd(fit_data - mean, full_matrices=False)
    explained = (s[:2] ** 2) / max((s ** 2).sum(), 1e-300)
    xy = ((x - mean) @ vt[:2].T).astype(np.float32)
    xy[~finite] = np.nan
    loss = sub["loss"].values[shown] if "loss" in sub else np.full(shown.size, np.nan)
    names = np.array(fmt.TOKEN_CLASSES)[sub[fmt.TOKEN_CLASS].values]
    return Projection(frames=shown, steps=sub[fmt.STEP].values[shown], loss=np.asarray(loss, float), xy=xy,
                      token_ids=sub[fmt.DIM_TOKEN].values, classes=names, explained=explained, fit=str(fit),
                      finite=finite)


def project_naming(movie: str, ds: Any, **kwargs: Any) -> Projection:
    """:func:`project`, its errors naming ``movie``."""
    try:
        return project(ds, **kwargs)
    except TokendynError as exc:
        if exc.path is not None:
            raise
        raise TokendynError(exc.problem, movie) from None


_PLAYER_JS = r"""
(function () {
  const root = document.getElementById("%(id)s");
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const raw = atob(data.xy);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const xy = new Int16Array(bytes.buffer);
  const nF = data.steps.length, nT = data.classes.length;
  const canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
  const slider = root.querySelector("input[type=range]"), button = root.querySelector("button");
  const label = root.querySelector(".tdplayer-label");
  slider.max = nF - 1;
  let frame = 0, timer = null;
  function px(v) { return (v / 32767 * 0.46 + 0.5) * canvas.width; }
  function py(v) { return (0.5 - v / 32767 * 0.46) * canvas.height; }
  function draw() {
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    const base = frame * nT * 2;
    for (let t = 0; t < nT && data.finite[frame]; t++) {
      ctx.fillStyle = data.colours[data.classes[t]];
      ctx.fillRect(px(xy[base + 2 * t]) - 1.5, py(xy[base + 2 * t + 1]) - 1.5, 3, 3);
    }
    data.trace.forEach(function (t, k) {
      ctx.strokeStyle = "#000000"; ctx.lineWidth = 1.2; ctx.beginPath();
      for (let f = 0; f <= frame; f++) {
        const b = f * nT * 2 + 2 * t;
        if (f === 0) ctx.moveTo(px(xy[b]), py(xy[b + 1])); else ctx.lineTo(px(xy[b]), py(xy[b + 1]));
      }
      ctx.stroke();
      ctx.fillStyle = "#000000"; ctx.font = "12px sans-serif";
      ctx.fillText(data.trace_labels[k], px(xy[base + 2 * t]) + 4, py(xy[base + 2 * t + 1]) - 4);
    });
    const loss = data.loss[frame];
    label.textContent = "step " + data.steps[frame] + (loss === null ? "" : "   loss " + loss.toFixed(3))
      + "   (frame " + (frame + 1) + " of " + nF + ")" + (data.finite[frame] ? "" : "   W not finite (diverged)");
    slider.value = frame;
  }
  function stop() { if (timer !== null) { clearInterval(timer); timer = null; } button.textContent = "play"; }
  button.addEventListener("click", function () {
    if (timer !== null) { stop(); return; }
    if (frame >= nF - 1) frame = 0;
    button.textContent = "pause";
    timer = setInterval(function () { if (frame >= nF - 1) { stop(); return; } frame++; draw(); }, 1000 / data.fps);
  });
  slider.addEventListener("input", function () { stop(); frame = parseInt(slider.value, 10); draw(); });
  draw();
})();
"""


def player_fragment(proj: Projection, *, element_id: str = "tdplayer", fps: int = 12, trace: Sequence[int] = (),
                    size: int = 560) -> str:
    """An HTML fragment (canvas, controls, data and script; no external resources) playing ``proj``."""
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise TokendynError(f"fps must be a whole number >= 1, got {fps!r}")
    span = float(np.nanmax(np.abs(proj.xy))) if proj.finite.any() else 1.0
    q = np.round(np.nan_to_num(proj.xy, nan=0.0) / (span or 1.0) * 32767).astype("<i2")
    trace_idx = [int(i) for i in np.flatnonzero(np.isin(proj.token_ids, list(trace)))]
    data = {
        "xy": base64.b64encode(q.tobytes()).decode("ascii"),
        "steps": [int(s) for s in proj.steps],
        "loss": [None if not np.isfinite(v) else float(v) for v in proj.loss],
        "classes": [str(c) for c in proj.classes],
        "colours": CLASS_COLOURS,
        "trace": trace_idx,
        "trace_labels": [f"token {int(proj.token_ids[i])}" for i in trace_idx],
        "fps": int(fps),
        "finite": [bool(v) for v in proj.finite],
    }
    legend = " ".join(f'<span style="color:{c}">&#9632; {name}</span>' for name, c in CLASS_COLOURS.items()
                      if name in set(proj.classes))
    payload = json_for_script(data)
    fitted_on = "on all shown frames" if proj.fit == "all" else "on frame " + proj.fit
    return f"""<div class="tdplayer" id="{element_id}">
<canvas width="{size}" height="{size}" style="border:1px solid #ccc"></canvas>
<div><button type="button">play</button>
<input type="range" min="0" value="0" step="1" style="width:{size - 80}px" aria-label="frame"></div>
<div class="tdplayer-label" style="font-family:monospace"></div>
<div style="font-size:90%">{legend}; PCA plane fitted once ({fitted_on}),
explaining {proj.explained[0] * 100:.1f}% + {proj.explained[1] * 100:.1f}% of the variance.</div>
<script type="application/json">{payload}</script>
<script>{_PLAYER_JS % {"id": element_id}}</script>
</div>"""


_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def json_for_script(data: Any) -> str:
    """``data`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as
    ``\\uXXXX`` escapes (``json.dumps`` already escapes every other non-ASCII character, the
    JavaScript line separators included), so no string from a movie can end the element."""
    return json.dumps(data).translate(_SCRIPT_UNSAFE)


def _animate(proj: Projection, path: str, fps: int, trace: Sequence[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
    colours = [CLASS_COLOURS[c] for c in proj.classes]
    span = float(np.nanmax(np.abs(proj.xy))) * 1.05 or 1.0
    ax.set(xlim=(-span, span), ylim=(-span, span), xlabel="PC 1 (embedding units)", ylabel="PC 2 (embedding units)")
    scat = ax.scatter(proj.xy[0, :, 0], proj.xy[0, :, 1], s=4, c=colours)
    title = ax.set_title("")
    trace_idx = np.flatnonzero(np.isin(proj.token_ids, list(trace)))
    lines = [ax.plot([], [], "k-", lw=1)[0] for _ in trace_idx]

    def update(f: int):
        scat.set_offsets(proj.xy[f])
        loss = proj.loss[f]
        title.set_text(f"step {proj.steps[f]}" + (f"   loss {loss:.3f}" if np.isfinite(loss) else "")
                       + ("" if proj.finite[f] else "   W not finite (diverged)"))
        for line, t in zip(lines, trace_idx):
            line.set_data(proj.xy[: f + 1, t, 0], proj.xy[: f + 1, t, 1])
        return [scat, title, *lines]

    anim = animation.FuncAnimation(fig, update, frames=len(proj.steps), blit=False)
    if path.lower().endswith(".gif"):
        anim.save(path, writer=animation.PillowWriter(fps=fps))
    else:
        anim.save(path, writer=animation.FFMpegWriter(fps=fps))
    plt.close(fig)


def play(movie: str | os.PathLike, output: str | os.PathLike | None = None, *, tokens: Any = "all",
         frames: slice | None = None, fit: str | int = "all", max_frames: int = 200,
         trace: Sequence[int] | None = None, fps: int = 12) -> str:
    """Write an animation of the token cloud of ``movie`` to ``output`` (.html, .gif or .mp4)."""
    from tokendyn.sources.dataset import open_movie

    movie = os.fspath(movie)
    output = os.fspath(output) if output else os.path.splitext(movie)[0] + ".cloud.html"
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise TokendynError(f"fps must be a whole number >= 1, got {fps!r}", movie)
    if os.path.isdir(output):
        raise TokendynError("the output is a folder; give a file name ending in .html, .gif or .mp4", output)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise TokendynError("the output's folder does not exist", output)
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".html", ".gif", ".mp4"):
        raise TokendynError(f"{output}: unknown output type {ext or '(none)'}; use .html, .gif or .mp4")
    if ext == ".mp4" and shutil.which("ffmpeg") is None:
        raise TokendynError(f"{output}: MP4 needs ffmpeg, which is not installed here; "
                            "write .gif or .html instead, or install ffmpeg")
    ds = open_movie(movie)
    if trace is None:  # by default trace the most frequent live token, when the movie has counts
        trace = []
        live = np.flatnonzero(ds[fmt.TOKEN_CLASS].values == fmt.CLASS_LIVE)
        if fmt.TOKEN_COUNT in ds.coords and live.size:
            counts = ds[fmt.TOKEN_COUNT].values
            trace = [int(ds[fmt.DIM_TOKEN].values[live[np.argmax(counts[live])]])]
    proj = project_naming(movie, ds, tokens=tokens, frames=frames, fit=fit, max_frames=max_frames, trace=trace)
    if ext == ".html":
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tokendyn play: {html.escape(os.path.basename(movie))}</title></head>
<body style="font-family:sans-serif">
<h1>{html.escape(os.path.basename(movie))}: the token cloud</h1>
{player_fragment(proj, fps=fps, trace=trace)}
</body></html>
"""
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as exc:
            raise TokendynError(f"cannot write the page ({exc.strerror or exc})", output) from None
    else:
        _animate(proj, output, fps, trace)
    return output
