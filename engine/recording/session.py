"""A live run in a spawned child process, seen through traintop.engine.recording.feed.

The training step and a terminal UI are both pure-Python work, so a trainer
in a thread of the UI's process loses much of its speed to the GIL. The
child owns the Trainer, steps it with one torch thread, batches results into
a Steps message about every 50 ms and answers Commands between steps.
Nothing here imports Textual.

Faults: every poll checks the child (ChildWatch). A death (a kill, the
out-of-memory killer, an exception in its loop) or a silence while it should
be talking becomes an Event of kind "trainer" the viewer shows at once; a
`restart` command after a death starts a fresh child. The child ignores
SIGHUP and SIGINT sent to the whole process group: the viewer ends it (or it
notices the viewer is gone and ends itself).

Trap: a process started after Textual has replaced sys.stderr (its fileno()
is -1) fails with "bad value(s) in fds_to_keep" when the resource tracker is
not yet running, so the constructor starts the tracker and creates the
queues; build a LiveSession before App.run()/run_test().
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import multiprocessing.resource_tracker
import queue
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ...data.errors import InputError
from ..config import DEFAULT_ENGINE, TrainConfig
from . import events
from .feed import Command, Event, Message, RunStarted, Status, Steps, Sweep

FLUSH_SECONDS = 0.05     # Steps batches: about 20 messages a second
STATUS_SECONDS = 1.0     # a Status at least this often
COMMAND_SECONDS = 0.01   # look for commands at least this often while stepping
RATE_WINDOW = 1.0        # steps/s over the last second
# The child sends a Status at least every STATUS_SECONDS whatever it does
# (running, paused, finished), so this much silence from a live child means
# it is stuck: in a long command (evaluate on a big file) or hung for good.
# Said as a fact ("not responding for 8 s"), taken back when it speaks again.
HANG_SECONDS = 8.0
START_SECONDS = 60.0     # the same before its first message (imports, data, compile)


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
    why: str | None = None           # the first RunStarted's why (a fresh trainer's reason)
    # The runs of a sweep (traintop.engine.sweep.spec.SweepRun, from --sweep);
    # empty for a single run. `config` is then the sweep's base config.
    sweep: tuple = ()


class LiveSession:
    """Source of a live run: start() spawns the child, close() ends it."""

    read_only = False

    def __init__(self, spec: SessionSpec, hang_seconds: float = HANG_SECONDS,
                 start_seconds: float = START_SECONDS, clock=time.monotonic):
        self.spec = spec
        self.hang_seconds = hang_seconds
        self.start_seconds = start_seconds
        self._clock = clock
        # Before any App.run(): see the module docstring.
        multiprocessing.resource_tracker.ensure_running()
        self._ctx = mp.get_context("spawn")
        self._process = None
        self._new_queues()
        self._watch = ChildWatch()
        self._said: list[Message] = []   # the session's own words for the next poll

    def _new_queues(self) -> None:
        self._commands = self._ctx.Queue()
        self._messages = self._ctx.Queue()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def dead(self) -> bool:
        """The child died on its own (a kill, a crash) and a death was reported."""
        return self._watch.died

    def start(self) -> None:
        if self._process is not None:
            return
        self._process = self._ctx.Process(target=child_main, name="traintop-trainer",
                                          args=(self.spec, self._commands, self._messages,
                                                os.getpid()),
                                          daemon=True)
        self._process.start()
        self._watch = ChildWatch(self._clock(), self.hang_seconds, self.start_seconds)

    def poll(self, limit: int = 1000) -> list[Message]:
        process = self._process
        # Taken before draining: once it is dead, everything it wrote is in the pipe.
        gone = process is not None and not process.is_alive()
        if gone and not self._watch.died:
            # A child killed in the middle of a put leaves half a message;
            # a blocking read of it would wait forever (we hold the write end too).
            try:
                os.set_blocking(self._messages._reader.fileno(), False)
            except (AttributeError, OSError, ValueError):
                pass
        said, self._said = self._said, []
        out: list[Message] = []
        while len(out) < limit:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # queue closed under us, or half a message
                break
        if process is not None:
            out += self._watch.check(out, process.exitcode if gone else None, self._clock())
        return said + out

    def send(self, command: Command) -> None:
        if self.is_alive():
            self._commands.put(command)
        elif command.name == "restart" and self._watch.died:
            self._fresh_child(command.args)

    def _fresh_child(self, changes: dict) -> None:
        """`r` after a death: a new child on the dead run's config (and the key's
        changes), from step 0; the viewer keeps the history it has."""
        config = self.spec.config
        changes = {k: v for k, v in changes.items() if k != "run"}
        if self.spec.sweep:
            changes = {}    # a fresh sweep: every run on its own config again
        elif self._watch.config is not None:
            config = TrainConfig.from_dict(self._watch.config)
        config = dataclasses.replace(config, **changes)
        step = self._watch.step
        self.close()
        self._new_queues()
        self.spec = dataclasses.replace(self.spec, config=config, resume=None,
                                        start_paused=False,
                                        why="restart: a fresh trainer after the last one died")
        self.start()
        # Said at once: its first message comes only once it has loaded torch.
        self._said.append(Event("trainer", step, "starting a fresh trainer…",
                                {"state": "starting"}))

    def close(self, timeout: float = 3.0) -> list[Message]:
        """Ask the child to quit, then insist; never leaves an orphan. Returns
        what the child sent after the viewer's last poll (its last steps)."""
        process = self._process
        if process is None:
            return []
        last: list[Message] = []
        # Asked to end: its exit is no death (a recording would end "trainer died").
        self._watch.quitting = True
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


