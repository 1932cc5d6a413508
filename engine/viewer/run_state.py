"""What a viewer knows of a run after some messages: the one state of a viewer.

Folds feed messages (from a live session, a recording or a followed file)
into what the app's panes draw and what `traintop run --json` reports, so a
replay prints the figures the run printed. Textual-free and torch-free:
`apply` says which panes a message changed, so the app redraws only those
and tests check it without a screen.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# numpy is imported where used: the app's first frame does not wait for it.

from traintop.engine.health.monitor import HealthMonitor
from traintop.engine.report import build_report, event_dict
from traintop.engine.results import Calibration, RunInfo, StatsSnapshot, StepResult
from traintop.engine.step_block import StepBlock
from traintop.engine.training.history import History
from traintop.engine.feed.messages import Event, Message, RunStarted, Status, Steps

EVENTS_KEPT = 200
BLOCK = 32     # steps in one message from which they are folded as a block
ALL_PANES = ("status", "loss", "ratio", "saturation", "histograms", "weights", "health",
             "events", "samples", "calibration")


@dataclass
class RunState:
    meta: dict = field(default_factory=dict)     # the recording header's meta
    history: History = field(default_factory=History)
    info: RunInfo | None = None
    runs: int = 0
    status: Status | None = None
    last: StepResult | None = None
    # The latest step's update:data ratios that has them: a watch()ed model's
    # only on its snapshot steps, so its last step may have none.
    last_ratios: tuple = ()
    stats: StatsSnapshot | None = None           # the latest snapshot of this run
    first_loss: float | None = None
    eval_losses: dict | None = None
    samples: tuple[str, ...] | None = None
    samples_step: int | None = None
    calibration: Event | None = None
    fold: Event | None = None                    # the last BatchNorm fold (`F`, --fold)
    recorded_health: list | None = None          # findings the writer recorded at its end
    timing: dict | None = None
    interrupted: bool = False
    trainer: Event | None = None                 # the live child's last "trainer" event: died, hung
    recording_failed: str | None = None          # why the app's --record stopped
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))  # (step, text)
    lr_events: list = field(default_factory=list)  # this run's lr changes (key, decay): the report's
    monitor: HealthMonitor | None = None
    _status_is_newer: bool = False               # the Status came after the last Steps

    # ----- figures --------------------------------------------------------------
    @property
    def step(self) -> int:
        """The latest step of the current run (results are newer than status)."""
        if self.last is not None:
            return self.last.step
        return self.status.step if self.status is not None else 0

    @property
    def steps(self) -> int:
        """Steps completed, as the run's report counts them."""
        if self.status is not None and self._status_is_newer:
            return self.status.step
        if self.last is None:
            return 0
        # A step whose forward went non-finite was never completed.
        forward_failed = self.last.nonfinite is not None and not self.last.update_ratio_log10
        return self.last.step - 1 if forward_failed else self.last.step

    @property
    def lr(self) -> float | None:
        """The lr of the step shown; None where the run has none (watch() without an optimizer)."""
        if self.status is not None and self._status_is_newer:
            lr = self.status.lr
        elif self.last is not None:
            lr = self.last.lr
        elif self.info is not None:
            lr = self.info.config.get("lr")
        else:
            lr = None
        return lr if isinstance(lr, (int, float)) and math.isfinite(lr) else None

    @property
    def ratio_params(self) -> list[int]:
        """Indices of the 2-D parameters (C and Linear weights) among all."""
        if self.info is None:
            return []
        return [i for i, shape in enumerate(self.info.param_shapes) if len(shape) == 2]

    def findings(self) -> list:
        """Health findings, most severe first."""
        return self.monitor.findings() if self.monitor is not None else []

    # ----- messages -------------------------------------------------------------
    def reset(self) -> set[str]:
        """Forget everything, in place (the panes hold this object): a replay
        moved back (Event "rewind") or a followed writer started over."""
        fresh = RunState(meta=self.meta)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))
        return set(ALL_PANES)

    def apply(self, message: Message) -> set[str]:
        """Take one message in; return the names of the panes it changed."""
        if isinstance(message, Steps):
            return self._steps(message.results)
        if isinstance(message, Status):
            self.status = message
            self._status_is_newer = True
            return {"status"}
        if isinstance(message, RunStarted):
            return self._run_started(message)
        if isinstance(message, Event):
            return self._event(message)
        return set()

    def _run_started(self, message: RunStarted) -> set[str]:
        # A restart is a fresh run on the same history: per-run figures start over.
        runs, history, events, meta = self.runs + 1, self.history, self.events, self.meta
        recording_failed = self.recording_failed
        self.reset()
        self.runs, self.history, self.events, self.meta = runs, history, events, meta
        self.recording_failed = recording_failed
        self.info = message.info
        self.history.start_run(message.info.config, len(message.info.param_names), message.why)
        if self.runs > 1 or message.why:
            # at the run's step 0: every event line counts the run's steps, as the status line
            self.events.append((0, message.why or "run started"))
        self.monitor = HealthMonitor(message.info)
        return set(ALL_PANES)

    def _steps(self, results: Sequence[StepResult]) -> set[str]:
        if len(results) >= BLOCK:
            block = StepBlock.of(results)    # a recording's lines are blocks already
            if not block.nonfinite and block.width is not None:
                return self._block(block)
        history, monitor = self.history, self.monitor
        changed = {"status", "loss", "ratio"}
        for r in results:
            if self.first_loss is None:
                self.first_loss = r.loss
            history.add(r.log10_loss, r.lr, r.update_ratio_log10)
            if r.update_ratio_log10:
                self.last_ratios = r.update_ratio_log10
            if monitor is not None:
                monitor.observe(r)
            if r.stats is not None:
                self.stats = r.stats
                changed |= {"saturation", "histograms", "weights"}
            if r.nonfinite is not None:
                history.mark(f"stopped: {r.nonfinite.message()}")
        if results:
            self.last = results[-1]
            self._status_is_newer = False
        if monitor is not None:
            changed.add("health")
        return changed

    def _trainer(self, event: Event) -> set[str]:
        """The live child died, went silent, or spoke again (session.ChildWatch)."""
        state, before = event.data.get("state"), self.trainer
        self.trainer = None if state == "alive" else event
        if state == "hung" and before is not None and before.data.get("state") == "hung":
            return {"status"}     # the same silence, a second longer: no new event line
        self.events.append((event.step, event.text))
        if self.status is not None and state in ("died", "hung"):
            # Its last rate is stale; a dead run is not running either.
            self.status = dataclasses.replace(self.status, steps_per_sec=0.0,
                                              running=self.status.running and state == "hung")
        if state == "died":
            self.history.mark(event.text)
            return {"status", "events", "loss"}
        return {"status", "events"}

    @property
    def trainer_state(self) -> str | None:
        """"died", "hung" or "starting" (a fresh child after a death); None otherwise."""
        return self.trainer.data.get("state") if self.trainer is not None else None

    def _block(self, block: StepBlock) -> set[str]:
        """_steps of many plain steps at once, from their columns (a recording read at speed)."""
        import numpy as np
        changed = {"status", "loss", "ratio"}
        if self.first_loss is None:
            self.first_loss = float(block.loss[0])
        loss = block.loss
        with np.errstate(divide="ignore", invalid="ignore"):   # StepResult.log10_loss, at once
            log10 = np.where((loss > 0) & np.isfinite(loss), np.log10(loss), np.nan)
        self.history.add_many(log10, block.lr, block.ratios)
        if block.ratios.shape[1]:
            self.last_ratios = tuple(block.ratios[-1].tolist())
        if self.monitor is not None:
            self.monitor.observe_many(block)
            changed.add("health")
        if block.stats:
            self.stats = block.stats[max(block.stats)]
            changed |= {"saturation", "histograms", "weights"}
        self.last = block[-1]
        self._status_is_newer = False
        return changed

    def take_snapshot(self, snapshot: StatsSnapshot) -> set[str]:
        """The run's latest snapshot, given apart from its step (a summary
        folds the steps without their snapshots, then this, the last one)."""
        self.stats = snapshot
        if self.monitor is not None:
            self.monitor.observe_snapshot(snapshot)
        return {"saturation", "histograms", "weights", "health"}

    def _event(self, event: Event) -> set[str]:
        if event.kind == "rewind":
            return self.reset()
        if event.kind == "trainer":
            return self._trainer(event)
        if event.kind == "error" and event.data.get("recording"):
            self.recording_failed = event.text
        if event.kind == "note" and event.data.get("restarted"):
            changed = self.reset()
            self.events.append((event.step, event.text))
            return changed
        self.events.append((event.step, event.text))
        changed = {"events"}
        data = event.data
        if event.kind == "lr":
            self.history.mark(event.text)
            self.lr_events.append(event)
            changed |= {"loss", "ratio", "status"}
        elif event.kind in ("non-finite", "monitor-error", "misuse"):   # a watched run's findings
            if event.kind == "non-finite":   # the plot's label: the place first, short
                self.history.mark(f"NaN/inf {data.get('where') or event.text}")
                changed.add("loss")
            if self.monitor is not None:
                self.monitor.observe_event(event)
                changed.add("health")
        elif event.kind == "evaluate":
            # Recordings of traintop 0.1's app hold the losses flat.
            losses = data.get("losses", data)
            self.eval_losses = dict(losses)
            if "val" in losses:
                self.history.add_val_loss(losses["val"])
            changed.add("loss")
        elif event.kind == "sample":
            # Recordings of traintop 0.1's app hold them as "names".
            self.samples = tuple(data.get("samples", data.get("names", ())))
            self.samples_step = event.step
            changed.add("samples")
        elif event.kind == "fold":
            self.fold = event
            changed.add("calibration")
        elif event.kind == "calibrate":
            self.calibration = event
            if self.monitor is not None and data.get("layers") is not None:
                self.monitor.observe_calibration(calibration_from(data))
                changed.add("health")
        elif event.kind == "health":
            self.recorded_health = list(data.get("findings", []))
        elif event.kind == "timing":
            self.timing = dict(data)
        elif event.kind == "stopped" and data.get("interrupted"):
            self.interrupted = True
        elif event.kind == "note" and "first_loss" in data:   # a resumed run
            self.first_loss = data["first_loss"]
        return changed

    # ----- the report ------------------------------------------------------------
    def report(self) -> dict:
        """The same document `traintop run --json` printed for this run."""
        if self.info is None:
            raise ValueError("no run started yet")
        health = self.recorded_health
        if health is None and self.monitor is not None and self.last is not None:
            health = [f.to_dict() for f in self.findings()]   # judged here: watch() records none
        doc = build_report(self.info, self.meta.get("data"), self.steps, self.first_loss,
                           self.lr if self.lr is not None else math.nan, self.stats, self.last,
                           self.eval_losses, self.samples, health, self.timing,
                           ratios=self.last_ratios)
        doc["events"] = [event_dict(e) for e in self.lr_events]   # as report_dict lists them
        if self.interrupted:
            doc["interrupted"] = True
        return _json_safe(doc)


def calibration_from(data: dict) -> Calibration:
    return Calibration(layers=tuple(data["layers"]), mean_max_diff=tuple(data["mean_max_diff"]),
                       std_max_rel_diff=tuple(data["std_max_rel_diff"]),
                       applied=bool(data.get("applied", False)))


def _json_safe(value):
    """NaN and infinities (a watched model's figures may hold them) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
