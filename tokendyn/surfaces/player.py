"""Play a movie: the token cloud in a 2-D PCA projection, animated over frames.

The projections (``fixed``, ``last``, ``aligned``) are computed in :mod:`tokendyn.surfaces.projection`.

Outputs: a self-contained HTML player (works offline: hover, search, pin and trail, class toggles,
play/pause/step/scrub and speed), a GIF (Pillow, through matplotlib), or an MP4 (needs ffmpeg).
"""
from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.surfaces.palette import CLASS_COLOURS, CLASS_ORDER
from tokendyn.surfaces.projection import PROJECTIONS, Projection, check_whole, project, project_naming, resolve_tokens

__all__ = ["CLASS_COLOURS", "PROJECTIONS", "Projection", "json_for_script", "play", "player_fragment", "project",
           "project_naming", "resolve_tokens"]


@functools.cache
def _template(name: str) -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", name), encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("tokendyn.surfaces", "templates"),
                              autoescape=True, keep_trailing_newline=True)


_ELEMENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _log_codes(radius: np.ndarray) -> tuple[list, list, np.ndarray]:
    """Radii (frame, token) as one byte each on a per-token log scale: code 0 for 0 (or not
    finite), 1..255 from the token's smallest positive radius ``lo`` to its largest ``hi``, so a
    radius comes back as ``lo * (hi / lo) ** ((code - 1) / 254)``, within ``ln(hi / lo) / 508`` of
    it (relative): under 1 % for a radius that grows a hundredfold."""
    r = np.asarray(radius, np.float32)
    valid = r > 0  # False for NaN (a frame that is not finite) and for 0
    lo = np.where(valid, r, np.inf).min(axis=0)
    hi = np.where(valid, r, 0).max(axis=0)
    seen = np.isfinite(lo)
    lo, hi = np.where(seen, lo, 1).astype(np.float32), np.where(seen, hi, 1).astype(np.float32)
    scale = 254 / np.where(hi > lo, np.log(hi / lo), 1).astype(np.float32)
    with np.errstate(all="ignore"):
        pos = np.log(np.where(valid, r, lo) / lo) * scale
    codes = np.where(valid, 1 + np.rint(np.clip(pos, 0, 254)), 0).astype(np.uint8)
    return [float(np.float32(v)) for v in lo], [float(np.float32(v)) for v in hi], codes


