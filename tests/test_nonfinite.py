"""A non-finite loss stops the run and says where it started; nothing crashes."""

from __future__ import annotations

import math

import pytest
import torch

from traintop.engine.config import TrainConfig
from traintop.engine.training.trainer import Trainer


def test_inf_weight_is_traced_to_its_layer(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=16, steps=10).validated(), small_dataset)
    trainer.step()
    with torch.no_grad():
        trainer.stack.layers[3].weight[0, 0] = float("inf")  # the second Linear (BatchNorm on)
    result = trainer.step()
    assert math.isnan(result.loss)
    assert result.nonfinite is not None
    assert result.nonfinite.step == 2
    assert result.nonfinite.what == "activation"
    assert result.nonfinite.where == "layer 3 (Linear)"
    assert trainer.stopped == result.nonfinite
    assert trainer.steps_done == 1  # the failed step did not count
    assert trainer.finished
    with pytest.raises(RuntimeError, match="the run stopped"):
        trainer.step()
    assert trainer.run() is result  # run() does not step a stopped trainer


def test_huge_learning_rate_blows_up_and_stops(small_dataset):
    config = TrainConfig(n_hidden=16, steps=200, batchnorm=False, activation="linear",
                         lr=1e9).validated()
    trainer = Trainer(config, small_dataset)
    last = trainer.run()
    assert last.nonfinite is not None
    assert trainer.steps_done < 200
    assert "non-finite" in last.nonfinite.message()
    assert any("stopped" in m.text for m in trainer.history.markers)


def test_nan_embedding_is_named(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=5, batchnorm=False).validated(), small_dataset)
    with torch.no_grad():
        trainer.stack.C.fill_(float("nan"))
    result = trainer.step()
    assert result.nonfinite.where == "parameter C"


def test_restart_clears_the_stop(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=5).validated(), small_dataset)
    with torch.no_grad():
        trainer.stack.layers[0].weight.fill_(float("nan"))
    assert trainer.step().nonfinite is not None
    trainer.restart()
    assert trainer.stopped is None
    assert math.isfinite(trainer.step().loss)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_nan_gradients_on_a_stats_step_are_traced_not_crashed(small_dataset, engine):
    # A gain of 1e30 with BatchNorm keeps the loss finite but turns gradients NaN.
    config = TrainConfig(n_hidden=16, steps=3, gain="1e30").validated()
    trainer = Trainer(config, small_dataset, engine=engine)
    result = trainer.run()
    assert result.nonfinite is not None and result.nonfinite.what == "gradient"
    assert result.nonfinite.where.startswith("parameter ")
    assert result.stats is None


def test_cli_reports_nan_gradients_without_traceback(capsys):
    from traintop.commands.cli import main

    code = main(["run", "--steps", "3", "--gain", "1e30", "--n-hidden", "16"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "stopped: non-finite gradient at step 1" in out
    assert "Traceback" not in err
