"""One builder for a sweep's trainer, used by `traintop run --sweep` and the
app's trainer child alike: threads chosen for the widest batched group, the
data loaded once, then every run's trainer."""

from __future__ import annotations

from traintop.data.dataset import load_dataset
from traintop.engine.sweep.group import widest_group
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.threads import apply_threads, choose_threads


def build_sweep_trainer(runs, data: str | None, device: str, engine: str,
                        threads: int | None) -> SweepTrainer:
    config = runs[0].config
    width = widest_group([run.config for run in runs], engine)
    apply_threads(threads or choose_threads(config, runs=width))
    dataset = load_dataset(data, config.block_size, config.split_seed)
    return SweepTrainer(runs, dataset, device=device, engine=engine)