def player_fragment(proj: Projection, *, element_id: str = "tdplayer", fps: int = 12, trace: Sequence[int] = (),
                    size: int = 560, trail: int = 50) -> str:
    """An HTML fragment (canvas, controls, data and script; no external resources) playing ``proj``.

    Several fragments may share a page (give each its own ``element_id``). ``trace`` holds the ids
    of the tokens pinned when the page opens; ``trail`` the frames of a pinned token's trail.
    """
    check_whole("fps", fps)
    check_whole("size", size, 100)
    check_whole("trail", trail, 0)
    if not isinstance(element_id, str) or not _ELEMENT_ID.match(element_id):
        raise TokendynError(f"element_id must be a letter then letters, digits, '-' or '_', got {element_id!r}")
    finite = np.asarray(proj.finite, bool)
    span = float(np.nanmax(np.abs(proj.xy))) if finite.any() else 1.0
    span = span if np.isfinite(span) and span > 0 else 1.0
    q = np.rint(np.nan_to_num(np.asarray(proj.xy, np.float32), nan=0.0) * np.float32(32767 / span)).astype("<i2")
    radius = proj.radius if proj.radius is not None else np.linalg.norm(proj.xy, axis=-1)
    rlo, rhi, rq = _log_codes(radius)
    positions = {int(t): i for i, t in enumerate(proj.token_ids)}
    pinned = [positions[int(t)] for t in trace if int(t) in positions]

    def finite_list(values: Any) -> list:
        return [None if v is None or not np.isfinite(v) else float(v) for v in np.asarray(values, float)]

    names = [c for c in CLASS_ORDER if c in set(proj.classes)] + sorted(set(proj.classes) - set(CLASS_ORDER))
    data = {
        "steps": [int(s) for s in proj.steps],
        "frames": [int(f) for f in proj.frames],
        "loss": finite_list(proj.loss),
        "lr": finite_list(proj.lr if proj.lr is not None else np.full(len(proj.steps), np.nan)),
        "finite": [bool(v) for v in finite],
        "ids": [int(t) for t in proj.token_ids],
        "classNames": names,
        "classes": [names.index(str(c)) for c in proj.classes],
        "colours": [CLASS_COLOURS.get(c, CLASS_COLOURS["unknown"]) for c in names],
        "text": None if proj.token_text is None else [str(t) for t in proj.token_text],
        "count": None if proj.token_count is None else [int(c) for c in proj.token_count],
        "span": span, "rlo": rlo, "rhi": rhi, "nF": len(proj.steps), "nT": len(proj.token_ids),
        "explained": [finite_list(e) for e in proj.explained_per_frame] if proj.explained_per_frame is not None
        else [finite_list(proj.explained)],
        "projection": proj.projection, "fit": proj.fit,
        "pinned": pinned, "trail": int(trail), "fps": int(fps),
        "neighbours": {str(p): [int(v) for v in rows.ravel()] for p, rows in proj.neighbours.items()},
        "k": int(next(iter(proj.neighbours.values())).shape[1]) if proj.neighbours else 0,
    }
    if proj.projection == "aligned":
        how = "a PCA plane per frame, each rotated onto the previous one (orthogonal Procrustes)"
    elif proj.projection == "last":
        how = "the PCA plane of the last shown frame"
    else:
        how = "one PCA plane, fitted " + ("on all shown frames" if proj.fit == "all" else "on frame " + proj.fit)
    # the big base64 blobs go in after rendering: no escaping pass over them (they are base64, safe)
    page = _environment().get_template("player.html").render(
        id=element_id, size=int(size), payload=_BLOB % "json", xy=_BLOB % "xy", radius=_BLOB % "radius",
        classes=[(n, data["colours"][i], int(np.sum(proj.classes == n))) for i, n in enumerate(names)],
        how=how, explained=proj.explained, aligned=proj.projection == "aligned", speeds=(1, 3, 6, 12, 24, 30, 60),
        fps=int(fps), trail=int(trail), css=_template("player.css"), js=_template("player.js"))
    return _fill(page, json=json_for_script(data), xy=_b64(q), radius=_b64(rq))


_BLOB = "\x00tdplayer-%s\x00"  # a NUL never appears in a template or in json_for_script's output


