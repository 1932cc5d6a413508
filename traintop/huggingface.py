"""traintop's callback for the Hugging Face Trainer: a model recorded as watch() does.

    from traintop.huggingface import TraintopCallback
    trainer = Trainer(model, args, train_dataset=ds,
                      callbacks=[TraintopCallback("run.jsonl", every=10)])

Every option of watch() is accepted (every, reduce, writer_rank, meta,
expected_initial_loss, activations, ...); where this watch() takes them and the
user gave none, the clip threshold (`max_grad_norm`) and the fp16 GradScaler
come from the Trainer. What is recorded, and where the Trainer gives it:

- one step per optimizer step (`on_optimizer_step`: after the update, before
  the scheduler moves the lr and before `zero_grad`), so the micro-batches of
  `gradient_accumulation_steps` are one step, and the lr is the one in force;
- its loss: the Trainer gives callbacks none, so a forward hook on the model
  takes the `loss` of each training forward (the model's own, what
  `compute_loss` trains on unless a subclass or `compute_loss_func` replaces
  it). Where the Trainer passes `num_items_in_batch` the model has divided its
  summed loss by the tokens of the whole step, and the step's loss is the sum
  over its micro-batches; else it is their mean. Either way the true loss of
  the step, not a share of it;
- the gradients as the optimizer uses them: watch()'s hooks on the optimizer
  (accelerate's AcceleratedOptimizer unwrapped: `optimizer.optimizer`) read
  them at the update, unscaled under fp16 and AFTER clipping (`max_grad_norm`);
  the total gradient norm BEFORE clipping is taken at the end of the step's last
  backward (divided by the fp16 loss scale) and recorded as the step's grad_norm;
- update:data from the parameters just before and after the optimizer's step;
- under DDP rank 0 writes (writer_rank=None: every rank, "{rank}" in the path);
- the recording is closed in `on_train_end`; the Trainer has no callback for
  an exception, so a run that raises is closed when the interpreter exits
  (or at the next `train()`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

from traintop.callback_support import (close_quietly, fault, hookable, missing, total_norm,
                                       watch_options, with_framework)

try:
    from transformers import TrainerCallback
except ImportError:
    raise missing("huggingface", "huggingface", "transformers") from None

import torch

__all__ = ["TraintopCallback"]


class TraintopCallback(TrainerCallback):
    def __init__(self, path, **options):
        """path: the recording (.jsonl or .jsonl.gz); options: watch()'s."""
        self.path = path
        self.options = watch_options(options)
        self.watcher = None
        self._handle = None           # the forward hook on the model
        self._finalizer = None
        self._reset()

    def _reset(self) -> None:
        self._losses: list = []       # this step's micro-batch losses (tensors, no sync)
        self._summed = False          # the model divided by the step's tokens: sum them
        self._grad_norm = None

    # ----- start and end ---------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        from traintop.engine.watch import watch
        self._close()                         # a second train() starts a new recording
        self._reset()
        self._optimizer = hookable(optimizer)
        self._scaler = getattr(optimizer, "scaler", None)          # fp16: accelerate's GradScaler
        self._sync = getattr(optimizer, "gradient_state", None)    # is this the step's last backward?
        # num_items_in_batch counted over every rank: each rank's loss is its share
        self._ranks = args.world_size if getattr(args, "average_tokens_across_devices", False) \
            and args.world_size > 1 else 1
        self._params = [p for p in model.parameters() if p.requires_grad]
        options = with_framework(self.options, max_grad_norm=args.max_grad_norm or None,
                                 scaler=self._scaler)
        watcher = watch(model, self.path, optimizer=self._optimizer, **options)
        self.watcher = watcher
        self._handle = model.register_forward_hook(self._forward, with_kwargs=True)
        self._finalizer = weakref.finalize(self, close_quietly, watcher)   # on an exception: at exit

    def on_train_end(self, args, state, control, **kwargs):
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        watcher, self.watcher = self.watcher, None
        close_quietly(watcher)

    # ----- one optimizer step --------------------------------------------------------------
    def _forward(self, module, args, kwargs, output) -> None:
        if self.watcher is None or not module.training or not torch.is_grad_enabled():
            return
        try:
            loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
            if not isinstance(loss, torch.Tensor):
                return
            self._losses.append(loss.detach().float() if loss.numel() == 1 else loss.detach().float().mean())
            self._summed = kwargs.get("num_items_in_batch") is not None
            if loss.requires_grad and (self._sync is None or self._sync.sync_gradients):
                loss.register_hook(self._backward_started)   # the step's last backward
        except Exception as exc:
            fault(self.watcher, "the step's loss", exc)

    def _backward_started(self, grad) -> None:
        try:
            torch.autograd.Variable._execution_engine.queue_callback(self._backward_ending)
        except Exception as exc:
            fault(self.watcher, "the gradient norm before clipping", exc)

    def _backward_ending(self) -> None:
        # Queued once more: DDP's own end-of-backward work (the averaged gradients
        # written into .grad) was queued during the backward, so it runs first.
        try:
            torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)
        except Exception as exc:
            fault(self.watcher, "the gradient norm before clipping", exc)

    def _backward_done(self) -> None:
        try:
            norm = total_norm(self._params)
            if norm is not None and self._scaler is not None and self._scaler.is_enabled():
                scale = getattr(self._scaler, "_scale", None)    # a tensor: no host sync
                norm = norm / (scale if isinstance(scale, torch.Tensor) else self._scaler.get_scale())
            self._grad_norm = norm
        except Exception as exc:
            fault(self.watcher, "the gradient norm before clipping", exc)

    def on_optimizer_step(self, args, state, control, **kwargs):
        w = self.watcher
        if w is None:
            return
        try:
            losses = self._losses
            loss = None
            if len(losses) == 1:
                loss = losses[0] * self._ranks if self._summed and self._ranks != 1 else losses[0]
            elif losses:
                total = torch.stack(losses).sum()
                loss = total * self._ranks if self._summed else total / len(losses)
            w.step(loss, grad_norm=self._grad_norm)
        except Exception as exc:
            fault(w, "recording the Trainer's step", exc)
        self._reset()
