"""Every engine figure against a direct torch computation of the lecture's loop."""

from __future__ import annotations

import math

import pytest
import torch

from traintop.engine.config import TrainConfig
from traintop.engine.steps.stats import BINS
from traintop.engine.training.trainer import Trainer
from lecture_oracle import lecture_run

CASES = {
    "no-bn gain 5/3": dict(batchnorm=False, gain="5/3", bias=True),
    "bn gain 5/3": dict(batchnorm=True, gain="5/3", bias=False),
    "no-bn gain 3 no fan-in": dict(batchnorm=False, gain="3", bias=True, fan_in=False),
    "bn gain 0.5 with bias": dict(batchnorm=True, gain="0.5", bias=True),
}
STEPS = 7


def close(a: float, b: float, scale: float = 0.0, rel: float = 1e-5) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel * scale + 1e-12)


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, small_dataset):
    knobs = CASES[request.param]
    config = TrainConfig(n_hidden=40, steps=STEPS, **knobs).validated()
    trainer = Trainer(config, small_dataset)
    result = None
    for _ in range(STEPS):
        result = trainer.step()
    oracle = lecture_run(small_dataset.train.X, small_dataset.train.Y, small_dataset.vocab.size,
                         STEPS, batchnorm=config.batchnorm, gain=config.gain_value,
                         fan_in=config.fan_in, bias=config.use_bias, n_hidden=40)
    return trainer, result, oracle


def test_loss_and_first_loss(pair):
    trainer, result, oracle = pair
    assert result.loss == oracle["loss"]
    assert trainer.first_loss == oracle["first_loss"]


def test_last_step_has_stats(pair):
    _, result, _ = pair
    assert result.stats is not None and result.stats.step == STEPS


def test_activation_stats(pair):
    trainer, result, oracle = pair
    tanh_outs = [t for t, layer in zip(oracle["outs"], oracle["layers"]) if layer[0] == "tanh"]
    assert [l.index for l in result.stats.layers] == [
        i for i, layer in enumerate(oracle["layers"]) if layer[0] == "tanh"]
    for stats, t in zip(result.stats.layers, tanh_outs):
        assert stats.kind == "Tanh"
        sd = t.std().item()
        assert close(stats.mean, t.mean().item(), sd)
        assert close(stats.std, sd)
        assert close(stats.saturation_pct, ((t.abs() > 0.97).float().mean() * 100).item())
        assert stats.dead == int((t.abs() > 0.97).all(dim=0).sum())
        assert stats.units == t.shape[1]
        g = t.grad
        assert close(stats.grad_mean, g.mean().item(), g.std().item())
        assert close(stats.grad_std, g.std().item())


def test_histograms_match_torch_histogram(pair):
    _, result, oracle = pair
    tanh_outs = [t for t, layer in zip(oracle["outs"], oracle["layers"]) if layer[0] == "tanh"]
    for stats, t in zip(result.stats.layers, tanh_outs):
        for hist, data in ((stats.hist, t), (stats.grad_hist, t.grad)):
            hy, hx = torch.histogram(data.detach(), bins=BINS, density=True)
            assert len(hist.density) == BINS
            assert close(hist.lo, hx[0].item()) and close(hist.hi, hx[-1].item())
            assert torch.allclose(torch.tensor(hist.density, dtype=torch.float64), hy.double(), rtol=1e-4, atol=1e-6)
            width = (hist.hi - hist.lo) / BINS
            assert math.isclose(sum(hist.density) * width, 1.0, rel_tol=1e-5)


def test_weight_stats(pair):
    trainer, result, oracle = pair
    weights = [p for p in oracle["params"] if p.ndim == 2]
    assert [w.shape for w in result.stats.weights] == [tuple(p.shape) for p in weights]
    for stats, p in zip(result.stats.weights, weights):
        g = p.grad
        assert close(stats.grad_mean, g.mean().item(), g.std().item())
        assert close(stats.grad_std, g.std().item())
        assert close(stats.grad_data_ratio, (g.std() / p.std()).item())
        hy, _ = torch.histogram(g, bins=BINS, density=True)
        assert torch.allclose(torch.tensor(stats.hist.density, dtype=torch.float64), hy.double(), rtol=1e-4, atol=1e-6)


def test_update_ratios_every_step(pair):
    trainer, result, oracle = pair
    assert len(result.update_ratio_log10) == len(oracle["params"])
    for mine, theirs in zip(result.update_ratio_log10, oracle["update"]):
        assert close(mine, theirs)


def test_parameters_after_update(pair):
    trainer, _, oracle = pair
    for mine, theirs in zip(trainer.stack.params, oracle["params"]):
        assert torch.equal(mine.detach(), theirs.detach())


def test_linear_stack_measures_block_outputs(small_dataset):
    config = TrainConfig(n_hidden=30, steps=2, activation="linear", gain="0.5").validated()
    trainer = Trainer(config, small_dataset)
    trainer.step()
    result = trainer.step()
    oracle = lecture_run(small_dataset.train.X, small_dataset.train.Y, small_dataset.vocab.size,
                         2, batchnorm=True, gain=0.5, bias=False, n_hidden=30, tanh=False)
    assert result.loss == oracle["loss"]
    # Without Tanh, each block ends in its BatchNorm: positions 1, 3, 5, 7, 9.
    assert [l.index for l in result.stats.layers] == [1, 3, 5, 7, 9]
    assert {l.kind for l in result.stats.layers} == {"BatchNorm1d"}
    for stats in result.stats.layers:
        t = oracle["outs"][stats.index]
        assert close(stats.std, t.std().item())
