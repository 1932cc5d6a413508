"""Runs of one shape trained as one batched step (traintop.engine.steps.batched).

Each run stays a full Trainer: its own generator draws its batch (one randint
a step, as the solo run draws it), its own learning rate and schedule, its
history, stop and results (Trainer._finish, Trainer._stop). Only the tensor
work is shared.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from traintop.engine.config import TrainConfig
from traintop.engine.results import StepResult
from traintop.engine.steps.batched import BatchedStep
from traintop.engine.steps.batched_compiled import BatchedCompiled
from traintop.engine.training.trainer import AUTO_COMPILE_MIN_STEPS, Trainer



def shape_key(trainer: Trainer) -> tuple:
    """Runs with equal keys have equal tensor shapes and layer structure, so
    one batched step can train them (init values, gain, lr may differ)."""
    return config_shape_key(trainer.config) + (str(trainer.device),)


def config_shape_key(c: TrainConfig) -> tuple:
    return (c.batchnorm, c.use_bias, c.activation, c.n_embd, c.n_hidden, c.depth,
            c.block_size, c.batch_size)


def widest_group(configs, engine: str) -> int:
    """Runs in the largest batched group these configs form (1 on "exact",
    which steps every run alone)."""
    if engine == "exact" or not configs:
        return 1
    return max(Counter(config_shape_key(c) for c in configs).values())


class BatchedGroup:
    def __init__(self, trainers: list[Trainer], engine: str = "fast"):
        """Moves every trainer's parameters into one BatchedStep; each trainer's
        FastStep is replaced by its row's (views of the stacked buffers).
        `engine` "compiled": plain steps run the batched step compiled (the
        first compiles); "auto": compiled in the background for runs long
        enough to pay for it (as one run's auto engine), eager meanwhile;
        "fast": eager."""
        self.trainers = trainers
        if any(t.config.stage is not None for t in trainers):
            engine = "fast"   # the lecture's first network steps the fast engine (Trainer._start)
        device = trainers[0].device
        self.step_engine = BatchedStep([t.fast for t in trainers], device)
        for t, fast in zip(trainers, self.step_engine.fasts):
            t.fast = fast
        train = trainers[0].dataset.train
        self.X, self.Y = train.X.to(device), train.Y.to(device)
        self.compiled: BatchedCompiled | None = None
        if engine == "compiled":
            self.compiled = BatchedCompiled(self.step_engine)
        elif (engine == "auto"
              and max(t.config.steps for t in trainers) >= AUTO_COMPILE_MIN_STEPS):
            self.compiled = BatchedCompiled(self.step_engine, self._twin())

    def _twin(self) -> tuple:
        """A throwaway BatchedStep of the group's shapes and a batch for it:
        the background compile traces these, never the runs' own tensors."""
        twins = [t._twin(t.config) for t in self.trainers]
        step = BatchedStep([fast for fast, _ in twins], self.trainers[0].device)
        return (step, torch.stack([X for _, (X, _) in twins]),
                torch.stack([Y for _, (_, Y) in twins]))

    @property
    def engine_now(self) -> str:
        c = self.compiled
        if c is None or c.compiled is False:
            return "fast"
        return "compiled" if c.ready else "fast while compiling"

    def cancel(self) -> None:
        if self.compiled is not None:
            self.compiled.cancel()

    def step(self) -> list[StepResult]:
        """One step of every run of the group (none may be finished or stopped)."""
        engine, trainers = self.step_engine, self.trainers
        n = len(self.X)
        steps = [t.steps_done + 1 for t in trainers]
        lrs = [t.lr for t in trainers]
        ix = torch.stack([torch.randint(0, n, (t.config.batch_size,), generator=t.generator)
                          for t in trainers]).to(self.X.device)      # (R, B)
        Xb = self.X.index_select(0, ix.view(-1)).view(*ix.shape, -1)
        Yb = self.Y.index_select(0, ix.view(-1)).view(ix.shape)
        wants = [t.wants_stats(s) for t, s in zip(trainers, steps)]
        if self.compiled is not None and not any(wants) and self.compiled.usable():
            with torch.no_grad():
                out = self.compiled.step(Xb, Yb, lrs)
            if out is not None:
                return self._finish_all(steps, lrs, Xb, Yb, *out)
        with torch.no_grad():
            losses = engine.forward(Xb, Yb).tolist()
            bad = engine.not_finite(losses)
            engine.backward()
            engine.update(lrs, bad)
            moments = engine.moments()
            ratios = engine.update_ratios(moments, lrs)
            nan_rows = torch.isnan(ratios).any(1).tolist()
            results = []
            for r, t in enumerate(trainers):
                step, loss, lr = steps[r], losses[r], lrs[r]
                if r in bad:
                    # trace the run's batch eagerly to name its first bad layer
                    t.fast.forward(Xb[r], Yb[r])
                    results.append(t._stop(StepResult(step, loss, lr, ()),
                                           t._forward_culprit(step)))
                    continue
                want = wants[r] and not (nan_rows[r] and t._grads_bad())
                snap = engine.snapshot(r, step, loss, lr, ratios[r], moments) if want else None
                results.append(t._finish(step, loss, lr, ratios[r], snap))
        return results

    def _finish_all(self, steps, lrs, Xb, Yb, losses, nan_rows, moments, ratios):
        """Each run's result of a compiled plain step (no snapshots)."""
        results = []
        for r, t in enumerate(self.trainers):
            step, loss, lr = steps[r], losses[r], lrs[r]
            if not math.isfinite(loss):
                with torch.no_grad():
                    t.fast.forward(Xb[r], Yb[r])   # the culprit, traced eagerly
                results.append(t._stop(StepResult(step, loss, lr, ()), t._forward_culprit(step)))
            else:
                results.append(t._finish(step, loss, lr, ratios[r], None))
        return results
