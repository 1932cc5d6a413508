"""The trainer child's loop (traintop.engine.live.child runs it in the
spawned process): step while running, batch results into Steps about every
STEPS_MESSAGE_SECONDS, answer Commands between steps. Nothing here imports Textual;
torch comes only with the trainer it is given.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import time
from collections import deque
from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.feed import events
from traintop.engine.feed.messages import Command, Event, Message, RunStarted, Status, Steps, Sweep

from traintop.engine.live.spec import SessionSpec

STEPS_MESSAGE_SECONDS = 0.05     # Steps batches: about 20 messages a second
CHILD_STATUS_SECONDS = 1.0     # a Status at least this often
COMMAND_SECONDS = 0.01   # look for commands at least this often while stepping
RATE_WINDOW = 1.0        # steps/s over the last second


def describe_error(exc: BaseException) -> str:
    """An exception as one line for a person (the viewer shows it, not a traceback)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""   # a traceback's last line shows this one
    if isinstance(exc, InputError):
        return text     # already one line written for a person
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runner:
    """The child's loop: step while running, answer commands between steps.

    It drives one Trainer or a SweepTrainer's runs (`trainer.trainers`): every
    message it sends names its run, a sweep's Sweep goes first, and a command
    with args "run" acts on that run (None or absent: on every run).
    """

    def __init__(self, trainer, spec: SessionSpec, commands, messages, parent: int | None = None,
                 on_idle=None):
        """`on_idle`: called each time the run stops stepping (paused,
        finished): the child starts a compile held for idle time there."""
        self.sweep = trainer if hasattr(trainer, "trainers") else None
        self.trainers = list(self.sweep.trainers) if self.sweep is not None else [trainer]
        self.trainer = self.trainers[0]
        self.spec = spec
        self.commands = commands
        self.messages = messages
        self.running = not spec.start_paused
        self.pending: dict[int, list] = {}    # run -> step results not yet sent
        self.ended: set[int] = set()          # runs whose end was said
        self.last_flush = time.monotonic()
        self.last_status = 0.0
        self.times: deque[float] = deque()   # when recent (sweep) steps finished
        self.quit = False
        self.parent = os.getppid() if parent is None else parent
        self.on_idle = on_idle

    @property
    def finished(self) -> bool:
        return all(t.finished for t in self.trainers)

    def targets(self, run: int | None) -> list[tuple[int, object]]:
        """(index, Trainer) of `run`, or of every run for None."""
        if run is None:
            return list(enumerate(self.trainers))
        run = int(run)
        if not 0 <= run < len(self.trainers):
            raise ValueError(f"no run {run} (this session has {len(self.trainers)})")
        return [(run, self.trainers[run])]

    # ----- the sweep's per-run controls ----------------------------------------
    # Through the SweepTrainer: a restart rebuilds a run's model, and the
    # batched step must regroup onto the new parameters.
    def _set_lr(self, k: int, lr: float) -> None:
        if self.sweep is not None:
            self.sweep.set_lr(lr, run=k)
        else:
            self.trainers[k].set_lr(lr)

    def _restart(self, k: int, changes: dict) -> str:
        if self.sweep is not None:
            return self.sweep.restart(run=k, **changes)[0]
        return self.trainers[k].restart(**changes)

    # ----- output ------------------------------------------------------------
    def fatal(self, exc: BaseException) -> None:
        """The loop raised: send what was done and the error's last line, then
        wait (briefly) for the pipe to take them before the process ends."""
        try:
            self.put(Event("error", self.trainer.steps_done, describe_error(exc), {"fatal": True}))
            self.messages.close()
            feeder = getattr(self.messages, "_thread", None)   # no public join with a timeout
            if feeder is not None:
                feeder.join(2.0)
            self.messages.cancel_join_thread()
        except Exception:  # noqa: BLE001 - the viewer may be gone; the exit code still tells
            pass

    def flush(self) -> None:
        for run, rows in self.pending.items():
            if rows:
                self.messages.put(Steps(tuple(rows), run=run))
        self.pending = {}
        self.last_flush = time.monotonic()

    def put(self, message: Message) -> None:
        self.flush()  # keep order: the steps before an event arrive before it
        self.messages.put(message)

    def put_run(self, run: int, message: Message) -> None:
        self.put(dataclasses.replace(message, run=run) if run else message)

    def rate(self, now: float) -> float:
        while self.times and now - self.times[0] > RATE_WINDOW:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or now - self.last_status >= CHILD_STATUS_SECONDS):
            return
        rate = self.rate(now)
        for run, t in enumerate(self.trainers):
            stopped = t.stopped.message() if t.stopped is not None else None
            self.put(Status(step=t.steps_done, lr=t.lr, running=self.running and not t.finished,
                            finished=t.steps_done >= t.config.steps, steps_per_sec=rate,
                            stopped=stopped, run=run))
        self.last_status = now

    # ----- loop --------------------------------------------------------------
    def serve(self) -> None:
        if self.sweep is not None:
            self.put(Sweep(tuple(self.sweep.labels), tuple(self.spec.sweep[0].changes)))
        for run, t in enumerate(self.trainers):
            self.put(RunStarted(t.info(), self.spec.why, run=run))
        self.status(force=True)
        last_check = 0.0
        was_stepping = None
        while not self.quit:
            now = time.monotonic()
            stepping = self.running and not self.finished
            if stepping != was_stepping:
                was_stepping = stepping
                if not stepping and self.on_idle is not None:
                    self.on_idle()
            if stepping:
                if now - last_check >= COMMAND_SECONDS:
                    self.drain()
                    last_check = now
                    if self.quit or not (self.running and not self.finished):
                        continue
                self.one_step()
                if self.finished:
                    self.status(force=True)
                elif time.monotonic() - self.last_flush >= STEPS_MESSAGE_SECONDS:
                    self.flush()
                    self.status()
            else:
                self.flush()
                self.status()
                self.wait_for_command(0.1)
        self.flush()

    def one_step(self) -> None:
        if self.sweep is not None:
            results = self.sweep.step()
        else:
            results = [self.trainer.step()]
        for run, result in enumerate(results):
            if result is not None:
                self.pending.setdefault(run, []).append(result)
        self.times.append(time.monotonic())
        for run, t in enumerate(self.trainers):
            if getattr(t, "lr_events_unsent", None):   # the decay, after the step that made it
                self.send_lr_events(run, t)
            if t.finished and run not in self.ended:
                self.finish(run)

    def send_lr_events(self, run: int, trainer) -> None:
        """The trainer's new lr changes (a key's, the decay's), each an event."""
        for event in trainer.take_lr_events():
            self.put_run(run, event)

    def finish(self, run: int) -> None:
        """Say that `run` reached its end or stopped (a sweep's others go on)."""
        self.ended.add(run)
        t = self.trainers[run]
        if t.stopped is not None:
            self.put_run(run, events.stopped(t.stopped))
        else:
            self.put_run(run, Event("note", t.steps_done, f"finished {t.steps_done:,} steps"))

    def orphaned(self) -> bool:
        """The viewer died without a quit (SSH hangup, kill): stop too."""
        if os.getppid() == self.parent:
            return False
        # Nobody reads the pipe any more: exit without waiting to flush it.
        self.messages.cancel_join_thread()
        return True

    def drain(self) -> None:
        while self._take(self.commands.get_nowait):
            pass

    def wait_for_command(self, timeout: float) -> None:
        if self._take(lambda: self.commands.get(timeout=timeout)):
            self.drain()

    def _take(self, get) -> bool:
        """Handle one command from `get`; False when there is none or we must quit."""
        if self.quit or self.orphaned():
            self.quit = True
            return False
        try:
            command = get()
        except queue.Empty:
            return False
        except (EOFError, OSError):  # the viewer's end of the pipe is gone
            self.quit = True
            return False
        self.handle(command)
        return True

    def handle(self, command: Command) -> None:
        action = getattr(self, f"do_{command.name}", None)
        step = self.trainer.steps_done
        if action is None:
            self.put(Event("error", step, f"unknown command {command.name!r}"))
            return
        try:
            action(**command.args)
        except Exception as exc:  # noqa: BLE001 - the viewer must survive engine errors
            self.put(Event("error", step, f"{command.name}: {describe_error(exc)}"))
        self.status(force=True)

    # ----- commands ----------------------------------------------------------
    def do_quit(self) -> None:
        self.quit = True

    def do_pause(self) -> None:
        self.running = False

    def do_resume(self) -> None:
        self.running = True

    def do_step(self) -> None:
        if self.finished:
            return
        self.running = False
        self.one_step()
        self.flush()

    def do_set_lr(self, lr: float, run: int | None = None) -> None:
        for k, t in self.targets(run):
            self._set_lr(k, float(lr))
            self.send_lr_events(k, t)

    def do_scale_lr(self, factor: float, run: int | None = None) -> None:
        for k, t in self.targets(run):
            self._set_lr(k, t.lr * float(factor))
            self.send_lr_events(k, t)

    def do_restart(self, run: int | None = None, **changes) -> None:
        for k, t in self.targets(run):
            why = self._restart(k, changes)
            self.ended.discard(k)
            self.put(RunStarted(t.info(), why, run=k))
        self.times.clear()

    def do_evaluate(self, splits=("train", "val"), run: int | None = None) -> None:
        for k, t in self.targets(run):
            self.put_run(k, events.evaluated(t.steps_done, t.evaluate(tuple(splits))))

    def do_sample(self, n: int = 10, run: int | None = None) -> None:
        for k, t in self.targets(run):
            self.put_run(k, events.sampled(t.steps_done, t.sample(int(n))))

    def do_calibrate(self, apply: bool = False, run: int | None = None) -> None:
        for k, t in self.targets(run):
            if apply:   # apply, and re-evaluate on the running and the exact statistics
                cal, running, exact = t.apply_calibration("val")
                self.put_run(k, events.calibrated(t.steps_done, cal, ("val", running, exact)))
            else:
                self.put_run(k, events.calibrated(t.steps_done, t.calibrate(bool(apply))))

    def do_fold(self, run: int | None = None) -> None:
        for k, t in self.targets(run):
            self.put_run(k, events.folded(t.steps_done, t.check_fold("val"), "val"))

    def do_checkpoint(self, path: str | None = None, run: int | None = None) -> None:
        from traintop.engine.training.checkpoint import save_checkpoint

        for k, t in self.targets(run):
            # A sweep's runs each get a file: `-run2` names which.
            tag = f"-run{k}" if self.sweep is not None else ""
            if path:
                target = Path(path)
                if tag:
                    target = target.with_name(f"{target.stem}{tag}{target.suffix}")
            else:
                target = Path(self.spec.checkpoint_dir) / f"traintop{tag}-step{t.steps_done}.ckpt"
            self.put_run(k, events.checkpointed(t.steps_done, save_checkpoint(t, target)))