def death_text(exitcode: int | None, last_error: str | None) -> str:
    """Why the child is gone, in words: `trainer died: killed by signal 9 (out of memory?)`."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = None
        # SIGKILL is what the kernel's out-of-memory killer sends.
        why = "out of memory?" if number == signal.SIGKILL else name
        return f"trainer died: killed by signal {number}" + (f" ({why})" if why else "")
    if last_error:
        return f"trainer died: {last_error}"
    return f"trainer died: exited with code {exitcode}"


class ChildWatch:
    """Says when the child died or went silent, as Events of kind "trainer"
    (data "state": "died", "hung" or "alive") that RunState shows in the status
    line and a recording keeps. Pure bookkeeping, fed by LiveSession.poll."""

    def __init__(self, started: float | None = None, hang_seconds: float = HANG_SECONDS,
                 start_seconds: float = START_SECONDS):
        self.hang_seconds = hang_seconds
        self.start_seconds = start_seconds
        self.heard = started            # when the child last said anything
        self.spoke = False              # it has sent its first message
        self.silent_said = 0            # whole seconds of silence last reported
        self.died = False
        self.quitting = False           # the viewer asked it to quit: an exit is expected
        self.step = 0
        self.config: dict | None = None   # the running config (for a fresh child)
        self.last_error: str | None = None   # the child's last fatal error line

    def check(self, messages: list[Message], exitcode: int | None, now: float) -> list[Event]:
        out: list[Event] = []
        for m in messages:
            if isinstance(m, RunStarted):
                self.config = dict(m.info.config)
                self.step = 0
            elif isinstance(m, Steps) and m.results:
                self.step = m.results[-1].step
            elif isinstance(m, Status):
                self.step = m.step
            elif isinstance(m, Event) and m.kind == "error" and m.data.get("fatal"):
                self.last_error = m.text
        if self.died or self.heard is None:
            return out
        if messages:
            self.spoke = True
            if self.silent_said:
                out.append(Event("trainer", self.step,
                                 f"trainer responding again after {now - self.heard:.0f} s",
                                 {"state": "alive"}))
                self.silent_said = 0
            self.heard = now
        if exitcode is not None and self.quitting:
            return out
        if exitcode is not None:
            self.died = True
            data = {"state": "died", "exitcode": exitcode}
            if exitcode < 0:
                data["signal"] = -exitcode
            out.append(Event("trainer", self.step, death_text(exitcode, self.last_error), data))
            return out
        silent = now - self.heard
        limit = self.hang_limit
        if silent >= limit and int(silent) > self.silent_said:
            self.silent_said = int(silent)
            out.append(Event("trainer", self.step,
                             f"trainer not responding for {int(silent)} s",
                             {"state": "hung", "silent_s": int(silent)}))
        return out

    @property
    def hang_limit(self) -> float:
        return self.hang_seconds if self.spoke else self.start_seconds


# ----- the child --------------------------------------------------------------

def child_main(spec: SessionSpec, commands, messages, parent: int | None = None) -> None:
    """Entry point of the spawned process: build, then serve until quit.

    `parent` is the viewer's pid, taken before the spawn: if the viewer dies
    while the child is still starting, getppid() already names init."""
    # A hangup or Ctrl-C reaches the whole process group: the viewer decides
    # when this child ends (it asks, or it dies and orphaned() notices).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer = _build(spec)
    except Exception as exc:  # noqa: BLE001 - every failure goes to the viewer
        messages.put(Event("error", 0, _describe(exc)))
        _wait_for_quit(commands, os.getppid() if parent is None else parent)
        messages.cancel_join_thread()   # the viewer may be gone: do not wait to flush
        return
    runner = Runner(trainer, spec, commands, messages, parent)
    code = 0
    try:
        runner.serve()
    except Exception as exc:  # noqa: BLE001 - said to the viewer, not as a traceback on its screen
        runner.fatal(exc)
        code = 1
    from ..steps.compiled import compiling, exit_now_if_compiling

    if compiling():   # the "auto" engine's compile would abort a normal exit
        messages.close()
        messages.join_thread()   # the viewer gets every last message first
        exit_now_if_compiling(code)
    if code:
        raise SystemExit(code) from None


def _build(spec: SessionSpec):
    from ..training.build import build_trainer   # torch: only in the child

    if spec.sweep:
        return _build_sweep(spec)
    return build_trainer(spec.config, spec.data, spec.device, spec.engine, spec.threads,
                         spec.resume)


def _build_sweep(spec: SessionSpec):
    from ...data.dataset import load_dataset
    from ..sweep.trainer import SweepTrainer
    from ..training.threads import apply_threads, choose_threads

    config = spec.config
    apply_threads(spec.threads or choose_threads(config))
    dataset = load_dataset(spec.data, config.block_size, config.split_seed)
    return SweepTrainer(spec.sweep, dataset, device=spec.device, engine=spec.engine)


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

    def __init__(self, trainer, spec: SessionSpec, commands, messages, parent: int | None = None):
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
    # One place to switch to SweepTrainer.set_lr/restart(run=...) once the
    # batched sweep step lands (its stacked parameters must hear of a restart).
    def _set_lr(self, k: int, lr: float) -> None:
        self.trainers[k].set_lr(lr)

    def _restart(self, k: int, changes: dict) -> str:
        return self.trainers[k].restart(**changes)

    # ----- output ------------------------------------------------------------
    def fatal(self, exc: BaseException) -> None:
        """The loop raised: send what was done and the error's last line, then
        wait (briefly) for the pipe to take them before the process ends."""
        try:
            self.put(Event("error", self.trainer.steps_done, _describe(exc), {"fatal": True}))
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
        if not (force or now - self.last_status >= STATUS_SECONDS):
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
        while not self.quit:
            now = time.monotonic()
            stepping = self.running and not self.finished
            if stepping:
                if now - last_check >= COMMAND_SECONDS:
                    self.drain()
                    last_check = now
                    if self.quit or not (self.running and not self.finished):
                        continue
                self.one_step()
                if self.finished:
                    self.status(force=True)
                elif time.monotonic() - self.last_flush >= FLUSH_SECONDS:
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
            if t.finished and run not in self.ended:
                self.finish(run)

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
        if self.finished:
            return
        self.running = False
        self.one_step()
        self.flush()

    def do_set_lr(self, lr: float, run: int | None = None) -> None:
        for k, t in self.targets(run):
            old = t.lr
            self._set_lr(k, float(lr))
            self.put_run(k, events.lr_changed(t.steps_done, old, t.lr))

    def do_scale_lr(self, factor: float, run: int | None = None) -> None:
        for k, t in self.targets(run):
            old = t.lr
            self._set_lr(k, t.lr * float(factor))
            self.put_run(k, events.lr_changed(t.steps_done, old, t.lr))

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
            self.put_run(k, events.calibrated(t.steps_done, t.calibrate(bool(apply))))

    def do_checkpoint(self, path: str | None = None, run: int | None = None) -> None:
        from ..training.checkpoint import save_checkpoint

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
