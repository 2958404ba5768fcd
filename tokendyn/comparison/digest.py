"""One run, boiled down to what a comparison needs: each applicable analysis run once (streaming,
as the report runs it), keeping its headline, curves, per-token values by class and events; the
result itself is let go before the next analysis, so memory does not grow with the runs."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import TokendynError
from tokendyn.jsonable import jsonable

CONFIG_SHOWN = ("preset", "precision", "tied", "control", "seed", "lr", "weight_decay", "layers",
                "vocab_size", "n_phantom")


@dataclass
class Curve:
    """One curve of one run: ``values`` over ``steps`` (and ``classes`` where it has a class axis)."""

    name: str
    long_name: str
    units: str
    steps: np.ndarray
    values: np.ndarray  # (frames,) or (frames, classes)
    classes: list[str] | None = None

    def by_class(self) -> dict[str, np.ndarray]:
        """``{class or "all": values over steps}``."""
        if self.classes is None:
            return {"all": self.values}
        return {c: self.values[:, i] for i, c in enumerate(self.classes)}


@dataclass
class TokenQuantity:
    """One number per token of one run, split by token class."""

    name: str
    long_name: str
    units: str
    by_class: dict[str, np.ndarray]
    note: str = ""


@dataclass
class AnalysisDigest:
    """What one analysis gave on one run."""

    name: str
    tokens: str
    headline: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    token_values: dict[str, TokenQuantity] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunDigest:
    """One run of a comparison."""

    path: str
    label: str
    meta: dict[str, Any]
    config: dict[str, Any]
    analyses: dict[str, AnalysisDigest] = field(default_factory=dict)
    not_applied: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    loss: Curve | None = None

    def describe(self) -> dict[str, Any]:
        """The run's row in the comparison's table of runs."""
        return {"label": self.label, "path": self.path, **{k: self.meta[k] for k in
                ("frames", "steps", "tokens", "tokens_per_class", "dim", "dtype")},
                **{k: self.config.get(k) for k in CONFIG_SHOWN if k in self.config}}


def _tokens_text(tokens: Any) -> str:
    if tokens is None or isinstance(tokens, str):
        return str(tokens or "all")
    arr = np.asarray(tokens)
    return f"{int(arr.sum())} tokens (a mask)" if arr.dtype == bool else f"{arr.size} token ids"


def _curve(name: str, var: xr.DataArray) -> Curve:
    classes = [str(c) for c in var["class"].values] if "class" in var.dims else None
    order = [fmt.DIM_FRAME] + (["class"] if classes else [])
    var = var.transpose(*order)
    steps = np.asarray(var[fmt.STEP].values if fmt.STEP in var.coords else var[fmt.DIM_FRAME].values, np.int64)
    return Curve(name, str(var.attrs.get("long_name", name)), str(var.attrs.get("units", "")), steps,
                 np.asarray(var.values, np.float64), classes)


def _by_class(var: xr.DataArray, ids: np.ndarray, classes: np.ndarray, name: str) -> TokenQuantity:
    tokens = np.asarray(var[fmt.DIM_TOKEN].values if fmt.DIM_TOKEN in var.coords else ids[: var.size], np.int64)
    values = np.asarray(var.values, np.float64)
    position = np.searchsorted(ids, tokens)
    cls = classes[position]
    by_class = {c: values[cls == code] for code, c in enumerate(fmt.TOKEN_CLASSES) if np.any(cls == code)}
    return TokenQuantity(name, str(var.attrs.get("long_name", name)), str(var.attrs.get("units", "")), by_class,
                         str(var.attrs.get("note", "")))


def digest_run(path: str, label: str, *, progress: Callable[[str, int, int], None] | None = None) -> RunDigest:
    """Run every registered analysis that applies to the movie at ``path`` (on its
    :meth:`~tokendyn.analysis.registry.Analysis.tokens_to_compare`) and keep what the comparison
    needs. An analysis that fails on this run is noted (``failed``), not fatal."""
    from tokendyn.analysis import registry
    from tokendyn.sources.dataset import open_movie
    from tokendyn.tools.inspect import info

    ds = open_movie(path)
    meta = info(path)
    config = ds.attrs.get("config") if isinstance(ds.attrs.get("config"), dict) else {}
    run = RunDigest(os.fspath(path), label, meta, dict(config))
    if "loss" in ds:
        loss = ds["loss"]
        run.loss = Curve("loss", "training loss", "nats/token", np.asarray(ds[fmt.STEP].values, np.int64),
                         np.asarray(loss.values, np.float64))
    ids = np.asarray(ds[fmt.DIM_TOKEN].values, np.int64)
    classes = np.asarray(ds[fmt.TOKEN_CLASS].values)
    for name, spec in registry.analyses().items():
        tokens = spec.tokens_to_compare(ds)
        if not spec.applies(ds, tokens):
            run.not_applied.append(name)
            continue
        started = time.perf_counter()
        step = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        try:
            result = spec.standard_run(ds, tokens, progress=step)
            got = AnalysisDigest(name, _tokens_text(tokens), attrs=jsonable(dict(result.attrs)))
            if spec.headline is not None:
                got.headline = jsonable(spec.headline(result))
            if spec.curves is not None:
                got.curves = {k: _curve(k, v) for k, v in spec.curves(result).items()}
            if spec.token_values is not None:
                got.token_values = {k: _by_class(v, ids, classes, k) for k, v in spec.token_values(result).items()}
            if spec.events is not None:
                got.events = jsonable(spec.events(result))
        except TokendynError as exc:
            run.failed[name] = exc.problem
            continue
        finally:
            result = None  # noqa: F841 - the next analysis must not hold this one's arrays
        got.seconds = time.perf_counter() - started
        run.analyses[name] = got
    return run
