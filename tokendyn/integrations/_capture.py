"""What the training-stack callbacks share: finding W (and an untied E) in a model, opening or
resuming the movie, recording on the main process only, and a JSON-safe run config.

Imports torch lazily and nothing of any training stack; :mod:`tokendyn.integrations.hf` and
:mod:`tokendyn.integrations.lightning` wrap it in their stack's callback class.
"""
from __future__ import annotations

import enum
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from tokendyn.errors import RecorderError, TokendynError

SCALARS = ("loss", "lr", "grad_norm")
NAN = float("nan")

Embedding = Callable[[Any], Any] | str | None


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold made plain: enums by value, non-finite floats and
    other objects (dtypes, devices, paths) as text, mappings with text keys, sequences as lists."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    return str(value)


def _weight(found: Any) -> Any:
    """The weight tensor of what was found: an ``nn.Embedding``/``nn.Linear`` or a tensor."""
    weight = getattr(found, "weight", found)
    if weight is None or not hasattr(weight, "detach") or getattr(weight, "ndim", 0) != 2:
        return None
    return weight


def _call_getter(obj: Any, name: str) -> Any:
    fn = getattr(obj, name, None)
    if not callable(fn):
        return None
    try:
        return fn()
    except (NotImplementedError, AttributeError):
        return None


def _by_spec(module: Any, spec: Embedding, what: str, path: str) -> Any:
    if callable(spec):
        found = _weight(spec(module))
        if found is None:
            raise RecorderError(f"the {what} callable did not return a 2-D tensor or a module with a 2-D .weight",
                                path)
        return found
    params = dict(module.named_parameters())
    if spec not in params:
        near = [n for n in params if n.endswith(str(spec).rsplit(".", 1)[-1])][:5]
        raise RecorderError(f"{type(module).__name__} has no parameter {spec!r}"
                            + (f" (parameters with that ending: {near})" if near else ""), path)
    found = _weight(params[spec])
    if found is None:
        raise RecorderError(f"the parameter {spec!r} is not a 2-D matrix", path)
    return found


def find_matrices(module: Any, path: str, *, embedding: Embedding = None, unembedding: Embedding = None,
                  holders: tuple[Any, ...] = ()) -> tuple[Any, Any]:
    """W (the input embedding) and E (the output embedding when untied, else ``None``) of ``module``.

    Without ``embedding``, W is ``holder.get_input_embeddings().weight`` of the first of
    ``holders`` (then ``module``) that has one; E is the same holder's ``get_output_embeddings()``
    when it has a different storage from W and the same shape. ``embedding``/``unembedding``: a
    callable ``f(module)`` returning a tensor or a module with ``.weight``, or a parameter name of
    ``module``.

    Raises
    ------
    RecorderError
        No input embedding can be found, or ``embedding`` names nothing usable.
    """
    W = E = None
    if embedding is not None:
        W = _by_spec(module, embedding, "embedding", path)
    else:
        for holder in (*holders, module):
            if holder is None:
                continue
            W = _weight(_call_getter(holder, "get_input_embeddings"))
            if W is not None:
                E = _weight(_call_getter(holder, "get_output_embeddings"))
                break
    if W is None:
        raise RecorderError(
            f"no input embedding found in {type(module).__name__}: it has no get_input_embeddings() returning "
            "a 2-D weight; pass embedding= (a parameter name or a callable returning the matrix)", path)
    if unembedding is not None:
        E = _by_spec(module, unembedding, "unembedding", path)
    if E is not None and (E is W or E.data_ptr() == W.data_ptr()):
        E = None  # tied: the same storage is W
    if E is not None and tuple(E.shape) != tuple(W.shape):
        warnings.warn(f"{path}: the output embedding has shape {list(E.shape)}, W has {list(W.shape)}; "
                      "only W is recorded", stacklevel=3)
        E = None
    return W, E


