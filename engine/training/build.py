"""The one way a trainer is built from the user's options: `traintop run`
and the app's trainer child both call build_trainer."""

from __future__ import annotations

from pathlib import Path

from traintop.data.dataset import load_dataset
from traintop.engine.config import TrainConfig
from .checkpoint import load_checkpoint
from .threads import apply_threads, choose_threads
from .trainer import Trainer


def build_trainer(config: TrainConfig, data: str | Path | None = None, device: str = "cpu",
                  engine: str = "exact", threads: int | None = None,
                  resume: str | Path | None = None) -> Trainer:
    """Threads, data and trainer for `config`; with `resume`, the checkpoint's
    run continued (its config, with `config.steps` as the new end)."""
    apply_threads(threads or choose_threads(config))
    dataset = load_dataset(data, config.block_size, config.split_seed)
    trainer = Trainer(config, dataset, device=device, engine=engine)
    if resume:
        load_checkpoint(trainer, resume)
        trainer.config = trainer.config.with_changes(steps=config.steps)
    return trainer
