"""A live run in a spawned child process, seen through traintop.engine.feed.messages.

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
import signal
import time

from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Command, Event, Message, RunStarted, Status, Steps
from traintop.engine.live.child import child_main
from traintop.engine.live.frames import FrameReader
from traintop.engine.live.spec import SessionSpec

# The child sends a Status at least every CHILD_STATUS_SECONDS (live.runner) whatever it does
# (running, paused, finished), so this much silence from a live child means
# it is stuck: in a long command (evaluate on a big file) or hung for good.
# Said as a fact ("not responding for 8 s"), taken back when it speaks again.
HANG_SECONDS = 8.0
START_SECONDS = 60.0     # the same before its first message (imports, data, compile)
HURRY_SECONDS = 0.4      # a hurried close waits this long for the child's quit (~10 ms)


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
        start_resource_tracker()
        self._ctx = mp.get_context("spawn")
        self._process = None
        self._new_queues()
        self._watch = ChildWatch()
        self._said: list[Message] = []   # the session's own words for the next poll
        self._hurried = False

    def hurry(self) -> None:
        """The next close() waits HURRY_SECONDS for the child's quit, then
        kills it (SIGTERM waits in a stopped process): the terminal is gone
        and the whole ending has a deadline (tui/terminal_guard.py)."""
        self._hurried = True

    def _new_queues(self) -> None:
        self._commands = self._ctx.Queue()
        self._messages = self._ctx.Queue()
        self._reader = FrameReader(self._messages._reader)

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
        said, self._said = self._said, []
        out: list[Message] = self._reader.read(limit)   # never blocks: see frames.py
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
        if self._hurried:
            timeout = min(timeout, HURRY_SECONDS)
        last: list[Message] = []
        # Asked to end: its exit is no death (a recording would end "trainer died").
        self._watch.quitting = True
        if process.is_alive():
            try:
                self._commands.put(Command("quit"))
            except (OSError, ValueError):
                pass
            # The child may be blocked putting into a full pipe: keep draining.
            # One that never spoke is still starting (importing torch, reading
            # the data): it reads no command before it is built, and has
            # nothing to hand back, so it is not waited for.
            deadline = time.monotonic() + (timeout if self._watch.spoke else 0.0)
            while process.is_alive() and time.monotonic() < deadline:
                last += self.poll()
                process.join(0.02)
            last += self.poll()  # what it flushed on its way out
        if process.is_alive() and not self._hurried:
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


def start_resource_tracker() -> None:
    """multiprocessing's resource tracker, started deaf to SIGHUP.

    It unlinks the queues' semaphores that a process killed outright left
    behind, once every process sharing it is gone. A closed terminal sends
    SIGHUP to the whole foreground group: a tracker killed by it first would
    leave them in /dev/shm (it already ignores SIGINT and SIGTERM). It is
    spawned with SIGHUP blocked, and keeps it blocked; here a SIGHUP that
    comes meanwhile waits and is delivered after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        multiprocessing.resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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
