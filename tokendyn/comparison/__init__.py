"""Runs compared: seeds of one configuration as a group, groups against each other, token classes
against each other, each difference with a test and its uncertainty.

:func:`build` does the work without plotting (``tokendyn compare`` and :func:`tokendyn.compare`
write it as an HTML page and ``comparison.json``): :mod:`.runs` makes the groups, :mod:`.digest`
runs every applicable analysis of the registry once per run and keeps what compares,
:mod:`.aggregate` compares.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import aggregate
from .digest import RunDigest, digest_run
from .runs import Groups, resolve


@dataclass
class Comparison:
    """A comparison: its groups, the runs' digests and what :mod:`.aggregate` made of them."""

    groups: Groups
    runs: list[RunDigest]
    analyses: list[str]
    headlines: dict[str, Any]
    curves: dict[str, Any]
    loss: dict[str, Any]
    events: dict[str, Any]
    tests: dict[str, list[dict[str, Any]]]
    notes: list[str]
    options: dict[str, Any]

    @property
    def phantom_vs_dead(self) -> list[dict[str, Any]]:
        """The rows that answer "do phantom tokens behave like natural dead tokens?": dead against
        phantom, within each run and over each group's runs."""
        rows = self.tests["within_group"] + self.tests["within_run"]
        return [r for r in rows if (r["a"], r["b"]) == ("dead", "phantom")]


def build(runs: Sequence[str | os.PathLike] | Mapping[str, Sequence[str | os.PathLike]],
          labels: Sequence[str] | Mapping[str, str] | None = None, *, alpha: float = 0.05, margin: float = 0.2,
          run_margin: float = 0.5, progress: bool = False,
          on_run: Callable[[int, int, str], None] | None = None) -> Comparison:
    """Compare runs.

    Parameters
    ----------
    runs, labels
        The movies and their groups (see :func:`tokendyn.comparison.runs.resolve`).
    alpha : float
        The level of every test (``different`` when p < alpha).
    margin : float
        The equivalence margin of a per-token test: two classes are ``same`` when the
        (1 - 2 alpha) interval of Cliff's delta lies inside ± margin.
    run_margin : float
        The equivalence margin of a test over runs, in Hedges' g.
    progress : bool
        A progress bar on stderr over the runs and their analyses.
    on_run : callable, optional
        ``on_run(index, total, path)`` before each run is digested.
    """
    groups = resolve(runs, labels)
    members = [(label, path) for label, paths in groups.items() for path in paths]
    digests = []
    bar = None
    if progress:
        from tokendyn.analysis import registry
        from tokendyn.progress import progress_bar

        order = list(registry.analyses())

        bar = progress_bar(len(members), "compare", " runs",
                           bar_format="{l_bar}{bar}| {n:.1f}/{total} runs [{elapsed}<{remaining}{postfix}]")
    for index, (label, path) in enumerate(members):
        if on_run is not None:
            on_run(index, len(members), path)
        moved = None
        if bar is not None:
            def moved(name: str, done: int, total: int, _i: int = index, _path: str = path) -> None:
                # the run's share of the bar, split evenly over the analyses, so it only moves forward
                part = (order.index(name) + done / max(total, 1)) / len(order) if name in order else 0.0
                bar.set_postfix_str(f"{os.path.basename(_path)}: {name}", refresh=False)
                bar.n = _i + min(part, 0.999)
                bar.refresh()
        digests.append(digest_run(path, label, progress=moved))
        if bar is not None:
            bar.n = index + 1
            bar.refresh()
    if bar is not None:
        bar.close()
    names = aggregate.common_analyses(digests)
    ran = [n for n in dict.fromkeys(n for d in digests for n in d.analyses)]
    return Comparison(
        groups=groups, runs=digests, analyses=ran,
        headlines={n: aggregate.headlines(digests, groups, n) for n in ran},
        curves={n: aggregate.curves(digests, groups, n) for n in ran},
        loss=aggregate.loss_curves(digests, groups),
        events={n: e for n in ran if (e := aggregate.events(digests, groups, n))},
        tests=aggregate.class_tests(digests, groups, alpha=alpha, margin=margin, run_margin=run_margin),
        notes=aggregate.notes(digests),
        options={"alpha": alpha, "margin": margin, "run_margin": run_margin, "common_analyses": names})


__all__ = ["Comparison", "build", "resolve", "digest_run", "RunDigest"]
