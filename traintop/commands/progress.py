"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time


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
