"""The token cloud projected to 2-D for the player: the tokens chosen, the frames read, the plane.

Three projections: ``fixed`` (one PCA plane fitted on all shown frames, or on one chosen frame, so
motion on screen is motion of the tokens, not an artefact of refitting), ``last`` (the plane of the
last shown frame) and ``aligned`` (a PCA plane per frame, each rotated onto the previous one by
orthogonal Procrustes, so the picture neither flips nor spins).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokendyn import format as fmt
from tokendyn.errors import TokendynError

__all__ = ["PROJECTIONS", "Projection", "project", "project_naming", "resolve_tokens"]

PROJECTIONS = ("fixed", "last", "aligned")
WORD_START = ("\u2581", "\u0120", " ")  # how tokenizers mark a word start: sentencepiece, byte-level BPE, plain
_BATCH_BYTES = 16 * 2 ** 20  # float32 W decoded per batch


@dataclass
class Projection:
    """Token positions in a 2-D PCA projection, for a subset of frames."""

    frames: np.ndarray  # frame indices shown (positions in the movie)
    steps: np.ndarray
    loss: np.ndarray  # NaN where the movie has no loss
    xy: np.ndarray  # (frame, token, 2) float32
    token_ids: np.ndarray
    classes: np.ndarray  # class names per token
    explained: np.ndarray  # variance fraction of the two axes (the fit data; for aligned, the mean over frames)
    fit: str
    finite: np.ndarray | None = None  # per shown frame: all of W finite (a diverged run's frames are not)
    projection: str = "fixed"
    lr: np.ndarray | None = None  # NaN where the movie has no lr
    radius: np.ndarray | None = None  # (frame, token) float32: the norm of each row of W at that frame
    token_text: np.ndarray | None = None  # object array of str, when the movie holds token_text
    token_count: np.ndarray | None = None  # occurrences in the training data, when the movie holds token_count
    explained_per_frame: np.ndarray | None = None  # (frame, 2): the aligned projection's per-frame fractions
    neighbours: dict[int, np.ndarray] = field(default_factory=dict)  # token position -> (frame, k) positions

    def __post_init__(self) -> None:
        if self.finite is None:
            self.finite = np.isfinite(self.xy).all(axis=(1, 2))
        if self.lr is None:
            self.lr = np.full(len(self.steps), np.nan)


def check_whole(name: str, value: Any, low: int = 1) -> None:
    """Raise a :class:`TokendynError` unless ``value`` is a whole number (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise TokendynError(f"{name} must be a whole number >= {low}, got {value!r}")


def resolve_tokens(ds: Any, items: Sequence[int | str] | str | int | None) -> list[int]:
    """Token ids for ``items``: ids, or token texts as a user types them.

    A text matches exactly first, then with a word-start mark in front (``"the"`` finds ``"▁the"``
    when ``"the"`` itself is not a token); a whole number that is one of the movie's ids is that id.

    Raises
    ------
    TokendynError
        an item that is neither a token text nor an id of the movie (naming it; the caller adds the
        movie's path, see :func:`project_naming`).
    """
    if items is None:
        return []
    if isinstance(items, (str, int, np.integer)):
        items = [items]
    ids = np.asarray(ds[fmt.DIM_TOKEN].values)
    id_set = set(int(i) for i in ids)
    texts = ds[fmt.TOKEN_TEXT].values if fmt.TOKEN_TEXT in ds.coords else None
    index: dict[str, int] = {}
    if texts is not None:
        for i, text in zip(ids, texts):
            index.setdefault(str(text), int(i))
    out: list[int] = []
    for item in items:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if int(item) not in id_set:
                raise TokendynError(f"--trace {int(item)}: the movie has no token with this id "
                                    f"(ids {int(ids.min())}..{int(ids.max())})")
            out.append(int(item))
            continue
        text = str(item)
        found = next((index[t] for t in (text, *(m + text for m in WORD_START)) if t in index), None)
        if found is None and text.strip().isdigit() and int(text) in id_set:
            found = int(text)
        if found is None:
            where = "a token text" if texts is not None else "a token id (the movie holds no token_text)"
            raise TokendynError(f"--trace {text!r} is not {where} of the movie, nor an id")
        out.append(found)
    return list(dict.fromkeys(out))


class _Frames:
    """The shown frames of W, the selected tokens only, as float32 batches of about
    ``_BATCH_BYTES``, read straight from the file where the movie allows it
    (:class:`tokendyn.analysis.base.StoredFrames`). Batches that small are decoded into memory
    the allocator reuses, which is faster than keeping them for a second pass."""

    def __init__(self, ds: Any, frames: np.ndarray, rows: np.ndarray):
        from tokendyn.analysis.base import StoredFrames

        self.source = StoredFrames(ds, "W")
        self.frames, self.rows = frames, rows
        self.all_rows = len(rows) == self.source.shape[1] and bool(np.all(rows == np.arange(len(rows))))
        self.dim = int(self.source.shape[2])

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        from tokendyn.analysis.base import decoded

        size = max(1, _BATCH_BYTES // (int(np.prod(self.source.shape[1:])) * 4))
        buf = np.empty((min(size, len(self.frames)),) + self.source.shape[1:], self.source.dtype)
        for start in range(0, len(self.frames), size):
            x = decoded(self.source.read(self.frames[start:start + size], buf))
            yield start, x if self.all_rows else x[:, self.rows]


def _plane(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two leading eigenvectors of a covariance (d, 2), signs fixed (largest entry positive),
    and the fraction of the variance along each."""
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:2]
    basis = vecs[:, order]
    if basis.shape[1] < 2:  # a 1-D embedding: the second axis is empty
        basis = np.pad(basis, ((0, 0), (0, 2 - basis.shape[1])))
    basis *= np.where(basis[np.abs(basis).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    total = max(float(np.trace(cov)), 1e-300)
    return basis, np.clip(np.diag(basis.T @ cov @ basis) / total, 0, 1)


def _cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean (float64) and covariance (float64, the products in ``x``'s precision) of rows ``x``."""
    mean = x.mean(axis=0, dtype=np.float64)
    c = x - mean.astype(x.dtype)
    return mean, (c.T @ c).astype(np.float64) / max(len(x), 1)


def project(ds: Any, *, tokens: Any = "all", frames: slice | None = None, fit: str | int = "all",
            max_frames: int = 200, max_tokens: int = 16384, trace: Sequence[int | str] | None = None,
            seed: int = 0, projection: str = "fixed", neighbours: int = 5) -> Projection:
    """Project the selected tokens of up to ``max_frames`` frames onto a 2-D PCA plane.

    ``frames`` is a slice of the movie's frames (its step a stride: ``slice(0, 2000, 10)``);
    ``max_frames`` then caps the frames shown, evenly spaced. ``projection`` is ``"fixed"`` (one
    plane fitted on ``fit``: ``"all"`` shown frames or one frame index of the selection),
    ``"last"`` (the plane of the last finite shown frame) or ``"aligned"`` (one plane per frame,
    each rotated onto the previous one by orthogonal Procrustes). Above ``max_tokens`` tokens a
    random sample is drawn, the ``trace`` tokens (ids or texts) always kept; for each of them the
    ``neighbours`` nearest tokens in the full embedding space are listed at every shown frame.

    Frames holding NaN or infinite values (a diverged run) are left out of the fit; their
    positions are NaN and :attr:`Projection.finite` marks them.

    Raises
    ------
    TokendynError
        ``max_frames`` or ``max_tokens`` below 1, an unknown projection, a ``fit`` frame outside
        the movie or not finite, a ``trace`` token the movie does not hold, or no finite frame.
    """
    from tokendyn.analysis.base import selection

    check_whole("max_frames", max_frames)
    check_whole("max_tokens", max_tokens)
    check_whole("neighbours", neighbours, 0)
    if projection not in PROJECTIONS:
        raise TokendynError(f"--projection takes {', '.join(PROJECTIONS)}, got {projection!r}")
    if fit != "all" and projection != "fixed":
        raise TokendynError(f"--fit {fit} is for the fixed projection, not {projection!r}")
    trace_ids = resolve_tokens(ds, trace)
    sub, rows, positions = selection(ds, tokens, frames)
    n_frames, n_tokens = sub.sizes[fmt.DIM_FRAME], sub.sizes[fmt.DIM_TOKEN]
    shown = np.unique(np.linspace(0, n_frames - 1, min(max_frames, n_frames)).round().astype(int))
    keep = np.arange(n_tokens)
    if n_tokens > max_tokens:  # a light sample; traced tokens always kept
        keep = np.sort(np.random.default_rng(seed).choice(n_tokens, max_tokens, replace=False))
        keep = np.union1d(keep, np.flatnonzero(np.isin(sub[fmt.DIM_TOKEN].values, trace_ids)))
    sub = sub.isel({fmt.DIM_TOKEN: keep})
    token_ids = sub[fmt.DIM_TOKEN].values
    traced = [int(p) for p in np.flatnonzero(np.isin(token_ids, trace_ids))]
    w = _Frames(ds, positions[shown], rows[keep])
    n_shown, n_keep = len(shown), len(keep)

    # the plane(s): one for fixed and last, one per frame for aligned
    finite = np.zeros(n_shown, bool)
    mean = basis = None
    explained = np.zeros(2)
    if projection == "fixed" and fit == "all":
        dim = w.dim
        parts = []  # per batch: rows, mean, scatter about that mean (float32 data, float64 sums)
        for start, x in w:
            ok = np.isfinite(x).all(axis=(1, 2))
            finite[start:start + len(x)] = ok
            if ok.any():
                flat = (x if ok.all() else x[ok]).reshape(-1, dim)
                m = flat.mean(axis=0, dtype=np.float64)
                c = flat - m.astype(np.float32)
                parts.append((len(flat), m, (c.T @ c).astype(np.float64)))
        if not parts:
            raise TokendynError("no shown frame of W is finite (NaN or infinite everywhere: a diverged run?), so "
                                "there is no cloud to draw")
        count = sum(n for n, _, _ in parts)
        mean = sum(n * m for n, m, _ in parts) / count
        scatter = sum(sc + n * np.outer(m - mean, m - mean) for n, m, sc in parts)
        basis, explained = _plane(scatter / count)
    elif projection == "fixed":
        try:
            fit_index = int(fit)
        except ValueError:
            raise TokendynError(f"--fit takes 'all' or a frame index, got {fit!r}") from None
        if not -n_frames <= fit_index < n_frames:
            raise TokendynError(f"--fit frame {fit_index} is outside the movie's {n_frames} frames")
        fit_data = np.asarray(sub["W"].isel({fmt.DIM_FRAME: fit_index}).values, np.float64)
        if not np.isfinite(fit_data).all():
            raise TokendynError(f"--fit frame {fit_index} holds NaN or infinite values; fit on 'all' or another frame")
        mean, cov = _cov(fit_data)
        basis, explained = _plane(cov)

    xy = np.full((n_shown, n_keep, 2), np.nan, np.float32)
    radius = np.full((n_shown, n_keep), np.nan, np.float32)
    per_frame = np.full((n_shown, 2), np.nan) if projection == "aligned" else None
    k = min(neighbours, n_keep - 1)
    near = {p: np.full((n_shown, k), -1, np.int32) for p in traced}
    last_x = None
    for start, x in w:
        ok = np.isfinite(x).all(axis=(1, 2))
        at = np.flatnonzero(ok) + start
        finite[start:start + len(x)] = ok
        if not ok.all():
            x = x[ok]
        if not len(x):
            continue
        r2 = np.einsum("ftd,ftd->ft", x, x)
        radius[at] = np.sqrt(r2)
        if projection == "aligned":
            for j, frame in enumerate(x):
                m, cov = _cov(frame)
                b, _ = _plane(cov)
                if basis is not None:  # rotate (or reflect) onto the previous frame's axes
                    u, _, vt = np.linalg.svd(b.T @ basis)
                    b = b @ (u @ vt)
                basis = b
                per_frame[at[j]] = np.diag(b.T @ cov @ b) / max(float(np.trace(cov)), 1e-300)
                xy[at[j]] = frame @ b.astype(np.float32) - (m @ b).astype(np.float32)
        elif mean is not None:
            xy[at] = x @ basis.astype(np.float32) - (mean @ basis).astype(np.float32)
        else:
            last_x = x[-1].copy()  # the batch buffer is reused
        for p, rows in near.items():
            if k:  # squared distances |x|^2 - 2 x.x_p + |x_p|^2
                d = r2 - 2 * np.einsum("ftd,fd->ft", x, x[:, p]) + r2[:, p:p + 1]
                d[:, p] = np.inf
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
                rows[at] = np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, 1), axis=1, kind="stable"), 1)
    if not finite.any():
        raise TokendynError("no shown frame of W is finite (NaN or infinite everywhere: a diverged run?), so "
                            "there is no cloud to draw")
    if projection == "last":  # the plane of the last finite frame, then every frame projected onto it
        mean, cov = _cov(np.asarray(last_x, np.float64))
        basis, explained = _plane(cov)
        for start, x in w:
            ok = finite[start:start + len(x)]
            xy[np.flatnonzero(ok) + start] = x[ok] @ basis.astype(np.float32) - (mean @ basis).astype(np.float32)
    if per_frame is not None:
        explained = np.nanmean(per_frame, axis=0)

    def scalar(name: str) -> np.ndarray:
        return np.asarray(sub[name].values[shown], float) if name in sub else np.full(n_shown, np.nan)

    coords = sub.coords
    return Projection(frames=positions[shown], steps=sub[fmt.STEP].values[shown], loss=scalar("loss"), xy=xy,
                      token_ids=token_ids, classes=np.array(fmt.TOKEN_CLASSES)[sub[fmt.TOKEN_CLASS].values],
                      explained=np.asarray(explained, float), fit=str(fit) if projection == "fixed" else projection,
                      finite=finite, projection=projection, lr=scalar("lr"), radius=radius,
                      token_text=coords[fmt.TOKEN_TEXT].values if fmt.TOKEN_TEXT in coords else None,
                      token_count=coords[fmt.TOKEN_COUNT].values if fmt.TOKEN_COUNT in coords else None,
                      explained_per_frame=per_frame, neighbours=near)


def project_naming(movie: str, ds: Any, **kwargs: Any) -> Projection:
    """:func:`project`, its errors naming ``movie``."""
    try:
        return project(ds, **kwargs)
    except TokendynError as exc:
        if exc.path is not None:
            raise
        raise TokendynError(exc.problem, movie) from None
