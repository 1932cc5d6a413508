"""Health that knows when (issue 25): a state there at init gets init advice
(the gain, fan-in), one grown while training gets training advice (the lr,
BatchNorm) and is a note while the loss still goes down; a fading signal is
judged over the whole chain; a linear stack has no saturation or dead figures.

Short real runs on the embedded data (fast engine, one thread); the figures
the findings quote are checked against a forward pass written here."""

from __future__ import annotations

import json
import math
from functools import lru_cache

import pytest
import torch

from traintop.data.dataset import load_dataset
from traintop.engine.config import TrainConfig
from traintop.engine.health.monitor import DEFAULT_THRESHOLDS as T, HealthMonitor, diagnose
from traintop.engine.model.layers import BatchNorm1d, Linear, Tanh
from traintop.engine.results import Histogram, LayerStats, RunInfo, StatsSnapshot
from traintop.engine.training.threads import apply_threads
from traintop.engine.training.trainer import Trainer


@lru_cache(maxsize=1)
def dataset():
    return load_dataset(None)


class Run:
    """One short run with its monitor; `init` is its step-1 snapshot."""

    def __init__(self, steps: int, stats_every: int, **changes):
        apply_threads(1)
        config = TrainConfig(steps=steps, stats_every=stats_every).with_changes(**changes)
        self.trainer = Trainer(config, dataset(), engine="fast")
        self.monitor = HealthMonitor(self.trainer.info())
        self.init = None
        self.losses: list[float] = []
        self.results: list = []
        self.trainer.run(on_step=self._on_step)

    def _on_step(self, result) -> None:
        self.monitor.observe(result)
        self.losses.append(result.loss)
        self.results.append(result)
        if result.step == 1:
            self.init = result.stats

    def found(self, rule: str) -> list:
        return [f for f in self.monitor.findings() if f.rule == rule]


@lru_cache(maxsize=None)
def run(steps: int, stats_every: int, **changes) -> Run:
    return Run(steps, stats_every, **changes)


def first_batch_outputs(config: TrainConfig) -> list[torch.Tensor]:
    """The hidden outputs of the first step's forward, computed here: the stack
    as its trainer builds it, the batch its generator draws first."""
    trainer = Trainer(config, dataset(), engine="exact")
    g = torch.Generator()
    g.set_state(trainer.generator.get_state())
    train = trainer.dataset.train
    ix = torch.randint(0, len(train.Y), (config.batch_size,), generator=g)
    stack = trainer.stack
    x = stack.C[train.X[ix]].view(config.batch_size, -1)
    outs = []
    with torch.no_grad():
        for layer in stack.layers:
            if isinstance(layer, Linear):
                x = x @ layer.weight + (layer.bias if layer.bias is not None else 0)
            elif isinstance(layer, BatchNorm1d):
                x = layer.gamma * (x - x.mean(0)) / torch.sqrt(x.var(0) + layer.eps) + layer.beta
            elif isinstance(layer, Tanh):
                x = torch.tanh(x)
                outs.append(x)
    return outs


# ----- the chain ------------------------------------------------------------------
def test_the_gain_1_stack_shrinks_over_its_five_layers():
    """The lecture's point about gain 1 without BatchNorm: the std halves over
    five tanh layers, though each layer alone keeps x0.84 of it (above x0.8)."""
    r = run(1, 1, batchnorm=False, gain="1")
    outs = first_batch_outputs(r.trainer.config)
    stds = [o.std().item() for o in outs]
    assert len(stds) == 5
    per_layer = (stds[-1] / stds[0]) ** (1 / 4)
    assert per_layer > T.shrink_warn_factor          # per layer alone: no finding
    assert stds[-1] / stds[0] < T.shrink_chain_warn_factor
    [shrink] = r.found("activation-shrink")
    assert (shrink.severity, shrink.where, shrink.step) == ("warn", "layers 1-9", 1)
    assert shrink.value == pytest.approx(per_layer, rel=1e-4)
    assert f"from {stds[0]:.3g} at layer 1 to {stds[-1]:.3g} at layer 9" in shrink.message
    assert f"x{stds[-1] / stds[0]:.2f} over the 5 layers" in shrink.message
    assert "it was so at init" in shrink.message and "raise --gain (5/3 for tanh)" in shrink.message
    # The lecture's gain 5/3 keeps it.
    assert run(1, 1, batchnorm=False).found("activation-shrink") == []