def _fill(page: str, **blobs: str) -> str:
    for name, text in blobs.items():
        head, mark, tail = page.partition(_BLOB % name)
        if not mark:
            raise RuntimeError(f"the player template lost its {name} placeholder")
        page = "".join((head, text, tail))
    return page


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tokendyn play: {{ name }}</title></head>
<body style="font-family:sans-serif">
<h1>{{ name }}: the token cloud</h1>
{{ fragment|safe }}
</body></html>
"""

_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def json_for_script(data: Any) -> str:
    """``data`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as
    ``\\uXXXX`` escapes (``json.dumps`` already escapes every other non-ASCII character, the
    JavaScript line separators included), so no string from a movie can end the element."""
    return json.dumps(data).translate(_SCRIPT_UNSAFE)


def _axis_label(proj: Projection, axis: int, frame: int | None = None) -> str:
    share = proj.explained_per_frame[frame, axis] if frame is not None and proj.explained_per_frame is not None \
        else proj.explained[axis]
    name = "axis " if proj.projection == "aligned" else "PC"
    return f"{name}{axis + 1} ({share * 100:.1f}% of variance; embedding units)"


def _animate(proj: Projection, path: str, fps: int, trace: Sequence[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=80)
    colours = [CLASS_COLOURS.get(c, CLASS_COLOURS["unknown"]) for c in proj.classes]
    span = float(np.nanmax(np.abs(proj.xy))) * 1.05 or 1.0
    ax.set(xlim=(-span, span), ylim=(-span, span), xlabel=_axis_label(proj, 0), ylabel=_axis_label(proj, 1))
    scat = ax.scatter(proj.xy[0, :, 0], proj.xy[0, :, 1], s=4, c=colours)
    present = [c for c in CLASS_ORDER if c in set(proj.classes)]
    handles = [Line2D([], [], ls="", marker="o", color=CLASS_COLOURS[c], label=f"{c} ({int(np.sum(proj.classes == c))})")
               for c in present]
    trace_idx = np.flatnonzero(np.isin(proj.token_ids, list(trace)))
    lines = [ax.plot([], [], "k-", lw=1)[0] for _ in trace_idx]
    if len(trace_idx):
        handles.append(Line2D([], [], color="k", lw=1, label="traced"))
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    title = ax.set_title("", fontsize=10)

    def update(f: int):
        scat.set_offsets(proj.xy[f])
        loss, lr = proj.loss[f], proj.lr[f] if proj.lr is not None else np.nan
        title.set_text(f"step {proj.steps[f]}" + (f"   loss {loss:.3f}" if np.isfinite(loss) else "")
                       + (f"   lr {lr:.2e}" if np.isfinite(lr) else "")
                       + ("" if proj.finite[f] else "   W not finite (diverged)"))
        if proj.explained_per_frame is not None:
            ax.set_xlabel(_axis_label(proj, 0, f))
            ax.set_ylabel(_axis_label(proj, 1, f))
        for line, t in zip(lines, trace_idx):
            line.set_data(proj.xy[: f + 1, t, 0], proj.xy[: f + 1, t, 1])
        return [scat, title, *lines]

    update(0)  # the title and labels in place before the layout leaves room for them
    fig.tight_layout()
    anim = animation.FuncAnimation(fig, update, frames=len(proj.steps), blit=False)
    if path.lower().endswith(".gif"):
        anim.save(path, writer=animation.PillowWriter(fps=fps))
    else:
        anim.save(path, writer=animation.FFMpegWriter(fps=fps))
    plt.close(fig)


def play(movie: str | os.PathLike, output: str | os.PathLike | None = None, *, tokens: Any = "all",
         frames: slice | None = None, fit: str | int = "all", max_frames: int = 200,
         trace: Sequence[int | str] | None = None, fps: int = 12, projection: str = "fixed",
         max_tokens: int = 16384, trail: int = 50, neighbours: int = 5) -> str:
    """Write an animation of the token cloud of ``movie`` to ``output`` (.html, .gif or .mp4).

    ``frames`` is a slice of frames (``slice(0, 2000, 10)``: every tenth); ``max_frames`` caps
    the frames shown after it (evenly spaced). ``trace`` holds token ids or texts (``"the"`` finds
    ``"▁the"``), pinned with their trails and nearest neighbours; by default the most frequent live
    token, when the movie holds counts. See :func:`project` for ``projection`` and ``fit``.

    Raises
    ------
    TokendynError
        a bad output path or type, MP4 without ffmpeg, or anything :func:`project` refuses, naming
        the movie.
    """
    from tokendyn.sources.dataset import open_movie

    movie = os.fspath(movie)
    output = os.fspath(output) if output else os.path.splitext(movie)[0] + ".cloud.html"
    try:
        check_whole("fps", fps)
        check_whole("trail", trail, 0)
    except TokendynError as exc:
        raise TokendynError(exc.problem, movie) from None
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
    try:
        trace_ids = resolve_tokens(ds, trace)
    except TokendynError as exc:
        raise TokendynError(exc.problem, movie) from None
    proj = project_naming(movie, ds, tokens=tokens, frames=frames, fit=fit, max_frames=max_frames, trace=trace_ids,
                          projection=projection, max_tokens=max_tokens, neighbours=neighbours)
    if ext == ".html":
        page = _fill(_environment().from_string(_PAGE).render(name=os.path.basename(movie), fragment=_BLOB % "fragment"),
                     fragment=player_fragment(proj, fps=fps, trace=trace_ids, trail=trail))
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as exc:
            raise TokendynError(f"cannot write the page ({exc.strerror or exc})", output) from None
    else:
        _animate(proj, output, fps, trace_ids)
    return output
