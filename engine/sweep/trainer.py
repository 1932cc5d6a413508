"""The runs of a sweep, stepped together.

Each run is a full Trainer (its own model, generator, history, lr schedule),
so everything that works on one run (evaluate, sample, calibrate,
checkpoints, info) works on `trainers[i]`. `step()` advances every unfinished
run by one step.

Engines: "exact" steps the runs one after another on the lecture's autograd
path (each bit for bit its solo run). "fast", "compiled" and "auto" train
runs whose shapes agree (traintop.engine.sweep.group.shape_key) as one
batched step (traintop.engine.steps.batched), each group in turn; a group
of one steps its own fast engine. "compiled" runs a group's plain steps
through one torch.compile'd graph (traintop.engine.steps.batched_compiled;
the first step compiles; steps with full diagnostics run eagerly). "auto"
compiles it on a thread while the first steps run eagerly, as one run's
auto engine does.

The API the live app drives:
- `step() -> list[StepResult | None]`: one step of every run; None for a
  finished (or stopped) run. A run whose loss goes non-finite stops alone
  (its Trainer.stopped is set, as a solo run's), the others go on.
- `set_lr(lr, run=None)`, `scale_lr(factor, run=None)`: the learning rate of
  run `run` (an index into `runs`), or of every run with None.
- `restart(run=None, **changes) -> list[str]`: restart run `run`, or every
  run, from step 0 with init-time `changes`; returns why per restarted run.
  A restart keeps the sweep: with run=None each run keeps its swept values
  (a swept key in `changes` is ignored); for a single run `changes` may
  override a swept key, and its label then says so.
- `engine_now`: the path steps take now ("exact", "fast", "compiled",
  "fast while compiling").
- `info(run) -> RunInfo`, `labels`, `runs`, `finished`.
"""

from __future__ import annotations

from traintop.data.dataset import Dataset
from traintop.data.errors import InputError
from traintop.engine.config import ENGINES
from traintop.engine.results import RunInfo, StepResult
from traintop.engine.training.trainer import Trainer, describe
from .group import BatchedGroup, shape_key
from .spec import SweepRun


class SweepTrainer:
    def __init__(self, runs: tuple[SweepRun, ...], dataset: Dataset, device: str = "cpu",
                 engine: str = "exact"):
        if engine not in ENGINES:
            raise InputError(f"--engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.runs = tuple(runs)
        # the batched step needs each run's FastStep, never a compile of its own
        run_engine = "exact" if engine == "exact" else "fast"
        self.trainers = tuple(Trainer(run.config, dataset, device=device, engine=run_engine)
                              for run in runs)
        self._regroup()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(run.label for run in self.runs)

    @property
    def finished(self) -> bool:
        return all(t.finished for t in self.trainers)

    @property
    def engine_now(self) -> str:
        """exact, fast, compiled, or "fast while compiling" (auto, before its
        compile is ready); the slowest path of any batched group."""
        if self.engine == "exact":
            return "exact"
        paths = {group.engine_now for _, group in self.groups if group is not None}
        for path in ("fast while compiling", "fast", "compiled"):
            if path in paths:
                return path
        return "fast"

    def info(self, run: int) -> RunInfo:
        return self.trainers[run].info()

    # ----- stepping ----------------------------------------------------------
    def _regroup(self) -> None:
        """Groups of the unfinished runs: (indices, BatchedGroup or None for one run)."""
        active = [i for i, t in enumerate(self.trainers) if not t.finished]
        self._active = set(active)
        buckets: dict[tuple, list[int]] = {}
        for i in active:
            key = (i,) if self.engine == "exact" else shape_key(self.trainers[i])
            buckets.setdefault(key, []).append(i)
        for _, group in getattr(self, "groups", []):
            if group is not None:
                group.cancel()   # a compile not begun is of no use to the new groups
        self.groups = [(idx, BatchedGroup([self.trainers[i] for i in idx], self.engine)
                        if len(idx) > 1 else None) for idx in buckets.values()]

    def step(self) -> list[StepResult | None]:
        """One step of every run not yet finished (None for those that are)."""
        results: list[StepResult | None] = [None] * len(self.trainers)
        for idx, group in self.groups:
            if group is None:
                results[idx[0]] = self.trainers[idx[0]].step()
            else:
                for i, result in zip(idx, group.step()):
                    results[i] = result
        if any(t.finished for i, t in enumerate(self.trainers) if i in self._active):
            self._regroup()   # a run finished or stopped: train the others without it
        return results

    # ----- live changes ------------------------------------------------------
    def _chosen(self, run: int | None) -> list[int]:
        if run is None:
            return list(range(len(self.trainers)))
        if not 0 <= run < len(self.trainers):
            raise InputError(f"run: no run {run}; the sweep has {len(self.trainers)}")
        return [run]

    def set_lr(self, lr: float, run: int | None = None) -> None:
        for i in self._chosen(run):
            self.trainers[i].set_lr(lr)

    def scale_lr(self, factor: float, run: int | None = None) -> None:
        for i in self._chosen(run):
            self.trainers[i].set_lr(self.trainers[i].lr * factor)

    def restart(self, run: int | None = None, **changes) -> list[str]:
        whys = []
        runs = list(self.runs)
        for i in self._chosen(run):
            swept = runs[i].changes
            mine = changes if run is not None else {k: v for k, v in changes.items()
                                                    if k not in swept}
            whys.append(self.trainers[i].restart(**mine))
            overridden = {k: v for k, v in mine.items() if k in swept}
            if overridden:
                config = self.trainers[i].config
                kept = {**swept, **{k: getattr(config, k) for k in overridden}}
                label = " ".join(f"{k}={describe(k, v)}" for k, v in kept.items())
                runs[i] = SweepRun(label, kept, config)
            else:
                runs[i] = SweepRun(runs[i].label, swept, self.trainers[i].config)
        self.runs = tuple(runs)
        self._regroup()
        return whys