def layer(index: int, std: float) -> LayerStats:
    hist = Histogram(-1.0, 1.0, (1.0,))
    return LayerStats(index=index, kind="Tanh", mean=0.0, std=std, saturation_pct=3.0, dead=0,
                      units=100, grad_mean=0.0, grad_std=1e-3, hist=hist, grad_hist=hist)


@pytest.mark.parametrize("total, expected", [
    (T.shrink_chain_warn_factor + 1e-6, []),
    (T.shrink_chain_warn_factor - 1e-6, ["warn"]),
    (T.shrink_chain_error_factor - 1e-6, ["error"]),
])
def test_the_chain_edges(total, expected):
    # Nine blocks: per layer the fade stays above x0.8 even at the error edge.
    stds = [0.6 * total ** (k / 8) for k in range(9)]
    assert total ** (1 / 8) > T.shrink_warn_factor
    snap = StatsSnapshot(step=10, loss=2.5, lr=0.1,
                         layers=tuple(layer(2 * k + 1, s) for k, s in enumerate(stds)),
                         weights=(), update_ratio_log10=())
    info = RunInfo(config={"batch_size": 32}, vocab="ab", param_names=(), param_shapes=(),
                   layer_kinds=(), expected_initial_loss=math.log(3))
    found = [f.severity for f in diagnose(info, snap) if f.rule == "activation-shrink"]
    assert found == expected


# ----- init or training ---------------------------------------------------------
def test_saturation_at_init_gets_gain_advice():
    r = run(1, 1, batchnorm=False, gain="5")
    sat = r.found("tanh-saturation")
    by_layer = {l.index: l.saturation_pct for l in r.init.layers}
    outs = first_batch_outputs(r.trainer.config)
    direct = [100.0 * (o.abs() > 0.97).float().mean().item() for o in outs]
    assert [by_layer[i] for i in (1, 3, 5, 7, 9)] == pytest.approx(direct, abs=1e-4)
    assert {f.where for f in sat} == {f"layer {i} (Tanh)" for i in (1, 3, 5, 7, 9)}
    for f in sat:
        assert f.severity == "error" and f.value > T.saturation_error_pct
        assert "it was so at init: the gain 5 is too high; lower --gain" in f.message
        assert "--lr" not in f.message


def test_saturation_grown_at_lr_1_names_the_lr():
    r = run(100, 100, batchnorm=False, lr=1.0)
    # At init no layer crosses the line (layer 1 ~22%, the deeper ones under 10%) ...
    assert all(l.saturation_pct <= T.saturation_warn_pct for l in r.init.layers)
    sat = r.found("tanh-saturation")
    now = {f"layer {l.index} (Tanh)": l.saturation_pct for l in r.trainer.last_stats.layers}
    assert len(sat) >= 3 and all(f.value == now[f.where] for f in sat)
    # ... and the loss sits above the uniform guess: nothing improves, the grades stand.
    assert r.monitor.improving() is False
    for f in sat:
        assert f.severity in ("warn", "error")
        assert "it grew while training" in f.message and "lower --lr" in f.message
        assert "--gain" not in f.message
    assert any(f.severity == "error" for f in sat)


def test_grown_saturation_is_a_note_while_the_loss_still_goes_down():
    """lr 0.5 without BatchNorm: 30-50% saturated by step 2,000 (under 25% at
    init) while the loss still falls, about 1% between the last two quarters."""
    r = run(2000, 1000, batchnorm=False, lr=0.5)
    q = len(r.losses) // 4
    before, recent = (sum(r.losses[2 * q:3 * q]) / q, sum(r.losses[3 * q:]) / q)
    assert recent < before * (1 - T.improving_rel) and recent < math.log(27)
    assert all(l.saturation_pct <= T.saturation_warn_pct for l in r.init.layers)
    sat = r.found("tanh-saturation")
    assert sat and r.monitor.improving() is True
    for f in sat:
        assert f.severity == "info" and f.value > T.saturation_warn_pct
        assert "grew while training" in f.message and "lower --lr" in f.message
        assert "the loss still goes down, so this is a note" in f.message
        assert "--gain" not in f.message


def test_a_recording_read_in_blocks_judges_the_same():
    """The app and replay feed blocks (observe_many): the same loss medians, the
    same trend, the same findings as step by step."""
    r = run(2000, 1000, batchnorm=False, lr=0.5)
    for size in (1500, 50):
        m = HealthMonitor(r.trainer.info())
        for i in range(0, len(r.results), size):
            m.observe_many(r.results[i:i + size])
        assert m.improving() is True and m.findings() == r.monitor.findings()


