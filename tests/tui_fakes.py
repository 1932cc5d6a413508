"""Sources the app tests control: fixed messages in, commands recorded."""

from __future__ import annotations

import functools
import time

from pathlib import Path

from traintop.data.dataset import DEFAULT_DATA, build_dataset
from traintop.data.words import read_words
from traintop.engine.config import TrainConfig
from traintop.engine.feed import events
from traintop.engine.feed.messages import Command, Event, RunStarted, Status, Steps
from traintop.engine.training.threads import apply_threads
from traintop.engine.training.trainer import Trainer


class FakeSource:
    """Hands out queued messages; records every command it is sent."""

    def __init__(self, messages=(), read_only: bool = False):
        self.queue = list(messages)
        self.commands: list[Command] = []
        self.read_only = read_only
        self.started = False
        self.closed = False

    def start(self) -> None:
        self.started = True

    def poll(self, limit: int = 1000):
        out, self.queue = self.queue[:limit], self.queue[limit:]
        return out

    def send(self, command: Command) -> None:
        self.commands.append(command)

    def close(self) -> None:
        self.closed = True

    def push(self, *messages) -> None:
        self.queue.extend(messages)


SMALL_CONFIG = TrainConfig(n_hidden=30, steps=1000, stats_every=100, lr_decay_step=300)


def small_words(n: int = 400) -> list[str]:
    return read_words(DEFAULT_DATA)[:n]


def write_words(path: Path, n: int = 400) -> Path:
    path.write_text("\n".join(small_words(n)) + "\n")
    return path


def recorded_run(config: TrainConfig = SMALL_CONFIG, steps: int = 400) -> list:
    """The messages of a seeded in-process run, as a live source sends them:
    a run start, batches of steps, an lr change, an evaluation, samples,
    a calibration and fixed status lines (fixed rates keep snapshots stable).

    Trained once per (config, steps) in a test process and shared: the
    messages are frozen values, each caller gets its own list of them."""
    return list(_recorded_run(config, steps))


@functools.lru_cache(maxsize=None)
def _recorded_run(config: TrainConfig, steps: int) -> tuple:
    # One torch thread, as the live child uses: a tiny model on a shared
    # machine collapses with more (see traintop.engine.training.threads).
    apply_threads(1)
    dataset = build_dataset(small_words(), config.block_size, config.split_seed, source="small")
    trainer = Trainer(config, dataset)
    out: list = [RunStarted(trainer.info(), None)]
    half = steps // 2
    batch: list = []
    for _ in range(half):
        batch.append(trainer.step())
        if len(batch) == 50:
            out.append(Steps(tuple(batch)))
            batch = []
    out.append(Steps(tuple(batch))) if batch else None
    old = trainer.lr
    trainer.set_lr(old * 2)
    out.append(events.lr_changed(trainer.steps_done, old, trainer.lr))
    batch = []
    for _ in range(steps - half):
        batch.append(trainer.step())
        if len(batch) == 50:
            out.append(Steps(tuple(batch)))
            batch = []
    out.append(Steps(tuple(batch))) if batch else None
    out.append(events.evaluated(trainer.steps_done, trainer.evaluate(("train", "val"))))
    out.append(events.sampled(trainer.steps_done, trainer.sample(10)))
    out.append(events.calibrated(trainer.steps_done, trainer.calibrate(False)))
    out.append(Status(step=trainer.steps_done, lr=trainer.lr, running=False,
                      finished=trainer.finished, steps_per_sec=812.0))
    return tuple(out)


def async_test(fn):
    """Run an async test on a fresh event loop (no async plugin needed)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


async def until(pilot, condition, timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until `condition()` holds: waiting, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


def run_word(line: str) -> str:
    """The status line's state word (running, paused, finished, ...): the line
    may end with a health summary after it (`· health: 1 warn (tab 4)`, `· !1`)
    once a finding is made, which a run of a few seconds may or may not reach."""
    parts = line.split(" · ")
    while len(parts) > 1 and parts[-1].startswith(("health: ", "!")):
        parts.pop()
    return parts[-1]
