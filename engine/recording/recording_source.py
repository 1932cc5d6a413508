"""A Source that records everything another Source emits (the app's --record).

It stands between a source and its viewer: every polled message goes to an
traintop.engine.recording.recorder.Recorder on its way through, so the recording holds what the
viewer saw, interventions included. The recorder flushes as messages come;
while the source is quiet (paused) the viewer's regular polls flush it, so a
follower of the file is never more than about FILE_FLUSH_SECONDS behind.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from traintop.engine.atomic import WriteError
from traintop.engine.feed.messages import Command, Event, Message, RunStarted, Source, Status, Steps, Sweep
from traintop.engine.recording.recorder import FILE_FLUSH_SECONDS, Recorder


class RecordingSource:
    def __init__(self, source: Source, path: str | Path, meta: dict | None = None,
                 clock=time.monotonic):
        self.source = source
        self.path = Path(path)
        self.recorder = Recorder(self.path, meta, clock=clock)
        self._clock = clock
        self._last_flush = clock()
        self._last_status: dict[int, Status] = {}   # run -> where it stands now
        self._started = False            # a recording begins at a Sweep or the first RunStarted
        self.failed: str | None = None   # why recording stopped (disk full, ...)
        # The viewer sees the wrapped source's capabilities.
        self.read_only = bool(getattr(source, "read_only", False))
        self.accepts = getattr(source, "accepts", None)

    def start(self) -> None:
        self.source.start()

    def poll(self, limit: int = 1000) -> list[Message]:
        messages = self.source.poll(limit)
        if self.failed is None:
            try:
                self._record(messages)
            except (WriteError, OSError, ValueError) as exc:
                # Recording failed: the run goes on, the viewer is told once.
                self.failed = f"recording stopped: {exc}"
                messages = [*messages, Event("error", 0, self.failed,
                                             {"recording": str(self.path)})]
        return messages

    def _record(self, messages: list[Message]) -> None:
        for m in messages:
            self._started = self._started or isinstance(m, (RunStarted, Sweep))
            if not self._started:
                continue    # e.g. the child's start-up error: nothing to record yet
            self.recorder.consume(m)
            if isinstance(m, Status):
                self._last_status[m.run] = m
            elif isinstance(m, Steps) and m.run in self._last_status:
                # Where the run stands now: the last Status may be a second old.
                last = m.results[-1]
                self._last_status[m.run] = dataclasses.replace(self._last_status[m.run],
                                                               step=last.step, lr=last.lr)
            elif isinstance(m, RunStarted):
                self._last_status.pop(m.run, None)
        now = self._clock()
        if messages:
            self._last_flush = now
        elif now - self._last_flush >= FILE_FLUSH_SECONDS:
            self.recorder.flush()      # quiet (paused): make what is pending visible
            self._last_flush = now

    def send(self, command: Command) -> None:
        self.source.send(command)

    def close(self) -> list[Message]:
        last: list[Message] = []
        try:
            last = list(self.source.close() or [])
        finally:
            if self.failed is None:
                try:
                    self._record(last)   # the steps the child took after the last poll
                except (WriteError, OSError, ValueError) as exc:
                    self.failed = f"recording stopped: {exc}"
            if self.failed is None:
                # A final Status per run (never "running") tells readers where the session ended.
                final = [dataclasses.replace(s, running=False)
                         for _, s in sorted(self._last_status.items())]
                try:
                    self.recorder.close(final)
                except WriteError as exc:
                    self.failed = f"recording stopped: {exc}"
        return last
