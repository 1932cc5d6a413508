"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Progress:
    def __init__(self, total: int, stream=None, every: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.every = every
        self.start = self._last = time.monotonic()
        self.start_step = None

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start_step is None:
            self.start_step = step
        if now - self._last < self.every and step != self.total:
            return
        self._last = now
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        width = 30
        done = int(width * step / self.total) if self.total else width
        bar = "#" * done + "-" * (width - done)
        self.stream.write(f"\r[{bar}] step {step:,}/{self.total:,}  loss {loss:.4f}  "
                          f"{rate:,.0f} steps/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


@contextmanager
def stopping(progress: Progress):
    """(stop, caught) for a headless training loop: Ctrl-C, SIGTERM and a
    hangup set `stop`, so the loop ends after the step in flight and the report
    describes whole steps, and are noted in `caught`. On leaving, the progress
    line is closed and the previous handlers are back."""
    stop, caught = threading.Event(), []

    def on_signal(signum, _frame) -> None:
        caught.append(signum)
        if signum == signal.SIGHUP:
            progress.enabled = False   # the terminal is gone
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield stop, caught
    finally:
        try:
            progress.close()
        except OSError:
            pass
        for s, handler in previous.items():
            signal.signal(s, handler)
