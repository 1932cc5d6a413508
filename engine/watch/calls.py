"""w.step's calls matched to the optimizer's steps: one recorded step per
optimizer step, whatever the loop does.

The optimizer's step pre- and post-hooks count its steps. A call of w.step
    - after one (or more) optimizer steps since the last call: a step;
    - between the pre- and post-hook (inside optimizer.step(closure), where
      Lightning runs training_step): "misuse" (closure), kept and recorded when
      that optimizer step ends, so its update ratios and gradients are that
      step's (several closure calls in one step, as LBFGS makes: their mean);
    - with no optimizer step since the last call and finite, non-zero
      gradients: a micro-batch under gradient accumulation, "misuse"
      (accumulation) once a step has been recorded (a first call before the
      first optimizer step is a loop that calls w.step before opt.step: folded
      in silently); folded into the next step, whose loss is the mean of the
      calls' losses and whose gradient norm the last one given;
    - with no optimizer step and non-finite or no gradients: a step the
      GradScaler skipped (scaler.step found inf/NaN and did not call
      optimizer.step): recorded as a step, with a "skipped" event.
Calls still folded when the watcher closes are recorded as its last step.
Only the last case reads the gradients (one reduction, one host sync), and
only when the optimizer did not step: a loop that calls w.step once per
optimizer step never pays for it. Without an optimizer every call is a step.
"""

from __future__ import annotations

import math

import torch

MISUSE_TEXT = {
    "closure": ("w.step runs inside optimizer.step (from its closure, e.g. in a Lightning "
                "training_step): before the backward and the update it reports; traintop "
                "records it when the optimizer step ends. Call w.step after the optimizer "
                "step (a callback's on_train_batch_end, or after opt.step() in your loop)."),
    "accumulation": ("w.step runs more often than the optimizer steps (once per micro-batch "
                     "under gradient accumulation?): traintop folds the calls into one step "
                     "per optimizer step, its loss their mean. Call w.step once per "
                     "optimizer step, after it."),
}


class StepCalls:
    """The optimizer's steps counted, w.step's calls sorted against them (see
    the module's docstring). Holds the calls not recorded yet."""

    def __init__(self, watcher):
        self.w = watcher
        self.started = 0            # optimizer steps begun (pre-hook)
        self.inside = False         # between the optimizer's pre- and post-hook
        self.seen = 0               # `started` at the last recorded step
        self.micro: list = []       # (loss, grad_norm) folded into the next step
        self.closure: list = []     # calls made inside the optimizer step under way
        self.misuse: dict[str, int] = {}   # kind -> calls of that kind so far

    # ----- the optimizer's hooks ----------------------------------------------
    def optimizer_begins(self) -> None:
        self.started += 1
        self.inside = True

    def optimizer_ends(self) -> None:
        self.inside = False

    def closure_steps_end(self) -> None:
        """The optimizer step under way has ended: its closure's calls recorded."""
        if not self.closure:
            return
        calls, self.closure = self.micro + self.closure, []
        self.micro = []
        self.seen = self.started
        try:
            self.w._record(*_folded(calls), False)
        except Exception as exc:
            self.w._fault("recording the step", exc)

    # ----- w.step ---------------------------------------------------------------
    def sort(self, loss, grad_norm):
        """(loss, grad_norm, skipped) to record now, or None (kept for later)."""
        if self.w.optimizer is None:
            return loss, grad_norm, False
        if self.inside:
            self._misuse("closure")
            self.closure.append((loss, grad_norm))
            return None
        if self.started > self.seen:
            self.seen = self.started
            calls, self.micro = self.micro + [(loss, grad_norm)], []
            return (*_folded(calls), False)
        if not self._stepped_gradients():
            calls, self.micro = self.micro + [(loss, grad_norm)], []
            return (*_folded(calls), True)
        if self.w.steps >= 1:
            self._misuse("accumulation")
        self.micro.append((loss, grad_norm))
        return None

    def _misuse(self, kind: str) -> None:
        n = self.misuse.get(kind, 0)
        self.misuse[kind] = n + 1
        if n == 0:   # one event per kind: the first call that shows it
            from traintop.engine.feed.messages import Event
            step = self.w.steps + 1
            # written with the step it belongs to (w._record writes the events)
            self.w._events.append(Event("misuse", step, MISUSE_TEXT[kind], {"kind": kind}))

    def _stepped_gradients(self) -> bool:
        """Whether the gradients are there, finite and not all zero: what a
        micro-batch of accumulation leaves (a skipped step leaves inf or NaN;
        a zeroed one none)."""
        grads = [p.grad for p in self.w.params if p.grad is not None]
        if not grads:
            return False
        with torch.no_grad():
            norms = torch._foreach_norm(grads)
            total = float(torch.stack([n.float().to(grads[0].device) for n in norms]).sum())
        return math.isfinite(total) and total > 0


def _folded(calls: list) -> tuple:
    """The calls' mean loss (tensors stay on their device) and last gradient norm."""
    if len(calls) == 1:
        return calls[0]
    losses = [l for l, _ in calls if l is not None]
    norms = [g for _, g in calls if g is not None]
    if not losses:
        loss = None
    elif all(isinstance(l, torch.Tensor) for l in losses):
        loss = torch.stack([l.detach().float().mean() for l in losses]).mean()
    else:
        loss = sum(float(l) for l in losses) / len(losses)
    return loss, (norms[-1] if norms else None)
