"""The one interface between whatever produces a run and whatever shows it.

A source (a live trainer in a child process, a recorded file, a file still
being written) emits these messages; a viewer (the app, a recorder, the
headless summary) consumes them and sends Commands back where the source
accepts them. All messages are frozen plain-Python values: they pickle
across processes and serialise to JSON lines (see traintop.engine.recording.format).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from traintop.engine.results import RunInfo, StepResult


@dataclass(frozen=True)
class RunStarted:
    """A run began at step 0: the first, or a restart with a new config."""

    info: RunInfo
    why: str | None = None   # e.g. "restart: gain 3"; None for the first run
    run: int = 0             # the run's index in sweep order; 0 for every single run


@dataclass(frozen=True)
class Steps:
    """Consecutive step results, batched to keep the message rate low: a
    tuple from a live run, a StepBlock (the same results, as columns) from a
    recording (traintop.engine.step_block)."""

    results: Sequence[StepResult]
    run: int = 0


@dataclass(frozen=True)
class Event:
    """An intervention or an answer to one, for the history and the panes.

    kind: "lr", "evaluate", "calibrate", "sample", "checkpoint", "fold",
    "stopped", "error", "note". `data` holds the figures (plain JSON values).
    """

    kind: str
    step: int
    text: str
    data: dict = field(default_factory=dict)
    run: int = 0


@dataclass(frozen=True)
class Status:
    """Where the source stands; sent on every change and about once a second."""

    step: int
    lr: float
    running: bool            # False while paused
    finished: bool           # reached the configured steps
    steps_per_sec: float
    stopped: str | None = None   # why training stopped (non-finite), if it did
    # A sweep sends one Status per run; `step` is that run's and
    # `steps_per_sec` the sweep's: sweep steps per second, each of which
    # advances every unfinished run by one (run-steps/s = that x runs).
    run: int = 0


@dataclass(frozen=True)
class Sweep:
    """Several runs side by side: said once, before the first RunStarted.

    Every later message carries `run`, the index into `labels` (sweep order);
    a source of one run never sends this, and its messages all say run 0."""

    labels: tuple[str, ...]   # "gain=5/3 batchnorm=off": the swept values only
    keys: tuple[str, ...]     # the swept config fields, e.g. ("gain", "batchnorm")
    # More runs joined (a folder's new recording): the runs already there keep
    # what they hold; their labels may change to say what differs now.
    grows: bool = False


Message = Sweep | RunStarted | Steps | Event | Status


@dataclass(frozen=True)
class Command:
    """What a viewer asks of a source.

    name: "pause", "resume", "step", "set_lr" (args lr), "scale_lr" (args
    factor), "restart" (args: config changes), "evaluate" (args splits),
    "sample" (args n), "calibrate" (args apply), "checkpoint" (args path),
    "quit". In a sweep every command but pause/resume/step/quit may carry
    args "run": the run's index, or None (absent) for every run.
    """

    name: str
    args: dict = field(default_factory=dict)


class Source(Protocol):
    """A source of messages; `send` is a no-op where commands make no sense.

    Optional, read by viewers with getattr: `read_only` (True: takes no
    commands), `accepts` (the Command names it answers; absent: all) and
    `position()` -> (head, tail) words for a status line (a replay's
    timeline, a follower's writer); absent for a live run.
    """

    def start(self) -> None: ...

    def poll(self, limit: int = 1000) -> list[Message]:
        """Messages that arrived since the last poll; never blocks."""
        ...

    def send(self, command: Command) -> None: ...

    def close(self) -> list[Message] | None:
        """Stop; returns the messages that arrived while stopping (a live
        child's last steps, which a recorder still wants), or None."""
        ...
