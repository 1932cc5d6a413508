"""Every health threshold at its edge, on hand-built snapshots and results.

Each case puts a figure just inside and just outside a threshold (and on it:
comparisons are strict) and checks which rule and severity come out.
"""

from __future__ import annotations

import json
import math

import pytest

from traintop.engine.health.monitor import (DEFAULT_THRESHOLDS as T, RULE_IDS, RULES, HealthMonitor, Thresholds,
                           diagnose)
from traintop.engine.health.rules import calibration, initial_loss, update_level
from traintop.engine.results import (Calibration, Histogram, LayerStats, NonFinite, RunInfo,
                            StatsSnapshot, StepResult, WeightStats)

EPS = 1e-6
EXPECTED = math.log(27)
HIST = Histogram(-1.0, 1.0, (0.5, 0.5))


def make_info(batch_size: int = 32, bn: bool = False) -> RunInfo:
    kinds = (["Linear", "BatchNorm1d", "Tanh"] if bn else ["Linear", "Tanh"]) * 5 + ["Linear"]
    names = ("C", "0.weight", "2.weight", "4.weight", "6.weight", "8.weight", "10.weight")
    shapes = ((27, 10), (30, 100)) + ((100, 100),) * 4 + ((100, 27),)
    return RunInfo(config={"batch_size": batch_size}, vocab="abcdefghijklmnopqrstuvwxyz",
                   param_names=names + ("10.bias",), param_shapes=shapes + ((27,),),
                   layer_kinds=tuple(kinds), expected_initial_loss=EXPECTED)


def layer(index: int, std: float = 0.65, sat: float = 3.0, dead: int = 0, units: int = 100,
          grad_std: float = 5e-4, kind: str = "Tanh") -> LayerStats:
    return LayerStats(index=index, kind=kind, mean=0.0, std=std, saturation_pct=sat, dead=dead,
                      units=units, grad_mean=0.0, grad_std=grad_std, hist=HIST, grad_hist=HIST)


def weight(name: str, ratio: float) -> WeightStats:
    return WeightStats(name=name, shape=(100, 100), grad_mean=0.0, grad_std=1e-3,
                       grad_data_ratio=ratio, hist=HIST)


def snap(layers=None, weights=None, step: int = 10, loss: float = 2.5) -> StatsSnapshot:
    if layers is None:
        layers = [layer(i) for i in (1, 3, 5, 7, 9)]
    if weights is None:
        weights = [weight(f"{i}.weight", 5e-3) for i in (0, 2, 4, 6, 8)]
    return StatsSnapshot(step=step, loss=loss, lr=0.1, layers=tuple(layers),
                         weights=tuple(weights), update_ratio_log10=())


def fired(findings, rule: str) -> list[str]:
    return [f.severity for f in findings if f.rule == rule]


def test_a_quiet_snapshot_has_no_findings():
    assert diagnose(make_info(), snap()) == []


def test_rules_are_the_issues_ids_each_with_a_meaning():
    assert set(RULE_IDS) == {
        "initial-loss", "tanh-saturation", "activation-shrink", "activation-grow",
        "gradient-vanish", "gradient-explode", "dead-neurons", "grad-data-outlier",
        "update-ratio-high", "update-ratio-low", "non-finite", "bn-running-stats",
        "loss-diverging", "no-gradient", "monitor-error", "loss-spike", "grad-norm", "misuse"}
    assert len(RULE_IDS) == len(set(RULE_IDS))
    for rule in RULES:
        assert rule.title and len(rule.meaning) > 60, rule.id


@pytest.mark.parametrize("pct, expected", [
    (T.saturation_warn_pct - EPS, []), (T.saturation_warn_pct, []),
    (T.saturation_warn_pct + EPS, ["warn"]), (T.saturation_error_pct, ["warn"]),
    (T.saturation_error_pct + EPS, ["error"]),
])
def test_saturation_edges(pct, expected):
    layers = [layer(1, sat=pct)] + [layer(i) for i in (3, 5, 7, 9)]
    found = diagnose(make_info(), snap(layers))
    assert fired(found, "tanh-saturation") == expected
    for f in found:
        assert f.where == "layer 1 (Tanh)" and f.value == pct


def test_saturation_is_not_judged_on_a_linear_stack():
    layers = [layer(i, sat=90.0, dead=50, kind="Linear") for i in range(5)]
    assert diagnose(make_info(), snap(layers)) == []


