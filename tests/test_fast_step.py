"""The fast engine computes what the exact (autograd, lecture op-order) engine does.

Same seed, same batches: after one step every figure agrees to ~1e-5
relative; over 50 steps rounding differences grow but stay small.
"""

from __future__ import annotations

import math

import pytest
import torch

from traintop.data.errors import InputError
from traintop.engine.training.checkpoint import load_checkpoint, save_checkpoint
from traintop.engine.config import TrainConfig
from traintop.engine.training.trainer import Trainer

from helpers.compare import REL, assert_histograms_are_torchs, assert_snapshots_close, close

CASES = {
    "bn tanh": dict(batchnorm=True),
    "bn tanh bias": dict(batchnorm=True, bias=True),
    "no-bn tanh bias": dict(batchnorm=False, bias=True),
    "no-bn tanh no bias": dict(batchnorm=False, bias=False, gain="1"),
    "bn linear": dict(batchnorm=True, activation="linear", gain="1"),
    "no-bn linear": dict(batchnorm=False, activation="linear", gain="1"),
    "no fan-in gain 0.5": dict(batchnorm=True, fan_in=False, gain="0.5"),
}


def pair(dataset, **knobs) -> tuple[Trainer, Trainer]:
    config = TrainConfig(n_hidden=40, steps=1000, **knobs).validated()
    return Trainer(config, dataset), Trainer(config, dataset, engine="fast")


@pytest.mark.parametrize("case", list(CASES))
def test_one_step_matches_the_exact_engine(small_dataset, case):
    exact, fast = pair(small_dataset, **CASES[case])
    e, f = exact.step(stats=True), fast.step(stats=True)
    assert f.step == e.step == 1 and f.nonfinite is None
    assert close(f.loss, e.loss)
    assert fast.first_loss == f.loss
    # log10 of the update:data ratio: compare absolutely (a ratio near 1 logs near 0)
    assert len(f.update_ratio_log10) == len(e.update_ratio_log10) == len(exact.stack.params)
    for a, b in zip(f.update_ratio_log10, e.update_ratio_log10):
        assert abs(a - b) < 1e-5
    assert f.stats.update_ratio_log10 == f.update_ratio_log10
    assert_snapshots_close(f.stats, e.stats, REL)
    assert_histograms_are_torchs(f.stats, fast.stack)
    # the parameters after the update, and the BatchNorm running buffers
    assert fast.stack.param_names == exact.stack.param_names
    for p, q in zip(fast.stack.params, exact.stack.params):
        assert p.shape == q.shape
        assert torch.allclose(p, q.detach(), rtol=1e-5, atol=1e-7)
    for (i, a), (j, b) in zip(fast.stack.batchnorms(), exact.stack.batchnorms()):
        assert i == j
        assert torch.allclose(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-7)
        assert torch.allclose(a.running_var, b.running_var, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["bn tanh", "no-bn tanh bias", "no-bn linear"])
def test_fifty_steps_stay_close(small_dataset, case):
    exact, fast = pair(small_dataset, **CASES[case])
    for _ in range(49):
        e, f = exact.step(stats=False), fast.step(stats=False)
        assert close(f.loss, e.loss, 1e-4)
        assert all(abs(a - b) < 1e-3 for a, b in zip(f.update_ratio_log10, e.update_ratio_log10))
    e, f = exact.step(stats=True), fast.step(stats=True)
    assert f.step == 50
    assert_snapshots_close(f.stats, e.stats, 1e-3)
    for p, q in zip(fast.stack.params, exact.stack.params):
        assert torch.allclose(p, q.detach(), rtol=1e-4, atol=1e-5)
    ev_e, ev_f = exact.evaluate(("train", "val")), fast.evaluate(("train", "val"))
    assert close(ev_f["val"], ev_e["val"], 1e-4) and close(ev_f["train"], ev_e["train"], 1e-4)


