"""Sweeps the sweep tests show: one trained for real (SweepTrainer, the
messages a live child sends) and one made of formulas (the same on every CPU,
for snapshots), both as feed messages for tui_recordings.record."""

from __future__ import annotations

import dataclasses

from traintop.data.dataset import build_dataset
from traintop.engine.feed.messages import RunStarted, Status, Steps, Sweep
from traintop.engine.results import StatsSnapshot, StepResult
from traintop.engine.sweep.spec import parse_sweep
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.threads import apply_threads
from tui_fakes import SMALL_CONFIG, small_words
from tui_fixed_run import result_at, run_info

SWEEP_CONFIG = SMALL_CONFIG.with_changes(steps=120, stats_every=40)


def trained_sweep(items=("gain=1,5/3",), config=SWEEP_CONFIG, flush: int = 25):
    """(SweepTrainer after its steps, the messages a live child sent for it):
    the Sweep, each run's start, steps in batches per run, a Status per run."""
    apply_threads(1)
    runs = parse_sweep(list(items), config)
    dataset = build_dataset(small_words(), config.block_size, config.split_seed, source="small")
    sweep = SweepTrainer(runs, dataset)
    out: list = [Sweep(sweep.labels, tuple(runs[0].changes))]
    out += [RunStarted(t.info(), None, run=k) for k, t in enumerate(sweep.trainers)]
    pending: dict[int, list] = {}
    while not sweep.finished:
        for k, result in enumerate(sweep.step()):
            if result is not None:
                pending.setdefault(k, []).append(result)
        if len(pending.get(0, ())) >= flush or sweep.finished:
            out += [Steps(tuple(rows), run=k) for k, rows in pending.items()]
            pending = {}
    out += [Status(step=t.steps_done, lr=t.lr, running=False, finished=True,
                   steps_per_sec=90.0, run=k) for k, t in enumerate(sweep.trainers)]
    return sweep, out


GAINS = ("0.5", "1", "5/3", "3")


def formula_sweep(steps: int = 300, gains=GAINS) -> list:
    """A sweep of `gains` made of formulas: run k's loss a little higher and its
    layers a little more saturated than run k-1's (fixed, not trained)."""
    info = run_info()
    out: list = [Sweep(tuple(f"gain={g}" for g in gains), ("gain",))]
    out += [RunStarted(dataclasses.replace(info, config={**info.config, "gain": g}), None, run=k)
            for k, g in enumerate(gains)]
    for start in range(1, steps + 1, 50):
        for k in range(len(gains)):
            out.append(Steps(tuple(shifted(result_at(s, info, 0.1), k)
                                   for s in range(start, min(steps, start + 49) + 1)), run=k))
    out += [Status(step=steps, lr=0.1, running=False, finished=True, steps_per_sec=90.0, run=k)
            for k in range(len(gains))]
    return out


def shifted(r: StepResult, k: int) -> StepResult:
    """Run k's figures: loss up 0.08 per run, saturation x (1 + k/2), ratios up 0.2 per run."""
    ratios = tuple(round(x + 0.2 * k, 6) for x in r.update_ratio_log10)
    stats = r.stats
    if stats is not None:
        layers = tuple(dataclasses.replace(l, saturation_pct=round(l.saturation_pct * (1 + k / 2), 3),
                                           grad_std=l.grad_std * (1 + k))
                       for l in stats.layers)
        stats = StatsSnapshot(stats.step, stats.loss, stats.lr, layers, stats.weights, ratios)
    return StepResult(r.step, round(r.loss + 0.08 * k, 6), r.lr, ratios, stats)
