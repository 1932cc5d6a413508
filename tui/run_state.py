"""What the app knows about the run it shows, fed by engine.feed messages.

Textual-free: it applies messages and says which panes they touched, so the
app redraws only what changed and tests can check it without a screen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.feed import Event, Message, RunStarted, Status, Steps
from engine.history import History
from engine.results import Calibration, RunInfo, StatsSnapshot, StepResult
from tui import health_rules

EVENTS_KEPT = 200
ALL_PANES = ("status", "loss", "ratio", "saturation", "histograms", "weights", "health",
             "events", "samples", "calibration")


@dataclass
class RunState:
    history: History = field(default_factory=History)
    info: RunInfo | None = None
    status: Status | None = None
    last: StepResult | None = None
    stats: StatsSnapshot | None = None
    names: tuple[str, ...] = ()
    names_step: int | None = None
    calibration: Event | None = None
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    monitor: object | None = None
    runs: int = 0

    @property
    def step(self) -> int:
        """The latest step of the current run (results are newer than status)."""
        if self.last is not None:
            return self.last.step
        return self.status.step if self.status is not None else 0

    @property
    def ratio_params(self) -> list[int]:
        """Indices of the 2-D parameters (C and Linear weights) among all."""
        if self.info is None:
            return []
        return [i for i, shape in enumerate(self.info.param_shapes) if len(shape) == 2]

    def reset(self) -> set[str]:
        """Forget everything, in place (the panes hold this object): a replay
        moved back (Event "rewind") or a followed writer started over."""
        fresh = RunState()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))
        return set(ALL_PANES)

    def apply(self, message: Message) -> set[str]:
        """Take one message in; return the names of the panes it changed."""
        if isinstance(message, Steps):
            return self._steps(message.results)
        if isinstance(message, Status):
            self.status = message
            return {"status"}
        if isinstance(message, RunStarted):
            return self._run_started(message)
        if isinstance(message, Event):
            return self._event(message)
        return set()

    def _run_started(self, message: RunStarted) -> set[str]:
        self.info = message.info
        self.runs += 1
        self.last = None
        self.stats = None
        self.history.start_run(message.info.config, len(message.info.param_names), message.why)
        if self.runs > 1 or message.why:
            self.events.append((self.history.tick, message.why or "run started"))
        if health_rules.HealthMonitor is not None:
            self.monitor = health_rules.HealthMonitor(message.info)
        return {"status", "loss", "ratio", "saturation", "histograms", "weights", "health",
                "events"}

    def _steps(self, results: tuple[StepResult, ...]) -> set[str]:
        history, monitor = self.history, self.monitor
        changed = {"status", "loss", "ratio"}
        for r in results:
            history.add(r.log10_loss, r.lr, r.update_ratio_log10)
            if monitor is not None:
                monitor.observe(r)
            if r.stats is not None:
                self.stats = r.stats
                changed |= {"saturation", "histograms", "weights"}
            if r.nonfinite is not None:
                history.mark(f"stopped: {r.nonfinite.message()}")
        if results:
            self.last = results[-1]
        if monitor is not None:
            changed.add("health")
        return changed

    def _event(self, event: Event) -> set[str]:
        if event.kind == "rewind":
            return self.reset()
        if event.kind == "note" and event.data.get("restarted"):
            changed = self.reset()
            self.events.append((event.step, event.text))
            return changed
        self.events.append((event.step, event.text))
        changed = {"events"}
        if event.kind == "lr":
            self.history.mark(event.text)
            changed |= {"loss", "ratio", "status"}
        elif event.kind == "evaluate":
            # The app's answer holds the losses; `traintop run --record` nests them.
            losses = event.data.get("losses", event.data)
            if "val" in losses:
                self.history.add_val_loss(losses["val"])
            changed.add("loss")
        elif event.kind == "sample":
            self.names = tuple(event.data.get("names", event.data.get("samples", ())))
            self.names_step = event.step
            changed.add("samples")
        elif event.kind == "calibrate":
            self.calibration = event
            if self.monitor is not None and event.data.get("layers") is not None:
                self.monitor.observe_calibration(calibration_from(event.data))
                changed.add("health")
        return changed

    def findings(self) -> list | None:
        """Health findings, most severe first; None when the rules are absent."""
        return self.monitor.findings() if self.monitor is not None else None


def calibration_from(data: dict) -> Calibration:
    return Calibration(layers=tuple(data["layers"]), mean_max_diff=tuple(data["mean_max_diff"]),
                       std_max_rel_diff=tuple(data["std_max_rel_diff"]),
                       applied=bool(data.get("applied", False)))
