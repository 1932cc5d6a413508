"""A run made of formulas, not of torch arithmetic: snapshot data that is the
same on every machine (float results of torch kernels may differ in the last
bits between CPUs, enough to move a pixel or a printed digit)."""

from __future__ import annotations

import math

from traintop.data.dataset import build_dataset
from traintop.engine.config import TrainConfig
from traintop.engine.feed import events
from traintop.engine.feed.messages import Event, RunStarted, Status, Steps
from traintop.engine.results import Histogram, LayerStats, StatsSnapshot, StepResult, WeightStats
from traintop.engine.training.trainer import Trainer
from tui_fakes import small_words

CONFIG = TrainConfig(n_hidden=30, steps=1000, stats_every=100, lr_decay_step=300)
BINS = 100
NAMES = ("amelia", "jaxon", "rilee", "kaydence", "mor", "elian", "brynn", "zaiyah", "cori",
         "theo")


def run_info(config: TrainConfig = CONFIG):
    """Names and shapes of the stack (no arithmetic involved)."""
    return Trainer(config, build_dataset(small_words(), 3, 42, source="small")).info()


def bell(lo: float, hi: float, center: float, width: float, tails: float = 0.0) -> Histogram:
    step = (hi - lo) / BINS
    xs = [lo + step * (i + 0.5) for i in range(BINS)]
    ys = [math.exp(-0.5 * ((x - center) / width) ** 2) + tails * (abs(x) > 0.95 * hi)
          for x in xs]
    total = sum(ys) * step
    return Histogram(lo, hi, tuple(round(y / total, 6) for y in ys))


def stats_at(step: int, info, lr: float, ratios: tuple, last_ratio: float | None = None):
    layers = []
    for k, index in enumerate(i for i, kind in enumerate(info.layer_kinds) if kind == "Tanh"):
        sat = round(4.0 - 0.5 * k + 0.3 * math.sin(step / 50), 3)
        layers.append(LayerStats(
            index=index, kind="Tanh", mean=round(0.01 * math.sin(step + k), 4),
            std=round(0.62 + 0.01 * k, 4), saturation_pct=sat, dead=1 if k == 0 else 0,
            units=30, grad_mean=0.0, grad_std=round(8e-3 - 5e-4 * k, 6),
            hist=bell(-1.0, 1.0, 0.0, 0.55 + 0.02 * k, tails=0.4 - 0.05 * k),
            grad_hist=bell(-0.06, 0.06, 0.0, 0.008 - 0.0005 * k)))
    weights = []
    names = [n for n, s in zip(info.param_names, info.param_shapes) if len(s) == 2]
    shapes = [s for s in info.param_shapes if len(s) == 2]
    for k, (name, shape) in enumerate(zip(names, shapes)):
        ratio = 0.01 + 0.004 * k
        if last_ratio is not None and k == len(names) - 1:
            ratio = last_ratio
        weights.append(WeightStats(name=name, shape=tuple(shape), grad_mean=round(1e-4 * (k - 3), 6),
                                   grad_std=round(0.01 + 0.002 * k, 6), grad_data_ratio=ratio,
                                   hist=bell(-0.08, 0.08, 0.0, 0.01 + 0.002 * k)))
    return StatsSnapshot(step=step, loss=0.0, lr=lr, layers=tuple(layers),
                         weights=tuple(weights), update_ratio_log10=ratios)


def result_at(step: int, info, lr: float) -> StepResult:
    loss = round(2.2 + 1.1 * math.exp(-step / 80) + 0.12 * math.sin(step * 1.7), 6)
    ratios = tuple(round(-3.0 + 0.4 * math.exp(-step / 150) - 0.08 * p + 0.05 * math.sin(step / 7 + p)
                         + math.log10(lr / 0.1), 6) for p in range(len(info.param_names)))
    stats = stats_at(step, info, lr, ratios) if step == 1 or step % 100 == 0 else None
    if stats is not None:
        stats = StatsSnapshot(step, loss, lr, stats.layers, stats.weights, ratios)
    return StepResult(step=step, loss=loss, lr=lr, update_ratio_log10=ratios, stats=stats)


def fixed_run(steps: int = 400) -> list:
    """Run start, steps in batches of 50, an lr change at step 200, an
    evaluation, samples, a calibration and a paused status."""
    info = run_info()
    out: list = [RunStarted(info, None)]
    lr = 0.1
    for start in range(1, steps + 1, 50):
        if start > steps // 2 and lr == 0.1:
            out.append(Event("lr", start - 1, "lr 0.1 -> 0.2", {"old": 0.1, "lr": 0.2}))
            lr = 0.2
        out.append(Steps(tuple(result_at(s, info, lr) for s in range(start, start + 50))))
    out.append(events.evaluated(steps, {"train": 2.4811, "val": 2.6032}))
    out.append(events.sampled(steps, NAMES))
    out.append(Event("calibrate", steps, "calibrate", {
        "layers": [1, 4, 7, 10, 13, 16], "mean_max_diff": [0.277, 0.0283, 0.0295, 0.0301, 0.0391, 0.0185],
        "std_max_rel_diff": [0.077, 0.0701, 0.0663, 0.0689, 0.0603, 0.0555], "applied": False}))
    out.append(Status(step=steps, lr=0.02, running=False, finished=False, steps_per_sec=812.0))
    return out


def fixed_first_step_without_batchnorm() -> list:
    """Step 1 of the stack without BatchNorm: the last layer, scaled by 0.1 at
    init, has a grad:data ratio hundreds of times the others' (as the lecture shows)."""
    config = CONFIG.with_changes(batchnorm=False)
    info = run_info(config)
    first = result_at(1, info, 0.1)
    stats = stats_at(1, info, 0.1, first.update_ratio_log10, last_ratio=2.52)
    return [RunStarted(info, None), Steps((StepResult(1, first.loss, 0.1, first.update_ratio_log10, stats),)),
            Status(step=1, lr=0.1, running=False, finished=False, steps_per_sec=0.0)]
