"""Record a Lightning run into a W-movie: :class:`MovieCallback`.

>>> trainer = lightning.pytorch.Trainer(callbacks=[MovieCallback("run.h5")], ...)  # doctest: +SKIP

Frame 0 is the model before training; then one frame per optimizer step on the schedule (with
``accumulate_grad_batches``: one per accumulated step), numbered by ``trainer.global_step``.
"""
from __future__ import annotations

from typing import Any

from tokendyn.integrations._capture import NAN, RecordingCallback, missing_extra

try:
    import lightning.pytorch as pl
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("lightning", "lightning", _exc) from None

__all__ = ["MovieCallback"]


def _loss(outputs: Any) -> Any:
    """The loss tensor of a ``training_step`` output (a tensor or a mapping with ``"loss"``), detached."""
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if outputs is None or not hasattr(outputs, "detach") or outputs.numel() != 1:
        return None
    return outputs.detach().reshape(())


class MovieCallback(RecordingCallback, pl.Callback):
    """A ``lightning.pytorch.Callback`` that records the input embedding (W) at every optimizer step.

    Parameters
    ----------
    path, record_every, token_class, token_text, token_count, classes, overwrite, title
        As for :class:`tokendyn.integrations.hf.MovieCallback`.
    embedding, unembedding
        Where W (and E) are. By default W is ``pl_module.model.get_input_embeddings().weight``
        when the module wraps a model that has one (a ``transformers`` model as ``self.model``),
        else ``pl_module.get_input_embeddings().weight``; E is the same object's
        ``get_output_embeddings().weight`` when untied (different storage). Otherwise pass a
        parameter name of ``pl_module`` (``"encoder.tok.weight"``) or a callable
        ``f(pl_module)`` returning the matrix (a tensor or a module with ``.weight``).

    Notes
    -----
    The movie is opened at ``on_train_start`` rather than ``on_fit_start``: Lightning restores a
    checkpoint's ``global_step`` (``fit(ckpt_path=...)``) between the two. A resumed fit continues
    the movie after the restored step; the checkpoint also stores the movie's ``run_id``, and a
    movie with another one is refused. Saving a checkpoint flushes the movie first.

    Scalars, every frame: ``loss`` is the mean of the ``training_step`` losses of the micro-batches
    of the optimizer step (``outputs`` or ``outputs["loss"]``), ``lr`` is
    ``trainer.optimizers[0].param_groups[0]["lr"]`` as the update used it, and ``grad_norm`` the
    2-norm of all gradients before clipping (taken at ``on_before_optimizer_step``). Frame 0 has
    NaN for all three. Only ``trainer.is_global_zero`` writes.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._seen_step = -1
        self._loss_sum: Any = None
        self._n_losses = 0
        self._lr = NAN
        self._grad_norm: Any = NAN

    @property
    def path(self) -> str:
        return self.movie.path

    def on_train_start(self, trainer, pl_module):
        step = int(trainer.global_step)
        resume = step if (step > 0 or trainer.ckpt_path is not None) else None
        config: dict[str, Any] = {"stack": "lightning", "module": type(pl_module).__name__,
                                  "hparams": dict(pl_module.hparams),
                                  "trainer": {"max_steps": trainer.max_steps, "max_epochs": trainer.max_epochs,
                                              "accumulate_grad_batches": trainer.accumulate_grad_batches,
                                              "precision": trainer.precision, "world_size": trainer.world_size,
                                              "gradient_clip_val": trainer.gradient_clip_val}}
        inner = getattr(pl_module, "model", None)
        if hasattr(getattr(inner, "config", None), "to_dict"):
            config["model_config"] = inner.config.to_dict()
        self.movie.open(pl_module, main=trainer.is_global_zero, resume_after=resume, config=config,
                        holders=(inner,) if inner is not None else ())
        self._seen_step = step
        if resume is None:
            self.movie.capture(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = _loss(outputs)
        if loss is not None:
            self._loss_sum = loss.float() if self._loss_sum is None else self._loss_sum + loss.float()
            self._n_losses += 1
        step = int(trainer.global_step)
        if step <= self._seen_step:
            return  # a micro-batch within an accumulation window
        self._seen_step = step
        if self.movie.wants(step):
            loss = NAN if self._loss_sum is None else self._loss_sum / self._n_losses
            self.movie.capture(step, loss=loss, lr=self._lr, grad_norm=self._grad_norm)
        self._loss_sum, self._n_losses = None, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if not self.movie.active or not self.movie.wants(int(trainer.global_step) + 1):
            return
        try:
            self._lr = float(optimizer.param_groups[0]["lr"])
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            self._lr = NAN
        import torch

        norms = [p.grad.detach().float().norm() for p in pl_module.parameters() if p.grad is not None]
        self._grad_norm = torch.stack(norms).norm() if norms else NAN

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.movie.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"movie": self.movie.path, "run_id": self.movie.run_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.movie.expect_run_id = state_dict.get("run_id")

    def on_train_end(self, trainer, pl_module):
        self.movie.close()

    def on_exception(self, trainer, pl_module, exception):
        try:  # keep every frame so far; the training's own exception is the one to see
            self.movie.close()
        except Exception:  # noqa: BLE001
            pass
