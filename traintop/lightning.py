"""traintop's callback for PyTorch Lightning: a LightningModule recorded as watch() does.

    from traintop.lightning import TraintopCallback
    trainer = L.Trainer(callbacks=[TraintopCallback("run.jsonl", every=10)])

Every option of watch() is accepted (every, reduce, writer_rank, meta,
expected_initial_loss, activations, ...); where this watch() takes them and the
user gave none, the clip threshold (`gradient_clip_val`) and the fp16
GradScaler come from the Trainer. What is recorded, and where Lightning gives it:

- one step per optimizer step: a step is recorded when `trainer.global_step`
  has moved in `on_train_batch_end`, so the micro-batches of
  `accumulate_grad_batches` are one step;
- its loss: the mean over its micro-batches of what `training_step` returned
  (Lightning divides it by `accumulate_grad_batches` before backward; the
  callback multiplies that back);
- the gradients as the optimizer uses them: watch()'s hooks on the optimizer
  read them at the update, after AMP unscaling and AFTER clipping
  (`gradient_clip_val`); the total gradient norm BEFORE clipping is recorded
  as the step's grad_norm: the norm Lightning's own clip computes (kept from
  its precision plugin's clip_grad_by_norm, which drops it), or without
  clipping one taken in `on_before_optimizer_step` (accumulation done, unscaled);
- update:data from the parameters just before and after `optimizer.step`;
- the lr in force at the step (read in `on_before_optimizer_step`: by
  `on_train_batch_end` a per-step scheduler has already moved it);
- under DDP rank 0 writes (writer_rank=None: every rank, "{rank}" in the path);
- the recording is closed whole in `teardown` and on an exception.

The first optimizer of `trainer.optimizers` is watched (automatic optimization).
"""

from __future__ import annotations

from traintop.callback_support import (close_quietly, fault, hookable, lr_now, lr_shown,
                                       missing, total_norm, watch_options, with_framework)

try:   # the unified package first; the standalone one where that is what is installed
    from lightning.pytorch import Callback
    from lightning.pytorch import plugins as _plugins
except ImportError:
    try:
        from pytorch_lightning import Callback
        from pytorch_lightning import plugins as _plugins
    except ImportError:
        raise missing("lightning", "lightning", "lightning") from None

# The base precision plugin (named PrecisionPlugin before Lightning 2.2).
Precision = getattr(_plugins, "Precision", None) or getattr(_plugins, "PrecisionPlugin", None)

__all__ = ["TraintopCallback"]


class TraintopCallback(Callback):
    def __init__(self, path, **options):
        """path: the recording (.jsonl or .jsonl.gz); options: watch()'s."""
        self.path = path
        self.options = watch_options(options)
        self.watcher = None
        self._optimizer = None
        self._losses: list = []        # this optimizer step's micro-batch losses
        self._seen_step = 0           # trainer.global_step at the last recorded step
        self._grad_norm = None
        self._lr = None
        self._plugin = None           # the precision plugin whose clip hands us its norm
        self._clip_norm = None

    # ----- start and end ------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        from traintop.engine.watch import watch
        close_quietly(self.watcher)          # a second fit() starts a new recording
        optimizers = getattr(trainer, "optimizers", None) or [None]
        self._optimizer = hookable(optimizers[0])
        self._losses, self._seen_step = [], trainer.global_step
        self._grad_norm = self._lr = None
        clip = trainer.gradient_clip_val if getattr(trainer, "gradient_clip_algorithm", "norm") \
            in ("norm", None) else None
        options = with_framework(self.options, max_grad_norm=clip or None,
                                 scaler=getattr(getattr(trainer, "precision_plugin", None),
                                                "scaler", None))
        self.watcher = watch(pl_module, self.path, optimizer=self._optimizer, **options)
        self._keep_clip_norm(trainer)

    def _keep_clip_norm(self, trainer) -> None:
        """Where Lightning clips by norm through its own Precision plugin, keep the
        norm clip_grad_norm_ returns (Lightning drops it): no second pass over the
        gradients for grad_norm. Other plugins (DeepSpeed, FSDP) are left alone."""
        plugin = getattr(trainer, "precision_plugin", None)
        if plugin is None or Precision is None \
                or type(plugin).clip_grad_by_norm is not Precision.clip_grad_by_norm \
                or not self._clips_by_norm(trainer):
            return
        import torch

        def clip_grad_by_norm(optimizer, clip_val):   # Precision.clip_grad_by_norm, norm kept
            self._clip_norm = torch.nn.utils.clip_grad_norm_(plugin.main_params(optimizer), clip_val)
        plugin.clip_grad_by_norm = clip_grad_by_norm
        self._plugin = plugin

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def _close(self) -> None:
        if self._plugin is not None:
            self._plugin.__dict__.pop("clip_grad_by_norm", None)   # the class's own again
            self._plugin = None
        watcher, self.watcher = self.watcher, None
        close_quietly(watcher)

    # ----- one optimizer step -------------------------------------------------------------
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.watcher is None:
            return
        try:
            self._lr = lr_now(hookable(optimizer))
            self._clip_norm = None
            # Clipping by norm through the plugin hands its norm over (see _keep_clip_norm).
            self._grad_norm = None if self._plugin is not None and self._clips_by_norm(trainer) \
                else total_norm(pl_module.parameters())
        except Exception as exc:
            fault(self.watcher, "the gradient norm before clipping", exc)

    @staticmethod
    def _clips_by_norm(trainer) -> bool:
        return bool(trainer.gradient_clip_val) and \
            getattr(trainer, "gradient_clip_algorithm", None) in ("norm", None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        w = self.watcher
        if w is None:
            return
        try:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None and hasattr(loss, "detach"):
                # training_step's loss, divided by accumulate_grad_batches for backward
                n = trainer.accumulate_grad_batches
                self._losses.append(loss.detach() * n if n != 1 else loss.detach())
            if trainer.global_step == self._seen_step:
                return                         # a micro-batch: the step is still accumulating
            self._seen_step = trainer.global_step
            losses, self._losses = self._losses, []
            norm = self._clip_norm if self._clip_norm is not None else self._grad_norm
            if norm is None:      # no clip ran after all (a configure_gradient_clipping that skips)
                norm = total_norm(pl_module.parameters())     # the gradients, unclipped
            mean = (losses[0] if len(losses) == 1 else
                    sum(losses[1:], losses[0]) / len(losses)) if losses else None
            with lr_shown(self._optimizer, self._lr):
                w.step(mean, grad_norm=norm)
            self._grad_norm = self._clip_norm = self._lr = None
        except Exception as exc:
            fault(w, "recording the Lightning step", exc)
