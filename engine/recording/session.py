"""A live run in a spawned child process, seen through traintop.engine.recording.feed.

The training step and a terminal UI are both pure-Python work, so a trainer
in a thread of the UI's process loses much of its speed to the GIL. The
child owns the Trainer, steps it with one torch thread, batches results into
a Steps message about every 50 ms and answers Commands between steps.
Nothing here imports Textual.

Trap: a process started after Textual has replaced sys.stderr (its fileno()
is -1) fails with "bad value(s) in fds_to_keep" when the resource tracker is
not yet running, so the constructor starts the tracker and creates the
queues; build a LiveSession before App.run()/run_test().
"""

from __future__ import annotations

import multiprocessing as mp
import os
import multiprocessing.resource_tracker
import queue
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_ENGINE, TrainConfig
from . import events
from .feed import Command, Event, Message, RunStarted, Status, Steps

FLUSH_SECONDS = 0.05     # Steps batches: about 20 messages a second
STATUS_SECONDS = 1.0     # a Status at least this often
COMMAND_SECONDS = 0.01   # look for commands at least this often while stepping
RATE_WINDOW = 1.0        # steps/s over the last second


@dataclass(frozen=True)
class SessionSpec:
    """Everything the child needs to build its trainer (it pickles)."""

    config: TrainConfig
    data: str | None = None          # word file; None = embedded names
    device: str = "cpu"
    resume: str | None = None        # checkpoint to continue
    threads: int | None = None       # None: traintop.engine.training.threads.choose_threads
    checkpoint_dir: str = "."        # where `checkpoint` without a path writes
    start_paused: bool = False
    engine: str = DEFAULT_ENGINE     # Trainer engine (traintop.engine.config.ENGINES)


class LiveSession:
    """Source of a live run: start() spawns the child, close() ends it."""

    read_only = False

    def __init__(self, spec: SessionSpec):
        self.spec = spec
        # Before any App.run(): see the module docstring.
        multiprocessing.resource_tracker.ensure_running()
        self._ctx = mp.get_context("spawn")
        self._commands = self._ctx.Queue()
        self._messages = self._ctx.Queue()
        self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        if self._process is not None:
            return
        self._process = self._ctx.Process(target=child_main, name="traintop-trainer",
                                          args=(self.spec, self._commands, self._messages,
                                                os.getpid()),
                                          daemon=True)
        self._process.start()

    def poll(self, limit: int = 1000) -> list[Message]:
        out: list[Message] = []
        while len(out) < limit:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # queue closed under us
                break
        return out

    def send(self, command: Command) -> None:
        if self.is_alive():
            self._commands.put(command)

    def close(self, timeout: float = 3.0) -> list[Message]:
        """Ask the child to quit, then insist; never leaves an orphan. Returns
        what the child sent after the viewer's last poll (its last steps)."""
        process = self._process
        if process is None:
            return []
        last: list[Message] = []
        if process.is_alive():
            try:
                self._commands.put(Command("quit"))
            except (OSError, ValueError):
                pass
            # The child may be blocked putting into a full pipe: keep draining.
            deadline = time.monotonic() + timeout
            while process.is_alive() and time.monotonic() < deadline:
                last += self.poll()
                process.join(0.02)
            last += self.poll()  # what it flushed on its way out
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        for q in (self._commands, self._messages):
            q.cancel_join_thread()
            q.close()
        self._process = None
        return last


# ----- the child --------------------------------------------------------------

def child_main(spec: SessionSpec, commands, messages, parent: int | None = None) -> None:
    """Entry point of the spawned process: build, then serve until quit.

    `parent` is the viewer's pid, taken before the spawn: if the viewer dies
    while the child is still starting, getppid() already names init."""
    try:
        trainer = _build(spec)
    except Exception as exc:  # noqa: BLE001 - every failure goes to the viewer
        messages.put(Event("error", 0, _describe(exc)))
        _wait_for_quit(commands, os.getppid() if parent is None else parent)
        messages.cancel_join_thread()   # the viewer may be gone: do not wait to flush
        return
    Runner(trainer, spec, commands, messages, parent).serve()
    from ..steps.compiled import compiling, exit_now_if_compiling

    if compiling():   # the "auto" engine's compile would abort a normal exit
        messages.close()
        messages.join_thread()   # the viewer gets every last message first
        exit_now_if_compiling(0)


def _build(spec: SessionSpec):
    from ..training.build import build_trainer   # torch: only in the child

    return build_trainer(spec.config, spec.data, spec.device, spec.engine, spec.threads,
                         spec.resume)


