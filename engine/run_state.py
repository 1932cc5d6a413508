"""What a viewer knows of a run after some messages: the figures of its report.

Folds engine.feed messages (from a recording, a followed file or a live
source) into the state `traintop run --json` reports, so a replay prints
the figures the run printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.feed import Event, Message, RunStarted, Status, Steps
from engine.report import build_report
from engine.results import RunInfo, StatsSnapshot, StepResult


@dataclass
class RunState:
    meta: dict = field(default_factory=dict)
    info: RunInfo | None = None
    runs: int = 0
    last: StepResult | None = None
    last_stats: StatsSnapshot | None = None
    first_loss: float | None = None
    status: Status | None = None        # the latest Status, if it came after the last step
    eval_losses: dict | None = None
    samples: tuple | None = None
    health: list | None = None
    timing: dict | None = None
    interrupted: bool = False
    events: list[Event] = field(default_factory=list)

    def add(self, message: Message) -> None:
        if isinstance(message, RunStarted):
            meta = self.meta
            self.__init__(meta=meta, runs=self.runs + 1, events=self.events)  # a fresh run
            self.info = message.info
        elif isinstance(message, Steps):
            for r in message.results:
                if self.first_loss is None:
                    self.first_loss = r.loss
                self.last = r
                if r.stats is not None:
                    self.last_stats = r.stats
            self.status = None
        elif isinstance(message, Status):
            self.status = message
        elif isinstance(message, Event):
            self._event(message)

    def _event(self, e: Event) -> None:
        self.events.append(e)
        if e.kind == "evaluate" and "losses" in e.data:
            self.eval_losses = dict(e.data["losses"])
        elif e.kind == "sample" and "samples" in e.data:
            self.samples = tuple(e.data["samples"])
        elif e.kind == "health":
            self.health = list(e.data.get("findings", []))
        elif e.kind == "timing":
            self.timing = dict(e.data)
        elif e.kind == "stopped" and e.data.get("interrupted"):
            self.interrupted = True
        elif e.kind == "note" and "first_loss" in e.data:   # a resumed run
            self.first_loss = e.data["first_loss"]

    @property
    def steps(self) -> int:
        if self.status is not None:
            return self.status.step
        if self.last is None:
            return 0
        # A step whose forward went non-finite was never completed.
        forward_failed = self.last.nonfinite is not None and not self.last.update_ratio_log10
        return self.last.step - 1 if forward_failed else self.last.step

    @property
    def lr(self) -> float:
        if self.status is not None:
            return self.status.lr
        return self.last.lr if self.last is not None else float(self.info.config.get("lr", 0.0))

    def report(self) -> dict:
        """The same document `traintop run --json` printed for this run."""
        if self.info is None:
            raise ValueError("no run started yet")
        doc = build_report(self.info, self.meta.get("data"), self.steps, self.first_loss,
                           self.lr, self.last_stats, self.last, self.eval_losses, self.samples,
                           self.health, self.timing)
        if self.interrupted:
            doc["interrupted"] = True
        return _json_safe(doc)


def _json_safe(value):
    """NaN and infinities (a watched model's figures may hold them) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
