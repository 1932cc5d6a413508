"""Health diagnosis: the lecture's rules of thumb, run on a live training run.

A HealthMonitor is fed every StepResult of one run (and any Calibration) and
keeps the current findings: those of the latest stats snapshot, the
sustained update:data level over recent steps, the initial loss, and a
non-finite stop. `new_findings()` hands out only what the previous call had
not, so a viewer can flash on a new error without repeating old ones.
The rules and their ids live in traintop.engine.health.rules, every threshold in
traintop.engine.health.thresholds.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque

# numpy is imported where used: the app's first frame does not wait for it.

from .rules import (RULES, RULE_IDS, SEVERITIES, Finding, Rule, calibration,
                                 initial_loss, loss_cause, loss_diverging, monitor_error,
                                 non_finite, non_finite_traced, snapshot_findings, sort_key,
                                 update_burst, update_level)
from .step_rules import StepRules
from .when import When
from traintop.engine.results import Calibration, RunInfo, StatsSnapshot, StepResult
from traintop.engine.step_block import StepBlock
from .thresholds import DEFAULT_THRESHOLDS, Thresholds

BIG_BLOCK = 1000   # steps from which observe_many's numpy passes beat a Python loop

__all__ = ["DEFAULT_THRESHOLDS", "RULES", "RULE_IDS", "SEVERITIES", "Finding", "HealthMonitor",
           "Rule", "Thresholds", "diagnose"]


def diagnose(info: RunInfo, snapshot: StatsSnapshot,
             thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Findings of one stats snapshot alone, most severe first (no sustained
    update:data judgement: that needs the steps around it). A snapshot of
    step 1 also judges the initial loss."""
    lecture = is_lecture(info)
    config = info.config if lecture else {}
    found = snapshot_findings(snapshot, _batch_size(info), thresholds, lecture,
                              sparse_params(info), When(config=config))
    if snapshot.step == 1:
        found += initial_loss(snapshot.loss, info.expected_initial_loss, _vocab_size(info), 1,
                              thresholds, loss_cause(snapshot, thresholds, lecture, config))
    return sorted(found, key=sort_key)