def test_stats_cadence_and_history(small_dataset):
    config = TrainConfig(n_hidden=8, steps=12, stats_every=5).validated()
    trainer = Trainer(config, small_dataset, engine="fast")
    steps = [trainer.step() for _ in range(12)]
    assert [r.step for r in steps if r.stats] == [1, 5, 10, 12]
    assert trainer.finished and trainer.last_stats.step == 12
    assert trainer.run() is steps[-1]
    assert trainer.history.tick == 12
    assert len(trainer.history.ratios) == len(trainer.stack.params)


def test_inf_weight_is_traced_to_its_layer(small_dataset):
    exact, fast = pair(small_dataset)
    for trainer in (exact, fast):
        trainer.step()
        with torch.no_grad():
            trainer.stack.layers[3].weight[0, 0] = float("inf")  # the second Linear
        result = trainer.step()
        assert math.isnan(result.loss)
        assert result.nonfinite.where == "layer 3 (Linear)"
        assert result.nonfinite.what == "activation" and result.nonfinite.step == 2
        assert trainer.steps_done == 1 and trainer.finished
        with pytest.raises(RuntimeError, match="the run stopped"):
            trainer.step()


def test_blow_up_stops_where_the_exact_engine_stops(small_dataset):
    knobs = dict(n_hidden=16, steps=200, batchnorm=False, activation="linear", lr=1e9)
    stops = []
    for engine in ("exact", "fast"):
        trainer = Trainer(TrainConfig(**knobs).validated(), small_dataset, engine=engine)
        last = trainer.run()
        assert last.nonfinite is not None and trainer.steps_done < 200
        assert any("stopped" in m.text for m in trainer.history.markers)
        stops.append((last.nonfinite.step, last.nonfinite.what, last.nonfinite.where))
    assert stops[0] == stops[1]


def test_nan_embedding_is_named(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=5, batchnorm=False).validated(),
                      small_dataset, engine="fast")
    with torch.no_grad():
        trainer.stack.C.fill_(float("nan"))
    assert trainer.step().nonfinite.where == "parameter C"
    trainer.restart()
    assert trainer.stopped is None and math.isfinite(trainer.step().loss)


def test_nan_gamma_is_traced_like_the_exact_engine(small_dataset):
    """A NaN gamma in a hidden BatchNorm: both engines name that layer."""
    where = []
    for trainer in pair(small_dataset):
        with torch.no_grad():
            trainer.stack.layers[1].gamma[0] = float("nan")
        where.append(trainer.step().nonfinite.where)
    assert where == ["layer 1 (BatchNorm1d)"] * 2


def test_restart_and_checkpoint_reproduce(small_dataset, tmp_path):
    config = TrainConfig(n_hidden=12, steps=10).validated()
    trainer = Trainer(config, small_dataset, engine="fast")
    first = [trainer.step().loss for _ in range(3)]
    path = save_checkpoint(trainer, tmp_path / "run.pt")
    after = [trainer.step().loss for _ in range(3)]
    trainer.restart()
    assert [trainer.step().loss for _ in range(3)] == first
    other = Trainer(config, small_dataset, engine="fast")
    load_checkpoint(other, path)
    assert other.steps_done == 3
    assert [other.step().loss for _ in range(3)] == after


def test_fast_engine_keeps_the_stack_usable(small_dataset):
    """Inference reads the same tensors the fast engine trains."""
    trainer = Trainer(TrainConfig(n_hidden=12, steps=10).validated(), small_dataset,
                      engine="fast")
    before = trainer.evaluate(("val",))["val"]
    for _ in range(5):
        trainer.step()
    assert trainer.evaluate(("val",))["val"] != before
    assert len(trainer.sample(3)) == 3
    assert trainer.calibrate(apply=True).applied
    assert math.isfinite(trainer.step().loss)  # runs on with the calibrated buffers


def test_unknown_engine_is_an_input_error(small_dataset):
    with pytest.raises(InputError, match="--engine"):
        Trainer(TrainConfig(n_hidden=8).validated(), small_dataset, engine="turbo")

