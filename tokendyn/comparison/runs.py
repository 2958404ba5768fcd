"""Which runs are compared, in which groups: paths and ``NAME=GLOB`` labels to groups of movies."""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence

from tokendyn.errors import CompareError

Groups = dict[str, list[str]]
"""Each group's label and its runs' movie paths, in the order given."""


def parse_labels(pairs: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["tied=runs/tied-*.h5", ...]`` (or a mapping) -> ``{label: glob}``, in order."""
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    else:
        items = []
        for pair in pairs:
            name, sep, pattern = str(pair).partition("=")
            if not sep or not name.strip() or not pattern.strip():
                raise CompareError(f"a label is NAME=GLOB (e.g. tied='runs/tied-*.h5'), not {pair!r}")
            items.append((name.strip(), pattern.strip()))
    labels: dict[str, str] = {}
    for name, pattern in items:
        if name in labels:
            raise CompareError(f"the label {name!r} is given twice")
        labels[str(name)] = str(pattern)
    return labels


def _matches(path: str, pattern: str) -> bool:
    return fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(os.path.basename(path), pattern) \
        or fnmatch.fnmatch(os.path.abspath(path), os.path.abspath(pattern))


def _own_label(path: str, taken: set[str]) -> str:
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "run"
    label, n = stem, 2
    while label in taken:
        label, n = f"{stem}-{n}", n + 1
    return label


def resolve(runs: Sequence[str | os.PathLike] | Mapping[str, Sequence[str | os.PathLike]],
            labels: Sequence[str] | Mapping[str, str] | None = None) -> Groups:
    """The groups of a comparison.

    Parameters
    ----------
    runs : sequence of paths, or mapping of label to paths
        The movies. Given as a mapping, its keys are the groups (``labels`` must then be empty).
    labels : sequence of ``"NAME=GLOB"``, or mapping of name to glob
        Runs whose path (or file name) matches a label's glob form that label's group (seeds of
        one configuration); a run no label matches is a group of its own, labelled by its file
        name.

    Raises
    ------
    CompareError
        A run that is missing or given twice, a label that matches no run, a run two labels match,
        fewer than one run.
    """
    if isinstance(runs, Mapping):
        if labels:
            raise CompareError("give either groups (a mapping of label to runs) or labels, not both")
        groups = {str(k): [os.fspath(p) for p in v] for k, v in runs.items()}
        empty = [k for k, v in groups.items() if not v]
        if empty:
            raise CompareError(f"the group {empty[0]!r} holds no run")
    else:
        paths = [os.fspath(p) for p in runs]
        patterns = parse_labels(labels)
        groups = {}
        for name, pattern in patterns.items():
            matched = [p for p in paths if _matches(p, pattern)]
            if not matched:
                raise CompareError(f"the label {name}={pattern} matches none of the runs given")
            groups[name] = matched
        for path in paths:
            owners = [name for name, members in groups.items() if path in members and name in patterns]
            if len(owners) > 1:
                raise CompareError(f"the labels {owners[0]!r} and {owners[1]!r} both match this run; a run is in "
                                   "one group", path)
            if not owners:
                groups[_own_label(path, set(groups))] = [path]
    seen: set[str] = set()
    for members in groups.values():
        for path in members:
            key = os.path.realpath(path)
            if key in seen:
                raise CompareError("this run is given twice", path)
            seen.add(key)
            if not os.path.exists(path):
                raise CompareError("no such movie", path)
    if not seen:
        raise CompareError("no run to compare")
    return groups
