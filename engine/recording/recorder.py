"""A viewer of traintop.engine.feed.messages messages that writes them to a recording.

Steps are batched (one line per BATCH steps or per FILE_FLUSH_SECONDS), every
other message is a line of its own, and the file is flushed at least every
FILE_FLUSH_SECONDS while messages arrive, so a reader following it lags by about
that much and a crash loses at most that much.

A write error (disk full, permission, a removed folder, an I/O error) stops
the recording, not the run: the file is cut back to the whole lines of the
last good flush (a full disk may have taken part of a line), the recorder
raises one WriteError naming the file and ignores every later message.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from traintop.engine.atomic import WriteError, write_error
from traintop.engine.feed.messages import Event, Message, RunStarted, Status, Steps, Sweep
from traintop.engine.results import StepResult
from traintop.engine.recording.writer import StreamWriter

BATCH = 100            # steps per line
FILE_FLUSH_SECONDS = 0.5    # most a line waits before it reaches the file
KEPT_STATUS_SECONDS = 5.0   # a Status is kept at most this often unless its state changes
# A headless run hands the recorder a Status this often (it keeps one every
# KEPT_STATUS_SECONDS), so `traintop attach` shows the run live, with a rate.
LIVE_STATUS_STEPS = 100


class Recorder:
    """Give it every message of a run (`consume`), then `close()` it.

    The first message must be RunStarted: it becomes the header, with
    `meta` (plain JSON: where the data came from, who wrote it, ...). A
    sweep's Sweep comes just before it and goes into the header too; then
    each run's steps are batched apart and written tagged with their run.
    """

    def __init__(self, path: str | Path, meta: dict | None = None, clock=time.monotonic,
                 status_seconds: float = KEPT_STATUS_SECONDS):
        self.path = Path(path)
        self.status_seconds = status_seconds   # watch() keeps one a second for attach
        self.meta = dict(meta or {})
        self._clock = clock
        self._writer: StreamWriter | None = None
        self._steps: dict[int, list[StepResult]] = {}   # run -> steps not yet written
        self._last_flush = clock()
        self._last_status: dict[int, tuple[Status, float]] = {}   # run -> (kept, when)
        self._sweep: Sweep | None = None
        self.failed: WriteError | None = None   # why the recording stopped
        self._good_bytes = 0    # the file's size after the last good flush: whole lines
        self._step = 0          # the last step handed to the writer
        self.kept_step = 0      # the last step in the file for sure (flushed)

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abandon()      # a full disk refuses the rest: nothing more to keep
        try:
            os.truncate(self.path, self._good_bytes)   # drop a part-written line
        except OSError:
            pass                  # the file (or its folder) is gone: nothing to cut back
        where = f"at step {self.kept_step:,}" if self.kept_step else "before its first step"
        self.failed = WriteError(f"{write_error(self.path, exc)}; the recording ends {where}")
        raise self.failed

    def consume(self, message: Message) -> None:
        if self.failed is not None:
            return                # said once, when it happened
        if self._writer is None:
            if isinstance(message, Sweep) and self._sweep is None:
                self._sweep = message
                return
            if not isinstance(message, RunStarted) or message.run != 0:
                raise ValueError("a recording starts with (a Sweep and) run 0's RunStarted")
            with self._writing():
                self._writer = StreamWriter(self.path, message.info, self.meta, self._sweep)
            self._good_bytes = self._size()
            self._last_flush = self._clock()
            return
        with self._writing():
            self._consume(message)

    def _consume(self, message: Message) -> None:
        if isinstance(message, Steps):
            pending = self._steps.setdefault(message.run, [])
            pending.extend(message.results)
            # A sweep's runs send the same steps one after another: written once
            # the last of them has (a replay's timeline finds them together).
            if len(pending) >= BATCH and (message.run == max(self._steps)
                                          or len(pending) >= 4 * BATCH):
                self._write_steps()
        elif isinstance(message, Status):
            if not self._keep_status(message):
                return
            self._write_steps()
            self._writer.write(message)
        else:
            self._write_steps()   # keep the file in the order things happened
            self._writer.write(message)
        self._maybe_flush()

    def step(self, result: StepResult) -> None:
        """One step result: the same as consume(Steps((result,)))."""
        self.consume(Steps((result,)))

    def event(self, kind: str, step: int, text: str, data: dict | None = None) -> None:
        self.consume(Event(kind, step, text, dict(data or {})))

    def _keep_status(self, status: Status) -> bool:
        now = self._clock()
        last, at = self._last_status.get(status.run, (None, -1e9))
        changed = last is None or (last.running, last.finished, last.stopped) != (
            status.running, status.finished, status.stopped)
        if changed or now - at >= self.status_seconds:
            self._last_status[status.run] = (status, now)
            return True
        return False

    def _write_steps(self, aligned: bool = False) -> None:
        """Write the steps not yet written; `aligned` (a flush on the clock,
        which may fall between a sweep's runs sending the same steps): as
        many of each run's as every run has, the rest kept for the next line."""
        if self._writer is None:
            return
        pending = {run: rows for run, rows in self._steps.items() if rows}
        count = min(map(len, pending.values()), default=0) if aligned else None
        for run, rows in pending.items():
            rows, rest = rows[:count], rows[len(rows) if count is None else count:]
            if rows:
                self._writer.write(Steps(tuple(rows), run=run))
                self._step = max(self._step, rows[-1].step)
            pending[run] = rest
        self._steps = {run: rows for run, rows in pending.items() if rows}

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return self._good_bytes

    def _maybe_flush(self) -> None:
        if self._clock() - self._last_flush >= FILE_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write what is pending and make it visible to readers; call it when idle."""
        if self._writer is None:
            return
        with self._writing():
            self._write_steps(aligned=True)
            self._writer.flush()
            self._flushed()
        self._last_flush = self._clock()

    def _flushed(self) -> None:
        self._good_bytes = self._size()
        self.kept_step = self._step

    def close(self, status: Status | list[Status] | None = None) -> None:
        """Flush and close; a final `status` (a sweep: one per run) is always
        written (readers see the end)."""
        if self._writer is None:
            return
        statuses = status if isinstance(status, list) else [status] if status else []
        with self._writing():
            self._write_steps()
            for s in statuses:
                self._writer.write(s)
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
