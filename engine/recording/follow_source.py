"""Sources (traintop.engine.feed.messages) that read a recording: replay a finished one, follow a live one.

ReplaySource (traintop.engine.recording.replay_source) delivers a recorded
run up to a cursor on its snapshots, opened at once and read in the
background.

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

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Command, Event, Message, RunStarted, Status, Steps, Sweep
from traintop.engine.recording.lines import LineDecoder
from traintop.engine.recording.opener import open_recording

class FollowSource:
    """A recording another process is writing, read as it grows."""

    read_only = True      # the writer is another process: it takes no commands

    CHUNK = 1 << 20       # bytes read per poll at most
    PREFIX = 256          # leading bytes compared to notice a rewritten file

    JUMP_BYTES = 8 << 20  # a plain file longer than this is joined near its end

    def __init__(self, path: str | Path, quiet_after: float = 10.0, clock=time.monotonic,
                 jump: bool = True, snapshots: bool = True):
        self.path = Path(path)
        self.jump = jump      # False: read from the start (a summary needs every step)
        # False: steps come without their stats snapshots, the latest kept
        # undecoded for snapshot() (a folder's many followers catch up faster)
        self.snapshots = snapshots
        self.quiet_after = quiet_after
        self._clock = clock
        self._file = None
        self._queue: deque[Message] = deque()
        self._waiting_said = False
        self.quiet = False
        self.failed: str | None = None     # a corrupt line: stop until the file is rewritten
        self.finished = False              # the writer said it finished or stopped
        self._ended: dict[int, bool] = {}  # run -> it finished or stopped (a sweep's runs)
        self._runs = 1
        self.restarts = 0
        self.step = 0
        self._last_data = clock()

    def start(self) -> None:
        self._open()

    def _open(self) -> bool:
        recording = open_recording(self.path, missing_ok=True)
        if recording is None:
            if not self._waiting_said:
                self._waiting_said = True
                self._queue.append(Event("note", 0, f"waiting for {self.path} to appear",
                                         {"waiting": True}))
            return False
        self._file = recording
        self._offset = 0
        self._prefix = b""
        self._decoder = LineDecoder(str(self.path), snapshots=self.snapshots)
        self._last_data = self._clock()
        if self.jump and not recording.gzip:
            self._jump_near_end()
        return True

    def _jump_near_end(self) -> None:
        """A long file: the header, the latest restart and everything from the
        last snapshot's line on; the steps before it are skipped (a note
        says so), so attaching costs the same at step 1,000 or 10,000,000."""
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size <= self.JUMP_BYTES:
            return
        head_end = _find(fd, b"\n", 0, size)
        snap = _rfind(fd, b'"layers":[', head_end, size)
        start = _rfind(fd, b"\n", head_end, snap) + 1 if snap > head_end else -1
        if start <= head_end + 1:
            return
        decoder = self._decoder
        for m in decoder.feed(os.pread(fd, head_end + 1, 0)):
            self._queue.append(m)
        run = _rfind(fd, b'\n{"t":"run"', head_end, start)
        if run >= 0:      # a restart before the jump: its config is the one shown
            end = _find(fd, b"\n", run + 1, start)
            for m in decoder.feed(os.pread(fd, end - run, run + 1)):
                self._queue.append(m)
        decoder.line = _count_lines(fd, start)
        self._prefix = os.pread(fd, self.PREFIX, 0)
        self._file.file.seek(start)
        self._offset = start
        self._queue.append(Event("note", 0, f"attached near the end: the first "
                                 f"{start / 1e6:,.1f} MB (earlier steps) not read",
                                 {"skipped_bytes": start}))

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
        self._ended, self._runs = {}, 1
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
        data = self._file.read_raw(self.CHUNK)
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
        # The writer was last heard when it last wrote the file, not when we
        # read it: joining a file whose writer died long ago is quiet at once.
        try:
            age = max(0.0, time.time() - os.fstat(self._file.fileno()).st_mtime)
        except OSError:
            age = 0.0
        self._last_data = now - age
        if self.quiet:
            self.quiet = False
            self._queue.append(Event("note", self.step, "writer active again", {"quiet": False}))
        try:
            messages = self._decoder.feed(self._file.inflate(data))
        except InputError as exc:
            self.failed = str(exc)
            self._queue.append(Event("error", self.step, self.failed))
            return
        for m in messages:
            self._note(m)
            self._queue.append(m)

    def _note(self, m: Message) -> None:
        """Where the writer stands: finished once every run (of a sweep) has."""
        if isinstance(m, Sweep):
            self._runs = len(m.labels)
        elif isinstance(m, Steps):
            self.step = m.results[-1].step
            if m.results[-1].nonfinite is not None:
                self._ended[m.run] = True
        elif isinstance(m, Status):
            self._ended[m.run] = m.finished or m.stopped is not None
        elif isinstance(m, RunStarted):
            self._ended[m.run] = False
        else:
            return
        self.finished = len(self._ended) >= self._runs and all(self._ended.values())

    def position(self) -> tuple[str, str | None]:
        """(head, tail) for a viewer's status line; tail None while all is well."""
        if self.failed is not None:
            return "attach", "stopped reading: " + self.failed.replace(str(self.path), self.path.name)
        if self._file is None:
            return "attach", f"waiting for {self.path.name} to appear"
        if self.quiet:
            return "attach", f"writer quiet for {self._clock() - self._last_data:,.0f} s"
        return "attach", None

    def snapshot(self, run: int = 0):
        """snapshots=False: the latest stats snapshot of `run` read so far, decoded."""
        return self._decoder.snapshot(run) if self._file is not None else None

    @property
    def meta(self) -> dict:
        return self._decoder.meta if self._file is not None else {}

    def send(self, command: Command) -> None:
        pass   # the writer is another process: nothing to command

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _rfind(fd: int, needle: bytes, lo: int, hi: int, block: int = 1 << 20) -> int:
    """Offset of the last `needle` in the file's [lo, hi), or -1; reads backwards."""
    end = hi
    while end > lo:
        begin = max(lo, end - block)
        data = os.pread(fd, end - begin + len(needle) - 1, begin)[:hi - begin]
        k = data.rfind(needle)
        if k >= 0:
            return begin + k
        end = begin
    return -1


def _find(fd: int, needle: bytes, lo: int, hi: int, block: int = 1 << 20) -> int:
    begin = lo
    while begin < hi:
        data = os.pread(fd, min(block, hi - begin) + len(needle) - 1, begin)
        k = data.find(needle)
        if k >= 0 and begin + k < hi:
            return begin + k
        begin += block
    return hi


def _count_lines(fd: int, upto: int, block: int = 1 << 22) -> int:
    count, pos = 0, 0
    while pos < upto:
        count += os.pread(fd, min(block, upto - pos), pos).count(b"\n")
        pos += block
    return count
