"""Record a ``transformers.Trainer`` run into a W-movie: :class:`MovieCallback`.

>>> trainer = Trainer(model, args, train_dataset=ds,
...                   callbacks=[MovieCallback("run.h5", classes=token_classes(tok, ids, n_rows))])  # doctest: +SKIP

Frame 0 is the model before training; then one frame per optimizer step on the schedule (with
gradient accumulation: one per accumulated step), numbered by ``state.global_step``.
"""
from __future__ import annotations

import json
import os
from typing import Any

from tokendyn.integrations._capture import NAN, RecordingCallback, missing_extra

try:
    from transformers import TrainerCallback
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("transformers", "hf", _exc) from None

__all__ = ["MovieCallback"]

MOVIE_NOTE = "tokendyn_movie.json"  # in a checkpoint folder: the movie's path and run_id at that step


def _finite(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


class MovieCallback(RecordingCallback, TrainerCallback):
    """A ``transformers.TrainerCallback`` that records the input embedding (W) at every optimizer step.

    Parameters
    ----------
    path
        The movie file (``.h5``).
    record_every
        Which optimizer steps become frames: any :class:`tokendyn.Recorder` schedule (an int N,
        ``"dense:K,every:M"``, a list of steps...); default every step.
    token_class, token_text, token_count
        Per embedding row, as for :class:`tokendyn.Recorder`.
    classes
        A :class:`tokendyn.integrations.classes.TokenClasses` (instead of the three above).
    overwrite
        Replace an existing file at ``path`` when training starts from step 0.
    title
        The movie's title.
    embedding, unembedding
        For a model without ``get_input_embeddings()``: a parameter name of the model or a callable
        ``f(model)`` returning the matrix (a tensor, or a module with ``.weight``).

    Notes
    -----
    W is ``model.get_input_embeddings().weight`` in its own dtype (float32 master weights under
    ``bf16=True``; bit-exact bfloat16 for a ``model.to(torch.bfloat16)`` run). E is
    ``model.get_output_embeddings().weight`` when it has a different storage (untied).

    Scalars: ``lr`` is the learning rate of the update that made the frame, every frame (what the
    Trainer logs as ``learning_rate``). ``loss`` and ``grad_norm`` are the Trainer's own logged
    values at the steps it logs them (every ``logging_steps``; ``loss`` is the mean over the logging
    window) and NaN at the other steps: the Trainer shows callbacks no per-step loss. Set
    ``logging_steps=1`` for both at every frame. Frame 0 has NaN for all three.

    ``resume_from_checkpoint``: the movie is reopened and continued after the checkpoint's
    ``global_step`` (later frames from the interrupted run are dropped); every checkpoint save
    flushes the movie, so it holds the checkpoint's step, and notes the movie's ``run_id`` in the
    checkpoint folder (``tokendyn_movie.json``): resuming from it into another run's movie is
    refused. Only the world process zero writes. The run's config (``TrainingArguments.to_dict()``
    and ``model.config.to_dict()``) is stored in the movie. The movie is closed at ``on_train_end``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lr = NAN
        self._pending: tuple[int, dict[str, float]] | None = None

    @property
    def path(self) -> str:
        return self.movie.path

    # the frame of step s is taken at the first event after on_step_end(s): the weights do not change
    # until the next optimizer step, and on_log(s), when it comes, has the step's loss and grad norm.
    def _emit(self) -> None:
        if self._pending is not None:
            step, scalars = self._pending
            self._pending = None
            self.movie.capture(step, **scalars)

    @staticmethod
    def _checkpoint_dir(args, state) -> str:
        return os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

    def _expected_run_id(self, args, state) -> str | None:
        """The run_id noted in the checkpoint the Trainer resumes from (found where it saves them)."""
        try:
            with open(os.path.join(self._checkpoint_dir(args, state), MOVIE_NOTE), encoding="utf-8") as f:
                note = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(note, dict) or os.path.abspath(str(note.get("movie"))) != os.path.abspath(self.path):
            return None
        return note.get("run_id")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        resume = state.global_step if state.global_step > 0 else None
        if resume is not None:
            self.movie.expect_run_id = self._expected_run_id(args, state)
        config = {"stack": "transformers", "training_args": args.to_dict()}
        model_config = getattr(model, "config", None)
        if hasattr(model_config, "to_dict"):
            config["model_config"] = model_config.to_dict()
        self.movie.open(model, main=state.is_world_process_zero, resume_after=resume, config=config)
        if resume is None:
            self.movie.capture(0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._emit()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._emit()

    def on_optimizer_step(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        # after optimizer.step(), before the scheduler steps: the rate this update used
        lr = NAN
        try:
            lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else optimizer.param_groups[0]["lr"]
        except (AttributeError, IndexError, KeyError, TypeError):
            pass
        self._lr = _finite(lr)

    def on_step_end(self, args, state, control, **kwargs):
        self._emit()
        if self.movie.wants(state.global_step):
            self._pending = (state.global_step, {"lr": self._lr})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending is not None and self._pending[0] == state.global_step and logs:
            scalars = self._pending[1]
            if "loss" in logs:
                scalars["loss"] = _finite(logs["loss"])
            if "grad_norm" in logs:
                scalars["grad_norm"] = _finite(logs["grad_norm"])
            if scalars.get("lr") != scalars.get("lr") and "learning_rate" in logs:
                scalars["lr"] = _finite(logs["learning_rate"])
        self._emit()

    def on_evaluate(self, args, state, control, **kwargs):
        self._emit()

    def on_save(self, args, state, control, **kwargs):
        self._emit()
        self.movie.flush()
        folder = self._checkpoint_dir(args, state)
        if self.movie.active and self.movie.run_id and os.path.isdir(folder):
            with open(os.path.join(folder, MOVIE_NOTE), "w", encoding="utf-8") as f:
                json.dump({"movie": os.path.abspath(self.path), "run_id": self.movie.run_id,
                           "step": state.global_step}, f)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._emit()

    def on_train_end(self, args, state, control, **kwargs):
        self._emit()
        self.movie.close()