def test_a_snapshot_judged_alone_names_both_causes():
    r = run(100, 100, batchnorm=False, lr=1.0)
    alone = [f for f in diagnose(r.trainer.info(), r.trainer.last_stats)
             if f.rule == "tanh-saturation"]
    assert alone and all("lower --gain" in f.message and "lower --lr" in f.message
                         for f in alone)


# ----- the cause the figures point at ---------------------------------------------
def test_a_linear_stack_at_gain_3_blames_the_gain_not_the_last_layer():
    r = run(1, 1, batchnorm=False, activation="linear", gain="3")
    [loss] = r.found("initial-loss")
    assert loss.severity == "error" and loss.value == r.trainer.first_loss
    assert "not the last layer" in loss.message and "the gain 3 is too high" in loss.message
    assert "--last-layer-scale" not in loss.message
    [grow] = r.found("activation-grow")
    stds = [l.std for l in r.init.layers]
    assert grow.value == pytest.approx((stds[-1] / stds[0]) ** (1 / (len(stds) - 1)))
    assert "lower --gain (1 for a linear stack)" in grow.message


def test_growth_without_fan_in_names_fan_in():
    r = run(1, 1, batchnorm=False, activation="linear", fan_in=False)
    [grow] = r.found("activation-grow")
    assert grow.severity == "error"
    assert "fan-in normalisation is off (--no-fan-in)" in grow.message
    [loss] = r.found("initial-loss")
    assert "--no-fan-in" in loss.message


def test_the_lectures_hockey_stick_still_blames_the_last_layer():
    r = run(1, 1, batchnorm=False, last_layer_scale=10.0)
    [loss] = r.found("initial-loss")
    assert "--last-layer-scale 0.1" in loss.message


# ----- a linear stack: no saturation, no dead units -----------------------------------
def test_a_linear_stack_has_no_saturation_or_dead_figures(capsys):
    from traintop.commands.run import main

    previous = torch.get_num_threads()
    try:
        assert main(["--activation", "linear", "--steps", "2", "--engine", "fast",
                     "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert main(["--activation", "linear", "--steps", "2", "--engine", "fast"]) == 0
        text = capsys.readouterr().out
    finally:
        torch.set_num_threads(previous)
    assert doc["layers"] and all(l["saturation_pct"] is None and l["dead"] is None
                                 and l["share"].startswith("n/a: a linear stack")
                                 for l in doc["layers"])
    assert not [f for f in doc["health"] if f["rule"] in ("tanh-saturation", "dead-neurons")]
    rows = [line for line in text.splitlines() if line.startswith("layer ") and "std" in line
            and "saturated" in line]
    assert len(rows) == len(doc["layers"])
    assert all(line.endswith("saturated: n/a, dead n/a") for line in rows)
    assert "a linear stack has no activation function, so nothing saturates" in text


def linear_run_messages(**changes) -> list:
    from traintop.engine.feed.messages import RunStarted, Status, Steps

    apply_threads(1)
    trainer = Trainer(TrainConfig(steps=3, stats_every=1, batchnorm=False).with_changes(**changes),
                      dataset(), engine="fast")
    results = tuple(trainer.step() for _ in range(3))
    return [RunStarted(trainer.info(), None), Steps(results),
            Status(step=3, lr=trainer.lr, running=False, finished=True, steps_per_sec=100.0)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_saturation_pane_says_why_a_linear_stack_has_no_bars():
    import asyncio

    from traintop.tui.app import TraintopApp
    from traintop.tui.saturation_pane import LINEAR
    from tui_fakes import FakeSource, until

    async def shown(messages) -> tuple:
        app = TraintopApp(FakeSource(messages))
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.state.stats is not None and app.saturation.redraws)
            app.redraw_all()
            await pilot.pause(0.1)
            svg = app.export_screenshot().replace("&#160;", " ")
            return app.saturation.bars, app.saturation.missing, svg

    bars, missing, svg = asyncio.run(shown(linear_run_messages(activation="linear")))
    assert bars == [] and missing is LINEAR
    assert "n/a: linear" in svg and "a linear stack has no activation" in svg
    assert "|t|>0.97" not in svg
    bars, missing, svg = asyncio.run(shown(linear_run_messages()))   # tanh: five bars
    assert len(bars) == 5 and missing is None and "n/a: linear" not in svg
