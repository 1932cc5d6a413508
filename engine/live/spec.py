"""What the trainer child is built from: a SessionSpec pickles across the spawn."""

from __future__ import annotations

from dataclasses import dataclass

from traintop.engine.config import DEFAULT_ENGINE, TrainConfig


@dataclass(frozen=True)
class SessionSpec:
    """Everything the child needs to build its trainer (it pickles)."""

    config: TrainConfig
    data: str | None = None          # word file; None = embedded names
    device: str = "cpu"
    resume: str | None = None        # checkpoint to continue
    threads: int | None = None       # None: traintop.engine.training.threads.choose_threads
    checkpoint_dir: str = "."        # where `checkpoint` without a path writes
    start_paused: bool = False
    engine: str = DEFAULT_ENGINE     # Trainer engine (traintop.engine.config.ENGINES)
    why: str | None = None           # the first RunStarted's why (a fresh trainer's reason)
    # The runs of a sweep (traintop.engine.sweep.spec.SweepRun, from --sweep);
    # empty for a single run. `config` is then the sweep's base config.
    sweep: tuple = ()
