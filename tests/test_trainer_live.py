"""Live changes between steps: learning rate, restarts, stats cadence."""

from __future__ import annotations

import pytest

from traintop.data.errors import InputError
from traintop.engine.config import TrainConfig
from traintop.engine.training.trainer import Trainer


def test_stats_cadence(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=12, stats_every=5).validated(), small_dataset)
    steps = [trainer.step() for _ in range(12)]
    assert [r.step for r in steps if r.stats] == [1, 5, 10, 12]  # first, every 5th, last
    assert all(len(r.update_ratio_log10) == len(trainer.stack.params) for r in steps)
    assert trainer.finished and trainer.last_stats.step == 12


def test_lr_schedule_and_live_change(small_dataset):
    config = TrainConfig(n_hidden=8, steps=10, lr=0.1, lr_decay_step=4, lr_after=0.01)
    trainer = Trainer(config.validated(), small_dataset)
    assert [trainer.step().lr for _ in range(5)] == [0.1, 0.1, 0.1, 0.1, 0.01]
    trainer.set_lr(0.02)  # doubles the scheduled rate from now on
    assert trainer.step().lr == pytest.approx(0.02)
    assert trainer.history.markers[-1].text == "lr 0.01 -> 0.02"
    with pytest.raises(InputError, match="lr: must be finite and > 0"):
        trainer.set_lr(float("nan"))


def test_restart_reproduces_the_same_start(small_dataset):
    config = TrainConfig(n_hidden=8, steps=10).validated()
    trainer = Trainer(config, small_dataset)
    first = [trainer.step().loss for _ in range(3)]
    trainer.set_lr(0.5)
    trainer.restart()
    assert trainer.steps_done == 0 and trainer.lr == 0.1
    assert [trainer.step().loss for _ in range(3)] == first


def test_restart_with_changes_matches_a_fresh_run(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=10).validated(), small_dataset)
    trainer.run(4)
    why = trainer.restart(gain="3", batchnorm=False)
    assert why == "restart: gain 3, batchnorm off"
    config = trainer.config
    assert config.gain == "3" and not config.batchnorm and config.use_bias
    fresh = Trainer(config, small_dataset)
    assert [trainer.step().loss for _ in range(3)] == [fresh.step().loss for _ in range(3)]
    assert trainer.history.markers[-1].text == "restart: gain 3, batchnorm off"
    assert len(trainer.history.runs) == 2


def test_block_size_must_match_the_data(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=2).validated(), small_dataset)
    with pytest.raises(InputError, match="--block-size"):
        trainer.restart(block_size=4)


def test_results_hold_no_tensors(small_dataset):
    import dataclasses
    import pickle

    import torch

    trainer = Trainer(TrainConfig(n_hidden=8, steps=1).validated(), small_dataset)
    result = trainer.step()

    def walk(value):
        assert not isinstance(value, torch.Tensor)
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, (tuple, list)):
            for v in value:
                walk(v)

    walk(result)
    # Byte for byte through a pickle round trip (== cannot say it: a figure
    # the engine does not count is NaN, and NaN != NaN).
    data = pickle.dumps(result)
    assert pickle.dumps(pickle.loads(data)) == data
    assert pickle.loads(data).stats.layers[0].mean == result.stats.layers[0].mean
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.loss = 0.0


def test_a_bare_restart_reads_restart_once(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=10).validated(), small_dataset)
    trainer.run(2)
    assert trainer.restart() == "restart"
    assert trainer.history.markers[-1].text == "restart"
