"""--init zeros (the lecture's exercise 1) in a real run: every gradient but
the output bias's (or the output BatchNorm's beta's) is exactly zero, the loss
settles at the entropy of the characters' frequencies, and the health
findings say so."""

from __future__ import annotations

import math

import pytest
import torch

from traintop.engine.config import TrainConfig
from traintop.engine.health.monitor import HealthMonitor
from traintop.engine.sweep.spec import parse_sweep
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.trainer import Trainer


pytestmark = pytest.mark.usefixtures("one_thread")


def entropy(Y: torch.Tensor, vocab: int) -> float:
    p = torch.bincount(Y, minlength=vocab).double() / len(Y)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("batchnorm", [True, False], ids=["bn", "no-bn"])
def test_only_the_output_bias_learns(small_dataset, engine, batchnorm):
    # lr 1.5 for 1,000 steps ends 0.002 above the entropy (lr 0.5 for 3,000: 0.0006),
    # well inside the 0.01 asked below, in a third of the exact engine's time
    config = TrainConfig(n_hidden=40, init="zeros", batchnorm=batchnorm, steps=1000,
                         lr=1.5, lr_decay_step=700).validated()
    trainer = Trainer(config, small_dataset, engine=engine)
    monitor = HealthMonitor(trainer.info())
    result = trainer.step()
    monitor.observe(result)
    assert result.stats is not None        # a zero gradient on zero data is shown, not hidden
    names = trainer.stack.param_names
    learning = [n for n, p in zip(names, trainer.stack.params) if p.grad.abs().max() > 0]
    assert learning == [names[-1]] == ["16.beta" if batchnorm else "10.bias"]
    assert all(w.grad_std == 0 and w.grad_mean == 0 for w in result.stats.weights)
    found = [f for f in monitor.findings() if f.rule == "no-gradient"]
    assert len(found) == 1 and found[0].severity == "error" and found[0].where == "all weights"
    assert "only the last parameter, the output layer's bias" in found[0].message
    assert "C, 0.weight" in found[0].message

    trainer.run()
    assert trainer.stopped is None
    # still only the output bias (or beta) moves, and its softmax is the
    # training targets' frequencies: the loss is their entropy
    zero = [p for n, p in zip(names, trainer.stack.params) if n != names[-1]]
    assert all(bool((p == 0).all()) for p in zero)
    H = entropy(small_dataset.train.Y, small_dataset.vocab.size)
    train = trainer.evaluate(("train",))["train"]
    assert abs(train - H) < 0.01, (train, H)
    assert trainer.first_loss == pytest.approx(math.log(small_dataset.vocab.size), rel=1e-6)


def test_default_runs_have_no_such_finding(small_dataset):
    config = TrainConfig(n_hidden=40, steps=100).validated()
    trainer = Trainer(config, small_dataset, engine="fast")
    monitor = HealthMonitor(trainer.info())
    trainer.run(on_step=monitor.observe)
    assert "no-gradient" not in {f.rule for f in monitor.findings()}


def test_a_sweep_of_inits_trains_both_batched(small_dataset):
    base = TrainConfig(n_hidden=40, steps=300).validated()
    runs = parse_sweep(["init=default,zeros"], base)
    sweep = SweepTrainer(runs, small_dataset, engine="fast")
    assert [len(idx) for idx, _ in sweep.groups] == [2]
    solo = Trainer(runs[1].config, small_dataset, engine="fast")
    while not sweep.finished:
        results = sweep.step()
    solo.run()
    assert results[1].loss == pytest.approx(solo.last.loss, rel=1e-5)
    default, zeros = (t.evaluate(("train",))["train"] for t in sweep.trainers)
    assert default < zeros - 0.2    # the default init learns more than frequencies
