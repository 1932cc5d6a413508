"""`traintop run --fold` (issue 25, the lecture's exercise): each BatchNorm
folded into the Linear before it after training; the val loss with and
without folding and the largest logit difference, in text and --json,
against the stack written out by hand (tests/bn_direct.py)."""

from __future__ import annotations

import json

import pytest
import torch

from traintop.data.errors import InputError
from traintop.engine.config import TrainConfig
from traintop.engine.training.build import build_trainer

import bn_direct

STEPS = 30


def run_main(capsys, *args: str) -> str:
    from traintop.commands.run import main

    previous = torch.get_num_threads()   # main() sets the run's thread count
    try:
        assert main(["--steps", str(STEPS), "--engine", "fast", *args]) == 0
    finally:
        torch.set_num_threads(previous)
    return capsys.readouterr().out


def same_run(**changes):
    """The run `traintop run` trained: same config, data, engine and seed."""
    trainer = build_trainer(TrainConfig(steps=STEPS).with_changes(**changes), None, "cpu",
                            "fast", 1)
    trainer.run()
    return trainer


def test_fold_json_against_a_direct_computation(capsys):
    doc = json.loads(run_main(capsys, "--fold", "--json"))
    trainer = same_run()
    assert doc["last_loss"] == trainer.last.loss     # the very run
    fold, val, stack = doc["fold"], trainer.dataset.val, trainer.stack
    assert fold["split"] == "val" and fold["folded_layers"] == 6   # 5 hidden + the output's
    unfolded = bn_direct.loss(stack, val)
    folded = bn_direct.loss(stack, val, folded=True)
    assert fold["loss"] == pytest.approx(unfolded, rel=1e-5)
    assert fold["loss_folded"] == pytest.approx(folded, rel=1e-5)
    diff = (bn_direct.logits(stack, val.X) - bn_direct.logits(stack, val.X, folded=True))
    # Folding is exact up to float32 rounding: both differences are roundoff.
    assert 0 < fold["max_abs_logit_diff"] < 1e-4 and diff.abs().max().item() < 1e-4
    assert fold["loss"] == pytest.approx(fold["loss_folded"], abs=1e-5)
    # The same figures in the text report.
    text = run_main(capsys, "--fold")
    [line] = [l for l in text.splitlines() if l.startswith("fold: ")]
    assert line == (f"fold: 6 BatchNorm layers folded into the Linear before each; val loss "
                    f"{fold['loss']:.4f} unfolded, {fold['loss_folded']:.4f} folded; largest "
                    f"|logit difference| {fold['max_abs_logit_diff']:.2e}")


def test_fold_without_batchnorm_has_nothing_to_fold(capsys):
    doc = json.loads(run_main(capsys, "--fold", "--json", "--no-batchnorm"))
    trainer = same_run(batchnorm=False)
    fold = doc["fold"]
    assert fold["folded_layers"] == 0 and fold["max_abs_logit_diff"] == 0.0
    assert fold["loss"] == fold["loss_folded"] == pytest.approx(
        bn_direct.loss(trainer.stack, trainer.dataset.val), rel=1e-5)
    text = run_main(capsys, "--fold", "--no-batchnorm")
    assert f"fold: no BatchNorm layers to fold; val loss {fold['loss']:.4f}" in text


def test_no_fold_no_fold_key(capsys):
    assert "fold" not in json.loads(run_main(capsys, "--json"))


def test_fold_is_refused_with_a_sweep():
    from traintop.commands.run import main

    with pytest.raises(InputError, match="^--fold: not with --sweep"):
        main(["--sweep", "gain=1,3", "--fold", "--steps", "2"])