class MovieCapture:
    """The movie side of a training callback: the recorder, opened on the main process only.

    Parameters are those of the callbacks (:class:`tokendyn.integrations.hf.MovieCallback`).
    """

    def __init__(self, path: str | os.PathLike, *, record_every: Any = 1, token_class: Any = None,
                 token_text: Any = None, token_count: Any = None, classes: Any = None, overwrite: bool = False,
                 title: str | None = None, embedding: Embedding = None, unembedding: Embedding = None):
        self.path = os.fspath(path)
        if classes is not None:
            if token_class is not None or token_text is not None or token_count is not None:
                raise RecorderError("pass classes= or token_class/token_text/token_count, not both", self.path)
            kwargs = classes.recorder_kwargs()
            token_class, token_text, token_count = kwargs["token_class"], kwargs["token_text"], kwargs["token_count"]
        self.schedule = record_every
        self.token = {"token_class": token_class, "token_text": token_text, "token_count": token_count}
        self.overwrite = bool(overwrite)
        self.title = title
        self.embedding = embedding
        self.unembedding = unembedding
        self.recorder: Any = None
        self.module: Any = None
        self.holders: tuple[Any, ...] = ()
        self.active = False  # this process writes
        self.expect_run_id: str | None = None

    def open(self, module: Any, *, main: bool, resume_after: int | None, config: Any,
             holders: tuple[Any, ...] = ()) -> None:
        """Open the movie (``resume_after``: continue it after that step) if this is the main process.

        The matrices are looked up on every process, so a model without an embedding fails everywhere.
        """
        if self.recorder is not None:
            return
        find_matrices(module, self.path, embedding=self.embedding, unembedding=self.unembedding, holders=holders)
        self.module, self.holders, self.active = module, holders, bool(main)
        if not self.active:
            return
        from tokendyn.recorder import Recorder

        self.recorder = Recorder(self.path, schedule=self.schedule, config=json_safe(config), title=self.title,
                                 scalars=SCALARS, overwrite=self.overwrite, resume_after=resume_after,
                                 expect_run_id=self.expect_run_id if resume_after is not None else None,
                                 **self.token)
        if resume_after is not None and self.recorder.last_step < resume_after:
            missing = [s for s in range(self.recorder.last_step + 1, resume_after + 1) if s in self.recorder.schedule]
            if missing:
                warnings.warn(f"{self.path}: the movie ends at step {self.recorder.last_step} but training resumes "
                              f"after step {resume_after}; {len(missing)} scheduled frame(s) are missing",
                              stacklevel=3)

    def wants(self, step: int) -> bool:
        return self.recorder is not None and self.recorder.wants(step)

    def capture(self, step: int, **scalars: Any) -> bool:
        """Record the model's current W (and E) at ``step`` if this process writes and the schedule wants it."""
        if not self.wants(step):
            return False
        W, E = find_matrices(self.module, self.path, embedding=self.embedding, unembedding=self.unembedding,
                             holders=self.holders)
        values = {name: scalars.get(name, NAN) for name in SCALARS}
        values = {k: NAN if v is None else v for k, v in values.items()}
        return self.recorder.capture(step, W=W.detach(), E=None if E is None else E.detach(), **values)

    @property
    def run_id(self) -> str | None:
        return None if self.recorder is None else self.recorder.run_id

    def flush(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def close(self) -> None:
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            rec.close()


def missing_extra(stack: str, extra: str, exc: ImportError) -> TokendynError:
    """The error for a callback whose training stack is not installed."""
    return TokendynError(f"tokendyn.integrations.{extra} needs {stack} ({exc}); "
                         f"install it with: pip install 'tokendyn[{extra}]'")


class RecordingCallback:
    """The constructor both callbacks share (mixed in before the stack's own callback class): the
    arguments of :class:`MovieCapture`, kept as ``self.movie``."""

    def __init__(self, path: str | os.PathLike, record_every: Any = 1, token_class: Any = None,
                 token_text: Any = None, token_count: Any = None, classes: Any = None, overwrite: bool = False,
                 title: str | None = None, embedding: Embedding = None, unembedding: Embedding = None):
        super().__init__()
        self.movie = MovieCapture(path, record_every=record_every, token_class=token_class, token_text=token_text,
                                  token_count=token_count, classes=classes, overwrite=overwrite, title=title,
                                  embedding=embedding, unembedding=unembedding)
