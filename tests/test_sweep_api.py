"""SweepTrainer's live API (what the app's trainer child drives): lr per run
or for all, restarts that keep the sweep, info, engine_now."""

from __future__ import annotations

import pytest

from traintop.data.errors import InputError
from traintop.engine.config import TrainConfig
from traintop.engine.sweep.spec import parse_sweep
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.trainer import Trainer


pytestmark = pytest.mark.usefixtures("one_thread")


def make(dataset, items=("gain=1,3",), engine="fast"):
    base = TrainConfig(n_hidden=40, steps=500).validated()
    return SweepTrainer(parse_sweep(list(items), base), dataset, engine=engine)


def test_lr_for_one_run_or_all(small_dataset):
    sweep = make(small_dataset)
    sweep.step()
    sweep.set_lr(0.05, run=1)
    results = sweep.step()
    assert [r.lr for r in results] == [0.1, 0.05]
    sweep.scale_lr(0.5)
    results = sweep.step()
    assert [r.lr for r in results] == [0.05, 0.025]
    with pytest.raises(InputError, match="no run 2"):
        sweep.set_lr(0.1, run=2)


def test_restart_keeps_the_sweep(small_dataset):
    sweep = make(small_dataset, ("gain=1,3", "batchnorm=on,off"))
    for _ in range(5):
        sweep.step()
    whys = sweep.restart(gain="5/3", fan_in=False)   # gain is swept: each run keeps its own
    assert whys == ["restart: fan_in off"] * 4
    assert [t.config.gain for t in sweep.trainers] == ["1", "1", "3", "3"]
    assert all(t.config.fan_in is False and t.steps_done == 0 for t in sweep.trainers)
    assert sweep.labels[0] == "gain=1 batchnorm=on"
    assert sorted(len(idx) for idx, _ in sweep.groups) == [2, 2]
    results = sweep.step()
    solo = Trainer(sweep.trainers[3].config, small_dataset, engine="fast")
    assert results[3].loss == pytest.approx(solo.step().loss, rel=1e-5)


def test_restart_one_run_with_a_swept_value(small_dataset):
    sweep = make(small_dataset, ("gain=1,3",))
    for _ in range(3):
        sweep.step()
    whys = sweep.restart(run=1, gain="0.5", batchnorm=False)
    assert whys == ["restart: gain 1/2, batchnorm off"]
    assert sweep.labels == ("gain=1", "gain=1/2")
    assert sweep.trainers[0].steps_done == 3 and sweep.trainers[1].steps_done == 0
    assert [len(idx) for idx, _ in sweep.groups] == [1, 1]   # shapes differ now
    results = sweep.step()
    assert results[0].step == 4 and results[1].step == 1
    solo = Trainer(sweep.trainers[1].config, small_dataset, engine="fast")
    assert results[1].loss == pytest.approx(solo.step().loss, rel=1e-5)


def test_info_and_engine_now(small_dataset):
    sweep = make(small_dataset, ("gain=1,3",), engine="exact")
    assert sweep.engine_now == "exact"
    assert sweep.info(1).config["gain"] == "3"
    assert make(small_dataset).engine_now == "fast"
    assert make(small_dataset, engine="auto").engine_now == "fast"