@pytest.mark.parametrize("dead, units, batch, expected", [
    (0, 100, 32, []), (1, 100, 32, ["warn"]), (10, 100, 32, ["warn"]),
    (11, 100, 32, ["error"]), (50, 100, T.dead_min_batch - 1, []),
    (50, 100, T.dead_min_batch, ["error"]),
])
def test_dead_neuron_edges(dead, units, batch, expected):
    layers = [layer(3, dead=dead, units=units)] + [layer(i) for i in (5, 7, 9)]
    found = diagnose(make_info(batch_size=batch), snap(layers))
    assert fired(found, "dead-neurons") == expected
    if expected:
        assert found[0].value == pytest.approx(100.0 * dead / units)


def trend_layers(std_factor: float = 1.0, grad_factor: float = 1.0) -> list[LayerStats]:
    # Five blocks whose std changes by std_factor per layer going deeper, and
    # whose gradient std changes by grad_factor per layer going back to layer 1.
    return [layer(i, std=0.5 * std_factor ** k, grad_std=1e-4 * grad_factor ** (4 - k))
            for k, i in enumerate((1, 3, 5, 7, 9))]


@pytest.mark.parametrize("factor, expected", [
    (T.shrink_warn_factor + EPS, []), (T.shrink_warn_factor - EPS, [("activation-shrink", "warn")]),
    (T.shrink_error_factor + EPS, [("activation-shrink", "warn")]),
    (T.shrink_error_factor - EPS, [("activation-shrink", "error")]),
    (T.grow_warn_factor - EPS, []), (T.grow_warn_factor + EPS, [("activation-grow", "warn")]),
    (T.grow_error_factor - EPS, [("activation-grow", "warn")]),
    (T.grow_error_factor + EPS, [("activation-grow", "error")]),
])
def test_activation_trend_edges(factor, expected):
    # Two blocks: the per-layer factor is the whole chain's too, so only the
    # per-layer lines speak (a longer chain's fade is also judged whole:
    # tests/test_health_when.py has those edges).
    found = diagnose(make_info(), snap(trend_layers(std_factor=factor)[:2]))
    assert [(f.rule, f.severity) for f in found] == expected
    for f in found:
        assert f.where == "layers 1-3"
        assert f.value == pytest.approx(factor, rel=1e-9)


@pytest.mark.parametrize("factor, expected", [
    (T.vanish_warn_factor + EPS, []), (T.vanish_warn_factor - EPS, [("gradient-vanish", "warn")]),
    (T.vanish_error_factor + EPS, [("gradient-vanish", "warn")]),
    (T.vanish_error_factor - EPS, [("gradient-vanish", "error")]),
    (T.explode_warn_factor - EPS, []), (T.explode_warn_factor + EPS, [("gradient-explode", "warn")]),
    (T.explode_error_factor - EPS, [("gradient-explode", "warn")]),
    (T.explode_error_factor + EPS, [("gradient-explode", "error")]),
])
def test_gradient_trend_edges(factor, expected):
    found = diagnose(make_info(), snap(trend_layers(grad_factor=factor)))
    assert [(f.rule, f.severity) for f in found] == expected
    for f in found:
        assert f.value == pytest.approx(factor, rel=1e-9)


@pytest.mark.parametrize("factor, expected", [
    (T.outlier_info_factor * (1 - EPS), []), (T.outlier_info_factor * (1 + EPS), ["info"]),
    (T.outlier_warn_factor * (1 - EPS), ["info"]), (T.outlier_warn_factor * (1 + EPS), ["warn"]),
    (1 / (T.outlier_info_factor * (1 - EPS)), []),
    (1 / (T.outlier_info_factor * (1 + EPS)), ["info"]),
    (1 / (T.outlier_warn_factor * (1 + EPS)), ["warn"]),
])
def test_grad_data_outlier_edges(factor, expected):
    weights = [weight(f"{i}.weight", 4e-3) for i in (0, 2, 4, 6)] + [weight("10.weight",
                                                                           4e-3 * factor)]
    found = diagnose(make_info(), snap(weights=weights))
    assert fired(found, "grad-data-outlier") == expected
    for f in found:
        assert f.where == "weight 10.weight (100, 100)"
        assert f.value == pytest.approx(4e-3 * factor)


@pytest.mark.parametrize("ratio, expected", [
    (T.initial_loss_warn_ratio - EPS, []), (T.initial_loss_warn_ratio, []),
    (T.initial_loss_warn_ratio + EPS, ["warn"]), (T.initial_loss_error_ratio - EPS, ["warn"]),
    (T.initial_loss_error_ratio + EPS, ["error"]),
])
def test_initial_loss_edges(ratio, expected):
    assert fired(initial_loss(EXPECTED * ratio, EXPECTED, 27), "initial-loss") == expected
    # diagnose() judges the loss of a step-1 snapshot, and only that one.
    assert fired(diagnose(make_info(), snap(step=1, loss=EXPECTED * ratio)),
                 "initial-loss") == expected
    assert diagnose(make_info(), snap(step=2, loss=EXPECTED * ratio)) == []


