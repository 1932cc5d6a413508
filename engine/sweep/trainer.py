"""The runs of a sweep, stepped together.

Each run is a full Trainer (its own model, generator, history, lr schedule),
so everything that works on one run (evaluate, sample, calibrate,
checkpoints, info) works on each. `step()` advances every unfinished run by
one step. This first version steps the runs one after another; runs whose
shapes agree are to be stepped as one batched step (see the sweep issue).
"""

from __future__ import annotations

from ...data.dataset import Dataset
from ..results import StepResult
from ..training.trainer import Trainer
from .spec import SweepRun


class SweepTrainer:
    def __init__(self, runs: tuple[SweepRun, ...], dataset: Dataset, device: str = "cpu",
                 engine: str = "exact"):
        self.runs = runs
        self.labels = tuple(run.label for run in runs)
        self.trainers = tuple(Trainer(run.config, dataset, device=device, engine=engine)
                              for run in runs)

    @property
    def finished(self) -> bool:
        return all(t.finished for t in self.trainers)

    def step(self) -> list[StepResult | None]:
        """One step of every run not yet finished (None for those that are)."""
        return [None if t.finished else t.step() for t in self.trainers]
