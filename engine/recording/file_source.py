"""Sources (traintop.engine.recording.feed) that read a recording: replay a finished one, follow a live one.

ReplaySource delivers a recorded run up to a cursor that moves through its
snapshots (next/previous, home/end, play at a speed in steps per second).
Moving back emits Event("rewind") and then the run again from its first
message: a viewer clears what it holds on "rewind" and rebuilds, as it does
for a live run, so every pane works the same from a file.

FollowSource reads a file another process is still writing, like
`tail -F`: it waits for the file to appear, reads whole lines as they come,
starts over when the writer truncates, replaces or rewrites the file, and
says when the writer has gone quiet and when it came back.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from ...data.errors import InputError
from .feed import Command, Event, Message, RunStarted, Status, Steps
from .stream import Inflater, LineDecoder, is_gzip, load

PLAY_SECONDS = 30.0   # default play speed runs the whole recording in about this long
PLAY_GRAIN = 10       # steps per delivered batch: how finely play advances


def _split_at_snapshots(messages) -> list[Message]:
    """Recorded messages without Status, each Steps cut after every snapshot
    (so the cursor can stop exactly on one) and into PLAY_GRAIN-step pieces."""
    out: list[Message] = []
    for m in messages:
        if isinstance(m, Status):
            continue    # the replay reports its own position instead
        if not isinstance(m, Steps):
            out.append(m)
            continue
        batch = []
        for r in m.results:
            batch.append(r)
            if r.stats is not None or len(batch) == PLAY_GRAIN:
                out.append(Steps(tuple(batch)))
                batch = []
        if batch:
            out.append(Steps(tuple(batch)))
    return out


def _step_of(m: Message) -> int:
    if isinstance(m, Steps):
        return m.results[0].step
    if isinstance(m, Event):
        return m.step
    return 0


class ReplaySource:
    """A finished recording, delivered up to a cursor on its timeline."""

    # The commands it answers: the timeline's. A viewer tells the user the
    # others (lr, restart, ...) cannot change a recorded run.
    accepts = frozenset({"pause", "resume", "step", "seek", "speed"})

    def __init__(self, path: str | Path, speed: float | None = None, at_end: bool = True,
                 clock=time.monotonic):
        self.path = Path(path)
        self._clock = clock
        recording = load(self.path)
        self.meta = recording.meta
        self.partial_tail = recording.partial_tail
        self.items = _split_at_snapshots(recording.messages)
        # marks[k]: how many items bring a viewer to snapshot k.
        self.marks = [i + 1 for i, m in enumerate(self.items)
                      if isinstance(m, Steps) and m.results[-1].stats is not None]
        self.snapshot_steps = [self.items[i - 1].results[-1].step for i in self.marks]
        last_step = max((_step_of(m) for m in self.items), default=0)
        self.speed = speed or max(1.0, last_step / PLAY_SECONDS)   # steps per second
        self.pos = 0               # items delivered
        self.target = len(self.items) if at_end else (self.marks[0] if self.marks else 0)
        self.playing = False
        self._play_from: tuple[float, float] | None = None   # (clock, step) when play began
        self._rewind = False
        self._status_sent: Status | None = None

    # ----- the timeline --------------------------------------------------------
    @property
    def cursor(self) -> int:
        """Index of the snapshot the target shows (-1: before the first)."""
        return sum(1 for m in self.marks if m <= self.target) - 1

    @property
    def step(self) -> int:
        """Step of the last item the target includes."""
        for m in reversed(self.items[:self.target]):
            if isinstance(m, Steps):
                return m.results[-1].step
        return 0

    def seek(self, index: int) -> None:
        """Go to snapshot `index` (clamped); past the last means the very end."""
        self.pause()
        if not self.marks or index >= len(self.marks):
            self._go(len(self.items))
        else:
            self._go(self.marks[max(0, index)])

    def next(self) -> None:
        self.seek(self.cursor + 1)

    def previous(self) -> None:
        k = self.cursor
        if k >= 0 and self.target > self.marks[k]:
            self.seek(k)       # past the snapshot shown (at the end): back onto it
        else:
            self.seek(max(0, k - 1))

    def home(self) -> None:
        self.seek(0)

    def end(self) -> None:
        self.seek(len(self.marks))

    def play(self, speed: float | None = None) -> None:
        if speed is not None:
            if not speed > 0:
                raise InputError(f"replay speed: must be > 0 steps/s, got {speed}")
            self.speed = speed
        if self.target >= len(self.items):
            self._go(self.marks[0] if self.marks else 0)   # play from the start again
        self.playing = True
        self._play_from = (self._clock(), float(self.step))

    def pause(self) -> None:
        self.playing = False
        self._play_from = None

    def _go(self, target: int) -> None:
        target = max(0, min(len(self.items), target))
        if target < self.pos:
            self._rewind = True
        self.target = target

    def _advance_play(self) -> None:
        started, from_step = self._play_from
        upto = from_step + (self._clock() - started) * self.speed
        target = self.target
        while target < len(self.items) and _step_of(self.items[target]) <= upto:
            target += 1
        self.target = target
        if target >= len(self.items):
            self.pause()

    # ----- Source --------------------------------------------------------------
    def start(self) -> None:
        pass

    def poll(self, limit: int = 1000) -> list[Message]:
        if self.playing:
            self._advance_play()
        out: list[Message] = []
        if self._rewind:
            self._rewind = False
            self.pos = 0
            out.append(Event("rewind", self.step, f"replay from the start to step {self.step:,}"))
        end = min(self.target, self.pos + max(1, limit - len(out) - 1))
        out += self.items[self.pos:end]
        self.pos = end
        status = Status(step=self.step, lr=self._lr(), running=self.playing,
                        finished=self.target >= len(self.items), steps_per_sec=self.speed)
        if status != self._status_sent and self.pos == self.target:
            out.append(status)
            self._status_sent = status
        return out

    def position(self) -> tuple[str, str]:
        """Where the timeline stands, for a viewer's status line: (head, tail)."""
        head = (f"replay · snapshot {self.cursor + 1}/{len(self.marks)}" if self.marks
                else "replay · no stats snapshots")
        if self.playing:
            tail = f"playing {self.speed:,.4g} steps/s"
        elif self.target >= len(self.items):
            tail = f"end of recording · plays at {self.speed:,.4g} steps/s"
        else:
            tail = f"paused · plays at {self.speed:,.4g} steps/s"
        return head, tail

    def _lr(self) -> float:
        for m in reversed(self.items[:self.target]):
            if isinstance(m, Steps):
                return m.results[-1].lr
        return 0.0

    def send(self, command: Command) -> None:
        name, args = command.name, command.args
        if name == "pause":
            self.pause()
        elif name == "resume":
            self.play(args.get("speed"))
        elif name == "step":
            (self.previous if args.get("n", 1) < 0 else self.next)()
        elif name == "seek":
            where = args.get("index", "end")
            {"home": self.home, "end": self.end}.get(where, lambda: self.seek(int(where)))()
        elif name == "speed":
            speed = float(args["steps_per_sec"])
            if not speed > 0:
                raise InputError(f"replay speed: must be > 0 steps/s, got {speed}")
            self.speed = speed
            if self.playing:
                self.play()

    def close(self) -> None:
        self.pause()


