"""One training run of the deep stack, a step at a time.

The trainer owns the model, the generator and the history; it hands out
only frozen results (traintop.engine.results). Live changes happen between steps:
the learning rate at once, init-time choices (gain, BatchNorm, fan-in) by
restarting from step 0 with the same seed, as the lecture compares them.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable

import torch
import torch.nn.functional as F

from traintop.data.dataset import Dataset
from traintop.data.errors import InputError
from traintop.engine.model import inference, stages
from traintop.engine.config import ENGINES, TrainConfig, gain_label, parse_gain
from traintop.engine.feed import events
from traintop.engine.steps import handover
from traintop.engine.steps.compiled import CompiledStep
from traintop.engine.steps.fast import FastStep
from .history import History
from traintop.engine.model.stack import Stack, build_stack
from traintop.engine.results import (Calibration, FoldCheck, NonFinite, RunInfo, StatsSnapshot,
                            StepResult)
from traintop.engine.steps.stats import snapshot, update_ratios

# Init-time choices: changing one restarts the run.

# "auto" compiles only for a run at least this long: compiling costs ~30 s of
# CPU cold (~5 s from inductor's disk cache), which a shorter run, done in
# seconds on the fast engine, would never win back.
AUTO_COMPILE_MIN_STEPS = 20_000

RESTART_KEYS = ("gain", "batchnorm", "activation", "fan_in", "bias", "last_layer_scale", "n_embd",
                "n_hidden", "depth", "seed")


class Trainer:
    def __init__(self, config: TrainConfig, dataset: Dataset, device: str = "cpu",
                 history: History | None = None, engine: str = "exact"):
        """`engine`: "exact" (default) follows the lecture op for op with autograd
        and reproduces its figures bit for bit; "fast" (traintop.engine.steps.fast) computes
        the same mathematics in far fewer operations, equal to ~1e-6 relative;
        "compiled" (traintop.engine.steps.compiled) is the fast engine's step as one
        torch.compile'd graph (the first step compiles), falling back to "fast"
        where compiling fails; "auto" (the command line's default) steps "fast"
        at once while a process of its own compiles the plain step
        (traintop.engine.steps.handover), then "compiled" (a run shorter than
        AUTO_COMPILE_MIN_STEPS stays "fast")."""
        if engine not in ENGINES:
            raise InputError(f"--engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.dataset = dataset
        self.device = torch.device(device)
        self.history = history if history is not None else History()
        self._train_on_device: tuple[torch.Tensor, torch.Tensor] | None = None
        self._check_dataset(config)
        self._start(config.validated(), why=None)

    # ----- setup -----------------------------------------------------------
    def _check_dataset(self, config: TrainConfig) -> None:
        if config.block_size != self.dataset.block_size:
            raise InputError(f"--block-size: the data was built with {self.dataset.block_size}, "
                             f"not {config.block_size}")
        if config.split_seed != self.dataset.split_seed:
            raise InputError(f"--split-seed: the data was split with {self.dataset.split_seed}, "
                             f"not {config.split_seed}")

    def _start(self, config: TrainConfig, why: str | None) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.stack: Stack = build_stack(config, self.dataset.vocab.size, self.generator)
        if self.device.type != "cpu":
            self.stack.to(self.device)
        self.fast = FastStep(self.stack, config.batch_size, self.device) \
            if self.engine != "exact" else None
        if getattr(self, "compiled", None) is not None:
            self.compiled.cancel()   # a restart: the old run's compile is of no use now
        self.compiled = None
        if config.stage is not None:
            pass    # the lecture's first network: compiled and auto step the fast engine
        elif self.engine == "compiled":
            self.compiled = CompiledStep(self.fast)
        elif self.engine == "auto" and config.steps >= AUTO_COMPILE_MIN_STEPS:
            how = handover.mode(self.device)
            if how == "process":   # compiled by a process of its own, loaded when written
                self.compiled = CompiledStep(self.fast, package=True)
            elif how == "thread":
                self.compiled = CompiledStep(self.fast, *self._twin(config))
        self.steps_done = 0
        self.lr_scale = 1.0  # live lr changes scale the schedule
        # Every change of the lr in force this run, by set_lr (a key) or by the
        # schedule's decay, as events (traintop.engine.feed.events.lr_changed):
        # the reports list them; take_lr_events hands the new ones to a feed.
        self.lr_events: list = []
        self.lr_events_unsent: list = []
        self.first_loss: float | None = None
        self.last: StepResult | None = None
        self.last_stats: StatsSnapshot | None = None
        self.stopped: NonFinite | None = None
        self.history.start_run(config.to_dict(), len(self.stack.params), why)

    def _twin(self, config: TrainConfig):
        """A throwaway FastStep of this run's shapes and a batch for it: the
        background compile traces these, never the run's own tensors."""
        stack = build_stack(config, self.dataset.vocab.size, torch.Generator().manual_seed(0))
        if self.device.type != "cpu":
            stack.to(self.device)
        train = self.dataset.train
        ix = torch.arange(config.batch_size) % len(train)
        return (FastStep(stack, config.batch_size, self.device),
                (train.X[ix].to(self.device), train.Y[ix].to(self.device)))

    @property
    def engine_now(self) -> str:
        """The path steps take now: exact, fast, compiled, or "fast while compiling"."""
        if self.compiled is None:
            return "fast" if self.engine in ("auto", "compiled") else self.engine
        if self.compiled.compiled is False:
            return "fast"
        return "compiled" if self.compiled.ready else "fast while compiling"

    def info(self) -> RunInfo:
        return RunInfo(
            config=self.config.to_dict(),
            vocab="".join(self.dataset.vocab.chars),
            param_names=tuple(self.stack.param_names),
            param_shapes=tuple(tuple(p.shape) for p in self.stack.params),
            layer_kinds=tuple(layer.kind for layer in self.stack.layers),
            expected_initial_loss=inference.expected_initial_loss(self.dataset.vocab.size),
        )

    # ----- stepping ----------------------------------------------------------
    @property
    def lr(self) -> float:
        """Learning rate the next step will use."""
        return self.config.lr_at(self.steps_done) * self.lr_scale

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.config.steps or self.stopped is not None

    def wants_stats(self, step: int) -> bool:
        """Full diagnostics on step 1 (the init), every stats_every, and the last."""
        return step == 1 or step % self.config.stats_every == 0 or step == self.config.steps

    def step(self, stats: bool | None = None) -> StepResult:
        if self.stopped is not None:
            raise RuntimeError(f"the run stopped: {self.stopped.message()}")
        stack, train = self.stack, self.dataset.train
        step = self.steps_done + 1
        want = self.wants_stats(step) if stats is None else stats
        lr = self.lr

        ix = torch.randint(0, len(train), (self.config.batch_size,), generator=self.generator)
        if self.fast is not None:
            return self._fast_step(step, want, lr, ix)
        Xb, Yb = train.X[ix].to(self.device), train.Y[ix].to(self.device)  # (B, block), (B,)
        logits = stack.forward(Xb)
        loss = F.cross_entropy(logits, Yb)
        if want:
            for i in stack.tanh_positions():
                stack.layers[i].out.retain_grad()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            return self._stop(StepResult(step, loss_value, lr, ()), self._forward_culprit(step))
        for p in stack.params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in stack.params:
                p.data += -lr * p.grad

        ratios = update_ratios(stack.params, lr)
        want = want and not self._diverged(ratios)  # NaN gradients: _finish traces them instead
        snap = snapshot(stack, step, loss_value, lr, ratios) if want else None
        return self._finish(step, loss_value, lr, ratios, snap)

    def _fast_step(self, step: int, want: bool, lr: float, ix: torch.Tensor) -> StepResult:
        fast = self.fast
        if self._train_on_device is None:  # the training split, once, where the model is
            train = self.dataset.train
            self._train_on_device = (train.X.to(self.device), train.Y.to(self.device))
        X, Y = self._train_on_device
        ix = ix.to(self.device)
        if self.compiled is not None:
            return self._compiled_step(step, want, lr, X.index_select(0, ix),
                                       Y.index_select(0, ix))
        with torch.no_grad():
            loss = fast.forward(X.index_select(0, ix), Y.index_select(0, ix))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                return self._stop(StepResult(step, loss_value, lr, ()),
                                  self._forward_culprit(step))
            fast.backward()
            fast.update(lr)
            moments = fast.moments()
            ratios = fast.update_ratios(moments, lr)
            want = want and not self._diverged(ratios)
            snap = fast.snapshot(step, loss_value, lr, ratios, moments) if want else None
        return self._finish(step, loss_value, lr, ratios, snap)

    def _compiled_step(self, step: int, want: bool, lr: float, Xb: torch.Tensor,
                       Yb: torch.Tensor) -> StepResult:
        with torch.no_grad():
            (loss_value, nan), moments, ratios, values = self.compiled.step(Xb, Yb, lr, want)
            if not math.isfinite(loss_value):  # the update was skipped
                # the compiled graphs set no layer outputs but the measured
                # ones: trace the batch eagerly to name the first bad layer
                self.fast.forward(Xb, Yb)
                return self._stop(StepResult(step, loss_value, lr, ()),
                                  self._forward_culprit(step))
            want = want and not (nan and self._grads_bad())
            snap = None
            if want and values is not None:
                snap = self.fast.snapshot_from(self.fast.snapshot_tensor(*values), step,
                                               loss_value, lr)
            elif want:
                snap = self.fast.snapshot(step, loss_value, lr, ratios, moments)
        return self._finish(step, loss_value, lr, ratios, snap)

    def _diverged(self, ratios: torch.Tensor) -> bool:
        """Whether a NaN update:data ratio comes from a non-finite gradient (the
        run is diverging: no snapshot, _finish names it) rather than 0/0, a
        zero gradient on zero data (--init zeros), which is a figure to show."""
        return _has_nan(ratios) and self._grads_bad()

    def _grads_bad(self) -> bool:
        return any(p.grad is not None and not bool(torch.isfinite(p.grad).all())
                   for p in self.stack.params)

    def _finish(self, step: int, loss_value: float, lr: float, ratios: torch.Tensor,
                snap: StatsSnapshot | None) -> StepResult:
        if snap is not None and self.config.stage is not None:
            snap = stages.with_first_network_figures(snap, self.stack)
        ratio_values = snap.update_ratio_log10 if snap else tuple(ratios.tolist())
        self.steps_done = step
        if self.first_loss is None:
            self.first_loss = loss_value
        result = StepResult(step, loss_value, lr, ratio_values, snap)
        self.history.add(result.log10_loss, lr, ratio_values)
        if step == self.config.lr_decay_step:
            self._lr_changed(lr, "decay")
        if any(math.isnan(r) for r in ratio_values):
            culprit = self._gradient_culprit(step)
            if culprit is not None:
                return self._stop(result, culprit)
        if snap is not None:
            self.last_stats = snap
        self.last = result
        return result

    def _stop(self, result: StepResult, culprit: NonFinite) -> StepResult:
        self.stopped = culprit
        self.history.mark(f"stopped: {culprit.message()}")
        result = StepResult(result.step, result.loss, result.lr, result.update_ratio_log10,
                            None, culprit)
        self.last = result
        return result

    def _forward_culprit(self, step: int) -> NonFinite:
        if not torch.isfinite(self.stack.C).all():
            return NonFinite(step, "parameter C", "activation")
        for i, layer in enumerate(self.stack.layers):
            if layer.out is not None and not torch.isfinite(layer.out).all():
                return NonFinite(step, f"layer {i} ({layer.kind})", "activation")
        return NonFinite(step, "loss", "loss")

    def _gradient_culprit(self, step: int) -> NonFinite | None:
        # Gradients flow from the output back: the deepest bad one came first.
        for name, p in reversed(list(zip(self.stack.param_names, self.stack.params))):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                return NonFinite(step, f"parameter {name}", "gradient")
        return None

    def run(self, steps: int | None = None, stop: threading.Event | None = None,
            on_step: Callable[[StepResult], None] | None = None) -> StepResult | None:
        """Step until `steps` more are done, the config's steps are reached,
        `stop` is set or the loss goes non-finite. Returns the last result."""
        target = self.config.steps if steps is None else min(self.config.steps,
                                                             self.steps_done + steps)
        result = self.last
        while self.steps_done < target and self.stopped is None:
            if stop is not None and stop.is_set():
                break
            result = self.step()
            if on_step is not None:
                on_step(result)
        return result

    # ----- live changes ------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        """Use `lr` from the next step on; the decay schedule keeps its ratio."""
        if not (math.isfinite(lr) and lr > 0):
            raise InputError(f"lr: must be finite and > 0, got {lr}")
        old = self.lr
        self.lr_scale = lr / self.config.lr_at(self.steps_done)
        self._lr_changed(old, None)

    def _lr_changed(self, old: float, why: str | None) -> None:
        """The lr in force went from `old` to self.lr after step steps_done:
        a marker in the history and an event (none where it did not change)."""
        new = self.lr
        if new == old and why is not None:
            return      # a decay to the same lr (--lr-after equal to --lr)
        event = events.lr_changed(self.steps_done, old, new, why)
        self.history.mark(event.text)
        self.lr_events.append(event)
        self.lr_events_unsent.append(event)

    def take_lr_events(self) -> list:
        """The lr changes since the last call (a feed's: the live runner, a recording)."""
        new, self.lr_events_unsent = self.lr_events_unsent, []
        return new

    def restart(self, **changes) -> str:
        """Start over from step 0, same seed, with init-time `changes` applied;
        returns why, in words, as the history marks it ("restart: gain 3")."""
        config = self.config.with_changes(**changes)
        self._check_dataset(config)
        why = restart_why(changes, config)
        self._start(config, why=why)
        return why

    # ----- around training ---------------------------------------------------
    def evaluate(self, splits=("train", "val")) -> dict[str, float]:
        out = {}
        # The first network's BatchNorm is evaluated as the lecture's loss log
        # is: on the training set's exact statistics (a no-op without BatchNorm).
        exact = self.config.stage is not None
        with inference.exact_statistics(self.stack, self.dataset.train.X, self.device) \
                if exact else contextlib.nullcontext():
            for name in splits:
                split = self.dataset.split(name)
                out[name] = inference.split_loss(self.stack, split.X, split.Y, self.device)
        if "val" in out:
            self.history.add_val_loss(out["val"])
        self.history.mark("evaluate " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out

    def calibrate(self, apply: bool = False) -> Calibration:
        result = inference.calibrate(self.stack, self.dataset.train.X, self.device, apply)
        self.history.mark("calibrate BatchNorm" + (" (applied)" if apply else ""))
        return result

    def apply_calibration(self, split: str = "val") -> tuple[Calibration, float, float]:
        """`C` in the app: the exact training-set statistics replace the running
        estimates, and `split`'s loss is evaluated on each: (calibration,
        loss on the running estimates, loss on the exact statistics)."""
        data = self.dataset.split(split)
        before = inference.split_loss(self.stack, data.X, data.Y, self.device)
        result = self.calibrate(apply=True)
        return result, before, inference.split_loss(self.stack, data.X, data.Y, self.device)

    def check_fold(self, split: str = "val") -> FoldCheck:
        """Each BatchNorm folded into the Linear before it (a copy: the run goes
        on unfolded): the largest logit difference and `split`'s loss with and
        without folding."""
        data = self.dataset.split(split)
        result = inference.check_fold(self.stack, data.X, self.device, data.Y)
        self.history.mark(f"fold BatchNorm: {split} loss {result.loss:.4f} -> "
                          f"{result.loss_folded:.4f} folded")
        return result

    def sample(self, n: int = 20) -> tuple[str, ...]:
        return inference.sample(self.stack, self.dataset.vocab.itos(), self.config.block_size,
                                n, self.config.seed, self.device)


def restart_why(changes: dict, config: TrainConfig) -> str:
    """"restart" alone, or "restart: gain 3, batchnorm off" naming each change."""
    if not changes:
        return "restart"
    return "restart: " + ", ".join(f"{k} {describe(k, getattr(config, k))}" for k in changes)


def describe(key: str, value) -> str:
    if key == "gain":
        return gain_label(parse_gain(value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _has_nan(ratios: torch.Tensor) -> bool:
    # A NaN ratio means a NaN or inf gradient (a zero gradient gives -inf, which is fine).
    return bool(torch.isnan(ratios).any())