@pytest.mark.parametrize("level, expected", [
    (T.update_high_warn_log10 - EPS, []), (T.update_high_warn_log10, []),
    (T.update_high_warn_log10 + EPS, [("update-ratio-high", "warn")]),
    (T.update_high_error_log10 - EPS, [("update-ratio-high", "warn")]),
    (T.update_high_error_log10 + EPS, [("update-ratio-high", "error")]),
    (T.update_low_warn_log10 + EPS, []), (T.update_low_warn_log10, []),
    (T.update_low_warn_log10 - EPS, [("update-ratio-low", "warn")]),
    (T.update_low_error_log10 + EPS, [("update-ratio-low", "warn")]),
    (T.update_low_error_log10 - EPS, [("update-ratio-low", "error")]),
])
def test_update_ratio_edges(level, expected):
    found = update_level(level, 100, 500)
    assert [(f.rule, f.severity) for f in found] == expected
    for f in found:
        assert f.where == "all weights" and f.value == level and f.step == 500


def feed(monitor: HealthMonitor, levels, start: int = 1) -> None:
    """Steps whose 2-D weights all sit at `level`; the bias's ratio is absurd on purpose."""
    for k, level in enumerate(levels):
        monitor.observe(StepResult(step=start + k, loss=2.5, lr=0.1,
                                   update_ratio_log10=(level,) * 7 + (5.0,)))


def test_update_ratio_is_judged_only_when_sustained():
    monitor = HealthMonitor(make_info())
    feed(monitor, [-1.5] * (T.update_min_steps - 1))
    assert monitor.findings() == []  # not enough steps yet to call it sustained
    feed(monitor, [-1.5], start=T.update_min_steps)
    assert fired(monitor.findings(), "update-ratio-high") == ["warn"]