class HealthMonitor:
    """The findings of one run, kept current as its steps arrive."""

    def __init__(self, info: RunInfo, thresholds: Thresholds = DEFAULT_THRESHOLDS):
        self.info = info
        self.thresholds = thresholds
        # The lecture judges update:data on the 2-D parameters only: a bias or
        # BatchNorm beta starts at zero, so its ratio is meaningless early on.
        self._weights = [i for i, shape in enumerate(info.param_shapes) if len(shape) == 2]
        self.lecture = is_lecture(info)   # advice may name the lecture's options
        self._reset()

    def _reset(self) -> None:
        self._reported: set[tuple[str, str, str]] = set()  # a new run's findings are all new
        self._last_step = 0
        self._window: deque[tuple[float, ...]] = deque(maxlen=self.thresholds.update_window)
        self._start: list[Finding] = []      # initial loss: stays for the run
        self._snapshot: list[Finding] = []   # latest stats snapshot's
        self._update: list[Finding] | None = []  # sustained update:data; None: to judge
        self._burst: list[Finding] = []      # first far too large step: stays for the run
        self._stop: list[Finding] = []       # non-finite
        self._faults: dict[str, Finding] = {}   # monitor-error, by the figure that failed
        self._calibration: list[Finding] = []
        # loss-spike, grad-norm, misuse: a watched run's steps (not the lecture's)
        self._steps = StepRules(self.info.config) if not self.lecture else None
        self._losses: deque[float] = deque(maxlen=self.thresholds.loss_window)
        self._loss_level = math.nan          # median of the window, every loss_every steps
        self._loss_best = math.inf           # lowest such median of the run
        self._loss_step = 0
        self._init: StatsSnapshot | None = None   # the step-1 snapshot: the init's figures
        # Each loss median's step, and the running sum of the medians (for the
        # quarter means of `improving`).
        self._level_steps: list[int] = []
        self._level_sums: list[float] = [0.0]

    # ----- feeding ---------------------------------------------------------------
    def observe(self, result: StepResult) -> None:
        if result.step <= self._last_step:  # the run restarted from step 0
            self._reset()
        self._last_step = result.step
        t = self.thresholds
        if result.step == 1:
            self._start = initial_loss(
                result.loss, self.info.expected_initial_loss, _vocab_size(self.info), 1, t,
                loss_cause(result.stats, t, self.lecture, self._config()))
        if result.nonfinite is not None:
            self._stop = non_finite(result.nonfinite, self.lecture)
        self._observe_loss(result.loss, result.step)
        if self._steps is not None:
            self._steps.observe_columns((result.step,), (result.loss,), (result.grad_norm,))
        if result.stats is not None:
            self.observe_snapshot(result.stats)
        if result.update_ratio_log10:
            ratios = result.update_ratio_log10
            weights = tuple(ratios[i] for i in self._weights if i < len(ratios))
            self._window.append(weights)
            if not self._burst:
                finite = sorted(v for v in weights if math.isfinite(v))
                # The median is at most the upper middle: skip it while that is under the line.
                if finite and finite[len(finite) // 2] > t.update_burst_log10:
                    self._burst = update_burst(statistics.median(finite), result.step, t,
                                               self.lecture)
            # The window's medians are taken when findings are read, not on
            # every step: observe() stays cheap next to a ~1 ms training step.
            self._update = None

    def _observe_loss(self, loss: float, step: int) -> None:
        t = self.thresholds
        if not math.isfinite(loss):
            return                   # the non-finite rule speaks
        self._losses.append(loss)
        if len(self._losses) >= t.loss_min_steps and step % t.loss_every == 0:
            # A median every few steps, not on every one: observe() stays cheap.
            self._loss_level = statistics.median(self._losses)
            self._loss_best = min(self._loss_best, self._loss_level)
            self._loss_step = step
            self._add_levels([step], [self._loss_level])

    def _add_levels(self, steps, levels) -> None:
        self._level_steps.extend(steps)
        total = self._level_sums[-1]
        for v in levels:
            total += v
            self._level_sums.append(total)

    def improving(self) -> bool | None:
        """Whether the loss still goes down: the mean of its medians over the
        last quarter of the run's steps below that of the quarter before by
        more than `improving_rel`, with the loss under the uniform guess and
        not risen from its lowest (a run recovering from a blow-up at lr 1
        goes down too, from far above the guess); None until each quarter
        holds `improving_min_steps` steps."""
        if not self._level_steps:
            return None
        t, level = self.thresholds, self._loss_level
        if not math.isfinite(level):
            return None
        if not (level < self.info.expected_initial_loss
                and level <= self._loss_best * t.loss_rise_warn_ratio):
            return False
        end = self._level_steps[-1]
        quarter = end / 4
        if quarter < self.thresholds.improving_min_steps:
            return None
        a = bisect.bisect_right(self._level_steps, end - 2 * quarter)
        b = bisect.bisect_right(self._level_steps, end - quarter)
        n = len(self._level_steps)
        if b <= a or n <= b:
            return None
        sums = self._level_sums
        before, recent = (sums[b] - sums[a]) / (b - a), (sums[n] - sums[b]) / (n - b)
        return recent < before * (1 - self.thresholds.improving_rel)

    def _config(self) -> dict:
        return self.info.config if self.lecture else {}

    def _observe_losses(self, losses, steps) -> None:
        """_observe_loss of each (loss, step) of increasing steps (arrays), at
        once: the medians fall at the same steps over the same windows (a
        recording's 200,000 steps would take a Python median every 10 of them)."""
        if len(losses) < BIG_BLOCK:   # numpy's set-up would cost more than it saves
            for loss, step in zip(losses.tolist(), steps.tolist()):
                self._observe_loss(loss, step)
            return
        import numpy as np
        t = self.thresholds
        loss = np.asarray(losses, dtype=np.float64)
        keep = np.flatnonzero(np.isfinite(loss))
        if not keep.size:
            return
        held = len(self._losses)
        values = np.concatenate([np.fromiter(self._losses, np.float64, held), loss[keep]])
        at = np.asarray(steps, dtype=np.int64)[keep]
        ends = np.arange(held, len(values))           # each new value's place in `values`
        width = self._losses.maxlen
        due = np.flatnonzero((np.minimum(ends + 1, width) >= t.loss_min_steps)
                             & (at % t.loss_every == 0))
        if due.size:
            last = ends[due]
            windows = np.lib.stride_tricks.sliding_window_view(
                np.concatenate([np.full(width - 1, np.nan), values]), width)[last]
            # Windows shorter than `width` (the run's first steps) carry NaN in front.
            medians = [statistics.median(w[~np.isnan(w)].tolist()) if np.isnan(w[0])
                       else m for w, m in zip(windows, np.median(windows, axis=1).tolist())]
            self._loss_level = medians[-1]
            self._loss_best = min(self._loss_best, min(medians))
            self._loss_step = int(at[due[-1]])
            self._add_levels(at[due].tolist(), medians)
        self._losses.extend(loss[keep][-width:].tolist())

    def _judge_loss(self) -> list[Finding]:
        return loss_diverging(self._loss_level, self._loss_best, self.info.expected_initial_loss,
                              len(self._losses), self._loss_step, self.thresholds, self.lecture)

    def observe_many(self, results) -> None:
        """observe() of each result, in one pass where that is the same: a
        block of increasing steps (a recording's) keeps the last snapshot's
        findings and the last window of ratios, and finds the first far too
        large step with one comparison over the block. `results`: any
        sequence of them; a StepBlock's columns are read as they are."""
        import numpy as np
        block = StepBlock.of(results)
        if len(block) > 1 and block.steps[0] == 1:
            # A run's first step judges the initial loss: that one alone, the rest at once.
            self.observe(block[0])
            return self.observe_many(block[1:])
        steps = block.steps
        if (not len(block) or steps[0] <= self._last_step or steps[0] == 1
                or not (np.diff(steps) > 0).all() or block.nonfinite or not block.width):
            for r in block:
                self.observe(r)
            return
        t = self.thresholds
        self._last_step = int(steps[-1])
        self._observe_losses(block.loss, steps)
        if self._steps is not None:
            self._steps.observe_columns(steps, block.loss, block.grad_norm)
        if block.stats:
            self.observe_snapshot(block.stats[max(block.stats)])
        rows = block.ratios[:, [i for i in self._weights if i < block.width]]
        if not self._burst and rows.size:
            finite = np.isfinite(rows)
            # The upper middle of a row's finite values is over the line
            # exactly when at most half of them are at or under it.
            low = ((rows <= t.update_burst_log10) & finite).sum(axis=1)
            over = np.flatnonzero((finite.sum(axis=1) > 0) & (low <= finite.sum(axis=1) // 2))
            if over.size:
                k = int(over[0])
                values = [v for v in rows[k].tolist() if math.isfinite(v)]
                self._burst = update_burst(statistics.median(values), int(steps[k]), t,
                                           self.lecture)
        for row in rows[-self._window.maxlen:].tolist():
            self._window.append(tuple(row))
        self._update = None

    def observe_event(self, event) -> None:
        """A watched run's own findings, recorded as events (feed.messages.Event):
        "non-finite" (where it started, traced by watch()) and "monitor-error"
        (a figure traintop failed to compute; the run went on)."""
        if event.kind == "non-finite":
            try:
                self._stop = non_finite_traced(event.data)
            except (KeyError, TypeError, ValueError, AttributeError):   # a file's odd data
                self._stop = [Finding("non-finite", "error", str(event.data.get("where", "?")),
                                      None, "finite loss, activations, gradients and parameters",
                                      event.text, event.step)]
        elif event.kind == "monitor-error":
            f = monitor_error(event.data, event.step)
            self._faults.setdefault(f.where, f)
        elif event.kind == "misuse" and self._steps is not None:
            self._steps.observe_event(event)

    def observe_snapshot(self, snapshot: StatsSnapshot) -> None:
        """The latest stats snapshot's findings (replacing the previous ones)."""
        if snapshot.step == 1:
            self._init = snapshot
        when = When(init=self._init, improving=self.improving(), config=self._config())
        self._snapshot = snapshot_findings(snapshot, _batch_size(self.info), self.thresholds,
                                           self.lecture, sparse_params(self.info), when)

    def observe_calibration(self, cal: Calibration) -> None:
        self._calibration = calibration(cal, self.info, self._last_step, self.thresholds)

    def _judge_updates(self) -> list[Finding]:
        if self._burst or len(self._window) < self.thresholds.update_min_steps:
            return []
        level = update_level_of(self._window)
        return update_level(level, len(self._window), self._last_step, self.thresholds,
                            self.lecture)

    # ----- reading ---------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """Current findings, most severe first."""
        if self._update is None:
            self._update = self._judge_updates()
        return sorted(self._start + self._stop + self._snapshot + self._burst + self._update
                      + self._calibration + self._judge_loss() + list(self._faults.values())
                      + (self._steps.findings() if self._steps is not None else []),
                      key=sort_key)

    def new_findings(self) -> list[Finding]:
        """Current findings the previous call did not return (a finding that
        went away and came back, or changed severity, counts as new)."""
        current = self.findings()
        fresh = [f for f in current if f.key() not in self._reported]
        self._reported = {f.key() for f in current}
        return fresh


def update_level_of(window) -> float:
    """Median over parameters of each parameter's median over the window.

    Only finite entries count: -inf is a step where a parameter got no
    gradient at all (every unit behind it saturated, as after a far too high
    learning rate), which says nothing about the step size; the saturation
    and dead-neuron rules report that state."""
    columns = zip(*window)
    medians = []
    for column in columns:
        values = [v for v in column if math.isfinite(v)]
        if values:
            medians.append(statistics.median(values))
    return statistics.median(medians) if medians else math.nan


def is_lecture(info: RunInfo) -> bool:
    """The lecture's own stack (the app, `traintop run`), not a watch()ed model."""
    return "gain" in info.config


def sparse_params(info: RunInfo | None) -> tuple[str, ...]:
    """The embedding tables of a watched model whose gradient is sparse (watch()'s
    config "sparse_params"): their grad:data is not judged against the rest."""
    names = (info.config.get("sparse_params") if info is not None else None) or ()
    return tuple(str(n) for n in names) if isinstance(names, (list, tuple)) else ()


def _batch_size(info: RunInfo) -> int:
    return int(info.config.get("batch_size", 0) or 0)


def _vocab_size(info: RunInfo) -> int:
    return len(info.vocab) + 1