class FollowSource:
    """A recording another process is writing, read as it grows."""

    read_only = True      # the writer is another process: it takes no commands

    CHUNK = 1 << 20       # bytes read per poll at most
    PREFIX = 256          # leading bytes compared to notice a rewritten file

    def __init__(self, path: str | Path, quiet_after: float = 10.0, clock=time.monotonic):
        self.path = Path(path)
        self.quiet_after = quiet_after
        self._clock = clock
        self._file = None
        self._queue: deque[Message] = deque()
        self._waiting_said = False
        self.quiet = False
        self.failed: str | None = None     # a corrupt line: stop until the file is rewritten
        self.finished = False              # the writer said it finished or stopped
        self.restarts = 0
        self.step = 0
        self._last_data = clock()

    def start(self) -> None:
        self._open()

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if not self._waiting_said:
                self._waiting_said = True
                self._queue.append(Event("note", 0, f"waiting for {self.path} to appear",
                                         {"waiting": True}))
            return False
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        self._file = f
        self._offset = 0
        self._prefix = b""
        self._decoder = LineDecoder(str(self.path))
        self._inflater = Inflater(is_gzip(self.path))
        self._last_data = self._clock()
        return True

    def _rewritten(self) -> bool:
        """The writer truncated, replaced or rewrote the file since we opened it."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False          # gone for now: keep what we read, wait
        mine = os.fstat(self._file.fileno())
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev) or now.st_size < self._offset:
            return True
        return bool(self._prefix) and os.pread(self._file.fileno(), len(self._prefix),
                                                0) != self._prefix

    def _restart(self) -> None:
        self._file.close()
        self._file = None
        self.failed = None
        self.finished = False
        self.restarts += 1
        if self._open():
            self._queue.append(Event("note", 0, f"{self.path.name}: the writer started over; "
                                     "reading it from the start", {"restarted": True}))

    def poll(self, limit: int = 1000) -> list[Message]:
        if self._file is None:
            self._open()
        elif self._rewritten():
            self._restart()
        if self._file is not None and self.failed is None:
            self._read()
        out = []
        while self._queue and len(out) < limit:
            out.append(self._queue.popleft())
        return out

    def _read(self) -> None:
        data = self._file.read(self.CHUNK)
        now = self._clock()
        if not data:
            if not self.quiet and not self.finished and now - self._last_data >= self.quiet_after:
                self.quiet = True
                self._queue.append(Event("note", self.step, f"writer quiet for "
                                         f"{now - self._last_data:.0f} s", {"quiet": True}))
            return
        if len(self._prefix) < self.PREFIX:
            self._prefix += data[:self.PREFIX - len(self._prefix)]
        self._offset += len(data)
        self._last_data = now
        if self.quiet:
            self.quiet = False
            self._queue.append(Event("note", self.step, "writer active again", {"quiet": False}))
        try:
            messages = self._decoder.feed(self._inflater.feed(data))
        except (InputError, ValueError) as exc:
            self.failed = str(exc) if isinstance(exc, InputError) else f"{self.path}: {exc}"
            self._queue.append(Event("error", self.step, self.failed))
            return
        for m in messages:
            self._note(m)
            self._queue.append(m)

    def _note(self, m: Message) -> None:
        if isinstance(m, Steps):
            self.step = m.results[-1].step
            if m.results[-1].nonfinite is not None:
                self.finished = True
        elif isinstance(m, Status):
            self.finished = m.finished or m.stopped is not None
        elif isinstance(m, RunStarted):
            self.finished = False

    def position(self) -> tuple[str, str | None]:
        """(head, tail) for a viewer's status line; tail None while all is well."""
        if self.failed is not None:
            return "attach", "stopped reading: " + self.failed
        if self._file is None:
            return "attach", f"waiting for {self.path.name} to appear"
        if self.quiet:
            return "attach", f"writer quiet for {self._clock() - self._last_data:,.0f} s"
        return "attach", None

    @property
    def meta(self) -> dict:
        return self._decoder.meta if self._file is not None else {}

    def send(self, command: Command) -> None:
        pass   # the writer is another process: nothing to command

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