def test_update_ratio_spikes_do_not_fire_and_the_window_forgets():
    monitor = HealthMonitor(make_info())
    # 60 healthy steps with every third step a spike (short of a burst): the median stays -3.
    feed(monitor, [-3.0, -3.0, T.update_burst_log10 - EPS] * 20)
    assert monitor.findings() == []
    # Then the learning rate drops: once most of the window is slow, it fires.
    feed(monitor, [-5.0] * (T.update_window // 2 + 1), start=61)
    assert fired(monitor.findings(), "update-ratio-low") == ["warn"]
    # Biases (1-D) are not judged: their ratio of +5 above never made a high finding.
    assert fired(monitor.findings(), "update-ratio-high") == []


def bn_cal(std_rel: float = 0.1, mean: float = 0.1, applied: bool = False) -> Calibration:
    return Calibration(layers=(1, 4), mean_max_diff=(mean, 0.05),
                       std_max_rel_diff=(std_rel, 0.05), applied=applied)


@pytest.mark.parametrize("std_rel, mean, expected", [
    (T.bn_std_warn_rel - EPS, 0.1, []), (T.bn_std_warn_rel, 0.1, []),
    (T.bn_std_warn_rel + EPS, 0.1, ["warn"]), (T.bn_std_error_rel + EPS, 0.1, ["error"]),
    (0.1, T.bn_mean_warn_abs - EPS, []), (0.1, T.bn_mean_warn_abs + EPS, ["warn"]),
    (0.1, T.bn_mean_error_abs - EPS, ["warn"]), (0.1, T.bn_mean_error_abs + EPS, ["error"]),
])
def test_bn_running_stats_edges(std_rel, mean, expected):
    found = calibration(bn_cal(std_rel, mean), make_info(bn=True), step=300)
    assert fired(found, "bn-running-stats") == expected
    for f in found:
        assert f.where == "layer 1 (BatchNorm1d)" and f.step == 300
        assert f.value == (std_rel if std_rel > T.bn_std_warn_rel else mean)


def test_applied_calibration_is_only_information():
    found = calibration(bn_cal(std_rel=0.9, applied=True), make_info(bn=True), step=300)
    assert fired(found, "bn-running-stats") == ["info"]


def test_non_finite_result_is_an_error_naming_the_place():
    monitor = HealthMonitor(make_info())
    culprit = NonFinite(step=7, where="layer 2 (Linear)", what="activation")
    monitor.observe(StepResult(step=7, loss=math.nan, lr=0.1, update_ratio_log10=(),
                               nonfinite=culprit))
    [f] = monitor.findings()
    assert (f.rule, f.severity, f.where, f.step, f.value) == (
        "non-finite", "error", "layer 2 (Linear)", 7, None)
    assert json.dumps(f.to_dict(), allow_nan=False)


def test_findings_sort_most_severe_first_and_serialise():
    layers = [layer(1, sat=45.0), layer(3, sat=30.0), layer(5), layer(7), layer(9)]
    weights = [weight(f"{i}.weight", 4e-3) for i in (0, 2, 4, 6)] + [weight("10.weight", 1.0)]
    found = diagnose(make_info(), snap(layers, weights))
    assert [(f.rule, f.severity) for f in found] == [
        ("tanh-saturation", "error"), ("tanh-saturation", "warn"), ("grad-data-outlier", "info")]
    d = found[0].to_dict()
    assert {"rule", "severity", "where", "value", "message", "healthy", "step"} <= set(d)
    assert d["value"] == 45.0 and d["step"] == 10 and d["message"].endswith(".")


def test_new_findings_reports_each_problem_once():
    monitor = HealthMonitor(make_info())

    def step(n: int, sat: float) -> None:
        layers = [layer(1, sat=sat)] + [layer(i) for i in (3, 5, 7, 9)]
        monitor.observe(StepResult(step=n, loss=2.5, lr=0.1, update_ratio_log10=(),
                                   stats=snap(layers, step=n)))

    step(2, 30.0)
    assert [(f.rule, f.severity) for f in monitor.new_findings()] == [("tanh-saturation", "warn")]
    step(3, 31.0)
    assert monitor.new_findings() == []          # still there: not repeated
    assert len(monitor.findings()) == 1
    step(4, 45.0)
    assert [f.severity for f in monitor.new_findings()] == ["error"]  # it got worse
    step(5, 3.0)
    assert monitor.new_findings() == [] and monitor.findings() == []
    step(6, 45.0)
    assert [f.severity for f in monitor.new_findings()] == ["error"]  # it came back


def test_a_restart_clears_the_previous_runs_findings():
    monitor = HealthMonitor(make_info())
    monitor.observe(StepResult(step=1, loss=EXPECTED * 3, lr=0.1, update_ratio_log10=()))
    assert fired(monitor.findings(), "initial-loss") == ["error"]
    feed(monitor, [-1.5] * 60, start=2)
    assert fired(monitor.findings(), "update-ratio-high") == ["warn"]
    monitor.observe(StepResult(step=1, loss=EXPECTED, lr=0.1, update_ratio_log10=(-3.0,) * 8))
    assert monitor.findings() == []
    monitor.observe(StepResult(step=1, loss=EXPECTED * 3, lr=0.1, update_ratio_log10=()))
    assert [f.rule for f in monitor.new_findings()] == ["initial-loss"]
    monitor.observe(StepResult(step=1, loss=EXPECTED * 3, lr=0.1, update_ratio_log10=()))
    assert [f.rule for f in monitor.new_findings()] == ["initial-loss"]  # a new run again


def test_thresholds_are_the_monitors_to_choose():
    strict = HealthMonitor(make_info(), Thresholds(saturation_warn_pct=1.0))
    strict.observe(StepResult(step=2, loss=2.5, lr=0.1, update_ratio_log10=(), stats=snap()))
    assert fired(strict.findings(), "tanh-saturation") == ["warn"] * 5


@pytest.mark.parametrize("level, expected", [
    (T.update_burst_log10 - EPS, []), (T.update_burst_log10, []),
    (T.update_burst_log10 + EPS, [("update-ratio-high", "error", 3)]),
])
def test_a_single_burst_step_is_an_error_at_once(level, expected):
    monitor = HealthMonitor(make_info())
    feed(monitor, [-3.0, -3.0, level, -3.0])
    assert [(f.rule, f.severity, f.step) for f in monitor.findings()] == expected


def test_after_a_burst_slow_updates_are_not_blamed_on_a_low_rate():
    monitor = HealthMonitor(make_info())
    feed(monitor, [0.0] + [-8.0] * 99)  # one huge step, then the wrecked weights barely move
    [f] = monitor.findings()
    assert (f.rule, f.severity, f.step, f.value) == ("update-ratio-high", "error", 1, 0.0)
    # Steps where a weight got no gradient at all (-inf) are not judged as slow.
    quiet = HealthMonitor(make_info())
    feed(quiet, [-3.0] * 30 + [-math.inf] * 70)
    assert quiet.findings() == []
