"""Around training: split loss, calibration, folding and sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from traintop.engine.config import TrainConfig
from traintop.engine.model.inference import fold_batchnorm
from traintop.engine.training.trainer import Trainer


@pytest.fixture(scope="module")
def trained(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=32, steps=300).validated(), small_dataset)
    trainer.run()
    return trainer


def direct_eval_loss(trainer, split):
    """The lecture's split_loss: one forward of the whole split, BatchNorm on running stats."""
    stack = trainer.stack
    with torch.no_grad():
        x = stack.C[split.X].view(len(split), -1)
        for layer in stack.layers:
            if layer.kind == "Linear":
                x = x @ layer.weight + (layer.bias if layer.bias is not None else 0)
            elif layer.kind == "BatchNorm1d":
                x = layer.gamma * (x - layer.running_mean) / torch.sqrt(
                    layer.running_var + layer.eps) + layer.beta
            else:
                x = torch.tanh(x)
        return F.cross_entropy(x, split.Y).item()


def test_split_losses_match_direct_forward(trained, small_dataset):
    losses = trained.evaluate(("train", "val", "test"))
    for name in ("train", "val", "test"):
        assert losses[name] == pytest.approx(direct_eval_loss(trained, small_dataset.split(name)),
                                             rel=1e-5)
    assert trained.history.val_loss[-1][1] == losses["val"]


def test_evaluation_leaves_training_untouched(small_dataset):
    a = Trainer(TrainConfig(n_hidden=16, steps=20).validated(), small_dataset)
    b = Trainer(TrainConfig(n_hidden=16, steps=20).validated(), small_dataset)
    a.run(10)
    b.run(10)
    a.evaluate(("val",))
    a.sample(3)
    a.check_fold()
    assert [a.step().loss for _ in range(5)] == [b.step().loss for _ in range(5)]


def test_fold_gives_the_same_outputs(trained, small_dataset):
    check = trained.check_fold("val")
    assert check.folded_layers == 6
    assert check.max_abs_diff < 1e-4
    folded = fold_batchnorm(trained.stack)
    assert [l.kind for l in folded.layers] == ["Linear", "Tanh"] * 5 + ["Linear"]
    with torch.no_grad():
        logits = folded.forward(small_dataset.val.X)
    folded_loss = F.cross_entropy(logits, small_dataset.val.Y).item()
    assert folded_loss == pytest.approx(direct_eval_loss(trained, small_dataset.val), rel=1e-5)


def test_calibration_measures_and_applies_exact_stats(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=16, steps=50).validated(), small_dataset)
    trainer.run()
    report = trainer.calibrate(apply=False)
    assert report.layers == (1, 4, 7, 10, 13, 16)
    # Check the first layer directly: exact mean of the first Linear's output.
    stack = trainer.stack
    with torch.no_grad():
        pre = stack.C[small_dataset.train.X].view(len(small_dataset.train), -1) @ stack.layers[0].weight
    bn = stack.layers[1]
    assert report.mean_max_diff[0] == pytest.approx(
        (bn.running_mean - pre.mean(0)).abs().max().item(), rel=1e-4)
    assert all(d > 0 for d in report.mean_max_diff)
    applied = trainer.calibrate(apply=True)
    assert applied.applied
    assert torch.allclose(bn.running_mean, pre.mean(0), atol=1e-5)
    again = trainer.calibrate(apply=False)
    assert max(again.mean_max_diff) < 1e-4 and max(again.std_max_rel_diff) < 1e-4


def test_samples_follow_the_lectures_generator(trained):
    names = trained.sample(5)
    assert len(names) == 5 and all(isinstance(n, str) for n in names)
    assert trained.sample(5) == names  # a fresh generator seeded seed + 10 each time
    alphabet = set(trained.dataset.vocab.chars)
    assert all(set(n) <= alphabet for n in names)
    # The first draw, done by hand: softmax of the logits of context [0, 0, 0].
    g = torch.Generator().manual_seed(trained.config.seed + 10)
    stack = trained.stack
    stack.set_training(False)
    try:
        with torch.no_grad():
            probs = F.softmax(stack.forward(torch.tensor([[0, 0, 0]])), dim=1)
    finally:
        stack.set_training(True)
    ix = torch.multinomial(probs, 1, generator=g).item()
    first = trained.dataset.vocab.itos()[ix]
    assert names[0][:1] == (first if ix else "")
