"""loss-diverging: the loss far above the uniform guess, or rising over a
window; quiet on healthy runs (thresholds in engine/health/thresholds.py)."""

from __future__ import annotations

import math

import pytest

from traintop.engine.config import TrainConfig
from traintop.engine.health.monitor import HealthMonitor
from traintop.engine.health.rules import loss_diverging
from traintop.engine.health.thresholds import DEFAULT_THRESHOLDS as T
from traintop.engine.results import StepResult
from traintop.engine.training.trainer import Trainer

GUESS = math.log(27)
EPS = 1e-9


def diverging(monitor: HealthMonitor) -> list:
    return [f for f in monitor.findings() if f.rule == "loss-diverging"]


@pytest.mark.parametrize("ratio, expected", [
    (T.loss_far_warn_ratio - EPS, []), (T.loss_far_warn_ratio, []),
    (T.loss_far_warn_ratio + EPS, ["warn"]), (T.loss_far_error_ratio, ["warn"]),
    (T.loss_far_error_ratio + EPS, ["error"])])
def test_far_above_the_uniform_guess_edges(ratio, expected):
    level = ratio * GUESS
    found = loss_diverging(level, level, GUESS, 100, 300)
    assert [f.severity for f in found] == expected
    if found:
        assert found[0].where == "loss" and found[0].value == level
        assert "the uniform guess 3.2958" in found[0].message
        assert "lower the learning rate" in found[0].message and "init" in found[0].message


@pytest.mark.parametrize("rise, expected", [
    (T.loss_rise_warn_ratio - EPS, []), (T.loss_rise_warn_ratio, []),
    (T.loss_rise_warn_ratio + EPS, ["warn"]), (T.loss_rise_error_ratio, ["warn"]),
    (T.loss_rise_error_ratio + EPS, ["error"])])
def test_rising_edges(rise, expected):
    best = 2.0
    found = loss_diverging(best * rise, best, GUESS, 100, 900)
    assert [f.severity for f in found] == expected
    if found:
        assert f"from its lowest {best:.4f}" in found[0].message


def test_the_graver_of_the_two_is_said_once():
    # 2.6x the guess (warn) and 4x its own best (error): one finding, the error.
    found = loss_diverging(2.6 * GUESS, 2.6 * GUESS / 4, GUESS, 100, 900)
    assert [(f.rule, f.severity) for f in found] == [("loss-diverging", "error")]
    assert loss_diverging(math.nan, 2.0, GUESS, 100, 1) == []


def result(step: int, loss: float) -> StepResult:
    return StepResult(step=step, loss=loss, lr=0.1, update_ratio_log10=())


def test_monitor_judges_a_full_window_and_follows_a_climb(small_dataset):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=10).validated(), small_dataset)
    monitor = HealthMonitor(trainer.info())
    expected = trainer.info().expected_initial_loss
    for step in range(1, 100):                 # a bad init: far above, but only 99 steps
        monitor.observe(result(step, 10 * expected))
    assert diverging(monitor) == []
    monitor.observe(result(100, 10 * expected))
    assert [f.severity for f in diverging(monitor)] == ["error"]
    for step in range(101, 400):               # it learns: quiet again
        monitor.observe(result(step, 2.0))
    assert diverging(monitor) == []
    for step in range(400, 500):               # then climbs back up 1.4x its best
        monitor.observe(result(step, 2.8))
    (found,) = diverging(monitor)
    assert found.severity == "warn" and found.value == pytest.approx(2.8)
    monitor.observe(result(1, 3.0))            # a restart forgets the run
    assert diverging(monitor) == []


@pytest.mark.parametrize("changes, severity", [
    ({}, None),                                          # the lecture's run
    ({"batchnorm": False}, None),                        # healthy without BatchNorm
    ({"batchnorm": False, "lr": 1000.0}, "error"),       # the divergence
    ({"lr": 1000.0}, "error"),
])
def test_real_runs(small_dataset, changes, severity):
    config = TrainConfig(n_hidden=32, steps=300, stats_every=100, **changes).validated()
    trainer = Trainer(config, small_dataset)
    monitor = HealthMonitor(trainer.info())
    trainer.run(on_step=monitor.observe)
    found = diverging(monitor)
    assert [f.severity for f in found] == ([severity] if severity else []), \
        [f.message for f in found]


def test_a_block_of_steps_takes_the_same_medians_as_one_step_at_a_time(small_dataset):
    """observe_many (a recording's catch-up) against observe of each step:
    the same median level, best and step, over noisy losses with gaps
    (non-finite losses skip the window) and blocks cut anywhere, small ones
    (a Python loop) and big ones (numpy) alike."""
    import random
    trainer = Trainer(TrainConfig(n_hidden=8, steps=10).validated(), small_dataset)
    rng = random.Random(7)
    one, many = HealthMonitor(trainer.info()), HealthMonitor(trainer.info())
    results = [StepResult(step=s, loss=math.nan if rng.random() < 0.03 else rng.gauss(2.5, 0.4),
                          lr=0.1, update_ratio_log10=(rng.gauss(-3, 0.2),) * 3)
               for s in range(1, 9000)]
    for r in results:
        one.observe(r)
    i = 0
    while i < len(results):
        k = rng.choice([1, 7, 60, 333, 1000, 1200, 2500])   # BIG_BLOCK: numpy
        many.observe_many(results[i:i + k])
        i += k
    assert one._loss_level == many._loss_level and not math.isnan(many._loss_level)
    assert (one._loss_best, one._loss_step) == (many._loss_best, many._loss_step)
    assert list(one._losses) == list(many._losses)
    assert [f.message for f in one.findings()] == [f.message for f in many.findings()]
