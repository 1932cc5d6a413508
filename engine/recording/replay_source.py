"""ReplaySource: a finished recording, opened at once, delivered up to a cursor.

The pieces, one job each: the opener (traintop.engine.recording.opener)
opens the file with the errors every reader shares; the index
(replay_index) reads the head before the source is handed to a viewer (a
missing file, a foreign one or a corrupt start is one error line before the
screen opens, and the first frame has what it needs: head()) and the rest
in a worker thread from the viewer's first poll() on; the timeline
(timeline) is the cursor and play; the line cache (line_cache) decodes a
line again when it is delivered, as columns (a StepBlock); the delivery
(replay_delivery) turns items into messages.

Moving back emits Event("rewind") and the run again from its first message.
Every delivery ends with a Status of the last step delivered, so a status
line shows that step's lr while the viewer catches up.
"""

from __future__ import annotations

import bisect
import time
from pathlib import Path

from traintop.engine.feed.messages import Command, Event, Message, Status
from traintop.engine.recording.line_cache import LineCache
from traintop.engine.recording.opener import open_recording
from traintop.engine.recording.replay_delivery import deliver
from traintop.engine.recording.replay_index import Item, ReplayIndex
from traintop.engine.recording.timeline import Timeline

CATCH_UP_ITEMS = 5000  # items a poll delivers when not playing (~50,000 steps, ~0.1 s to fold)


def _speed(speed: float) -> str:
    """`6,667`, `83.33`: whole steps with separators from 1,000 up (never `1.3e+04`)."""
    return f"{speed:,.0f}" if speed >= 1000 else f"{speed:,.4g}"


class ReplaySource(Timeline):
    """A finished recording, delivered up to a cursor on its timeline."""

    # The commands it answers: the timeline's. A viewer tells the user the
    # others (lr, restart, ...) cannot change a recorded run.
    accepts = frozenset({"pause", "resume", "step", "seek", "speed"})

    def __init__(self, path: str | Path, speed: float | None = None, at_end: bool = True,
                 clock=time.monotonic):
        self.path = Path(path)
        recording = open_recording(self.path)
        index = ReplayIndex(recording)
        try:
            index.read_head()
        except BaseException:
            recording.close()
            raise
        super().__init__(index, speed, at_end, clock)
        self.size = index.size
        self.meta = index.decoder.meta
        self._lines = LineCache(recording.fileno(), index.lines)
        self._failed_sent = False
        # run -> (step, lr) of its last step delivered (a sweep's runs each have theirs)
        self._delivered: dict[int, tuple[int, float]] = {0: (0, 0.0)}
        self._status_sent: dict[int, Status] = {}
        if not at_end:
            self.target = index.marks[0] if index.marks else len(index.items)

    # ----- what the index knows ----------------------------------------------------------
    @property
    def marks(self) -> list[int]:
        return self.index.marks

    @property
    def snapshot_steps(self) -> list[int]:
        return self.index.snapshot_steps

    @property
    def loaded(self) -> bool:
        return self.index.loaded

    @property
    def failed(self) -> str | None:
        return self.index.failed

    @property
    def partial_tail(self) -> bool:
        return self.index.partial_tail

    @property
    def read_bytes(self) -> int:
        return self.index.read_bytes

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the worker has read the whole file (tests, benchmarks)."""
        return self.index.wait_loaded(timeout)

    # ----- Source --------------------------------------------------------------------
    def start(self) -> None:
        pass   # the head is already read; the worker reads on from the first poll()

    def head(self) -> list[Message]:
        """What a viewer's first frame shows, read before it opened: the
        header, a sweep's runs, early events and the steps up to the first
        stats snapshot (the issue's "first frame from the head and the first
        snapshot"; the constructor reads on to it). poll() goes on from there."""
        index = self.index
        with index.lock:
            if self.pos or self._rewind:
                return []
            upto = min(self.target, len(index.items))
            end = min(upto, index.marks[0]) if index.marks else 0
            if not index.marks:      # no snapshot near the head: the run before its steps
                while end < upto and not isinstance(index.items[end], Item):
                    end += 1
            self.pos = end
            return deliver(index.items[:end], self._lines, self._delivered)

    def poll(self, limit: int = 1000) -> list[Message]:
        index = self.index
        index.wake()
        with index.lock:
            if self.playing:
                self.advance_play()
            out: list[Message] = []
            if self._rewind:
                self._rewind = False
                self.pos = 0
                out.append(Event("rewind", self.step,
                                 f"replay from the start to step {self.step:,}"))
            if not self.playing:
                # A catch-up (open at the end, a seek): fewer, larger deliveries, so
                # the viewer folds them in fewer passes and redraws less in between.
                limit = max(limit, CATCH_UP_ITEMS)
            end = min(self.target, self.pos + max(1, limit - len(out) - 1))
            out += deliver(index.items[self.pos:end], self._lines, self._delivered)
            self.pos = end
        if self.failed is not None and not self._failed_sent:
            self._failed_sent = True
            out.append(Event("error", self._delivered[0][0], self.failed))
        finished = self.pos >= len(index.items) and self.loaded
        for run, (step, lr) in sorted(self._delivered.items()):
            status = Status(step=step, lr=lr, running=self.playing, finished=finished,
                            steps_per_sec=self.speed, run=run)
            if status != self._status_sent.get(run) and (out or self.pos == self.target):
                out.append(status)
                self._status_sent[run] = status
        return out

    def position(self) -> tuple[str, str]:
        """Where the timeline stands, for a viewer's status line: (head, tail)."""
        items, marks = self.index.items, self.index.marks
        # the snapshot shown (the cursor's once a catch-up has got there), so
        # that it agrees with the step and lr the status line shows beside it
        shown = bisect.bisect_right(marks, min(self.pos, self.target))
        head = (f"replay · snapshot {shown}/{len(marks)}" if marks
                else "replay · no stats snapshots")
        if self.failed is not None:
            tail = "stopped reading: " + self.failed.replace(str(self.path), self.path.name)
        elif self.playing:
            tail = f"playing {_speed(self.speed)} steps/s"
        elif self.pos < self.target:
            # a catch-up (opening at the end, a seek): not there yet, whatever the file holds
            k = min(self.target, len(items)) - 1
            while k >= 0 and not isinstance(items[k], Item):
                k -= 1
            to = f" to step {items[k].last:,}" if k >= 0 else ""
            tail = f"catching up{to} · plays at {_speed(self.speed)} steps/s"
        elif self.target >= len(items) and self.loaded:
            tail = f"end of recording · plays at {_speed(self.speed)} steps/s"
        else:
            tail = f"paused · plays at {_speed(self.speed)} steps/s"
        if not self.loaded and self.failed is None:
            share = self.read_bytes / self.size if self.size else 1.0
            tail = f"reading {share:.0%} of {self.size / 1e6:,.1f} MB · " + tail
        return head, tail

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
            self.set_speed(float(args["steps_per_sec"]))
            if self.playing:
                self.play()

    def close(self) -> None:
        self.pause()
        self.index.stop()
        self.index.recording.close()