def _wait_for_quit(commands, parent: int) -> None:
    while os.getppid() == parent:
        try:
            if commands.get(timeout=0.5).name == "quit":
                return
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runner:
    """The child's loop: step while running, answer commands between steps."""

    def __init__(self, trainer, spec: SessionSpec, commands, messages, parent: int | None = None):
        self.trainer = trainer
        self.spec = spec
        self.commands = commands
        self.messages = messages
        self.running = not spec.start_paused
        self.pending: list = []
        self.last_flush = time.monotonic()
        self.last_status = 0.0
        self.times: deque[float] = deque()   # when recent steps finished
        self.quit = False
        self.parent = os.getppid() if parent is None else parent

    # ----- output ------------------------------------------------------------
    def flush(self) -> None:
        if self.pending:
            self.messages.put(Steps(tuple(self.pending)))
            self.pending = []
        self.last_flush = time.monotonic()

    def put(self, message: Message) -> None:
        self.flush()  # keep order: the steps before an event arrive before it
        self.messages.put(message)

    def rate(self, now: float) -> float:
        while self.times and now - self.times[0] > RATE_WINDOW:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def status(self, force: bool = False) -> None:
        now = time.monotonic()
        t = self.trainer
        stopped = t.stopped.message() if t.stopped is not None else None
        status = Status(step=t.steps_done, lr=t.lr, running=self.running and not t.finished,
                        finished=t.steps_done >= t.config.steps, steps_per_sec=self.rate(now),
                        stopped=stopped)
        if force or now - self.last_status >= STATUS_SECONDS:
            self.put(status)
            self.last_status = now

    # ----- loop --------------------------------------------------------------
    def serve(self) -> None:
        self.put(RunStarted(self.trainer.info(), None))
        self.status(force=True)
        last_check = 0.0
        while not self.quit:
            now = time.monotonic()
            stepping = self.running and not self.trainer.finished
            if stepping:
                if now - last_check >= COMMAND_SECONDS:
                    self.drain()
                    last_check = now
                    if self.quit or not (self.running and not self.trainer.finished):
                        continue
                self.one_step()
                if self.trainer.finished:
                    self.finish()
                elif time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                    self.flush()
                    self.status()
            else:
                self.flush()
                self.status()
                self.wait_for_command(0.1)
        self.flush()

    def one_step(self) -> None:
        result = self.trainer.step()
        self.pending.append(result)
        self.times.append(time.monotonic())

    def finish(self) -> None:
        t = self.trainer
        if t.stopped is not None:
            self.put(events.stopped(t.stopped))
        else:
            self.put(Event("note", t.steps_done, f"finished {t.steps_done:,} steps"))
        self.status(force=True)

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
            self.put(Event("error", step, f"{command.name}: {_describe(exc)}"))
        self.status(force=True)

    # ----- commands ----------------------------------------------------------
    def do_quit(self) -> None:
        self.quit = True

    def do_pause(self) -> None:
        self.running = False

    def do_resume(self) -> None:
        self.running = True

    def do_step(self) -> None:
        if self.trainer.finished:
            return
        self.running = False
        self.one_step()
        if self.trainer.finished:
            self.finish()
        self.flush()

    def do_set_lr(self, lr: float) -> None:
        t = self.trainer
        old = t.lr
        t.set_lr(float(lr))
        self.put(events.lr_changed(t.steps_done, old, t.lr))

    def do_scale_lr(self, factor: float) -> None:
        self.do_set_lr(self.trainer.lr * float(factor))

    def do_restart(self, **changes) -> None:
        t = self.trainer
        why = t.restart(**changes)
        self.times.clear()
        self.put(RunStarted(t.info(), why))

    def do_evaluate(self, splits=("train", "val")) -> None:
        t = self.trainer
        self.put(events.evaluated(t.steps_done, t.evaluate(tuple(splits))))

    def do_sample(self, n: int = 10) -> None:
        t = self.trainer
        self.put(events.sampled(t.steps_done, t.sample(int(n))))

    def do_calibrate(self, apply: bool = False) -> None:
        t = self.trainer
        self.put(events.calibrated(t.steps_done, t.calibrate(bool(apply))))

    def do_checkpoint(self, path: str | None = None) -> None:
        from ..training.checkpoint import save_checkpoint

        t = self.trainer
        target = Path(path) if path else Path(self.spec.checkpoint_dir) / \
            f"traintop-step{t.steps_done}.ckpt"
        self.put(events.checkpointed(t.steps_done, save_checkpoint(t, target)))

