"""What a replay knows of its recording: an index read in the background.

Not the decoded run: for each steps line where it lies (its offset in a
plain file; the line itself, zlib'd, in a gzip one, which cannot be read
from the middle) and, per item of up to PLAY_GRAIN steps, its steps, last
lr and whether a snapshot ends it; other messages (RunStarted, Event) are
items as they are. `marks[k]` counts the items that bring a viewer to
snapshot k. Memory grows by a few bytes per ten steps, not by the run's
figures (traintop.engine.recording.line_cache decodes a line when needed).

The head (the header and the lines up to the first snapshot, at least
opener.HEAD_BYTES) is read by the caller's thread before a viewer opens, so
a bad file is one error line first; a worker thread reads the rest once the
viewer wants it (wake()).
"""

from __future__ import annotations

import threading
import zlib

from traintop.data.errors import InputError
from traintop.engine.recording import errors, opener
from traintop.engine.recording.decode import step_rows
from traintop.engine.recording.lines import DECODE_ERRORS, LineDecoder
from traintop.engine.recording.opener import RecordingFile

PLAY_GRAIN = 10       # steps per item: how finely play advances
HEAD_MAX = 8 << 20    # the head goes on to the first snapshot, up to this much


class Item:
    """Rows [lo, hi) of steps line `line` (of run `run`), steps first..last."""

    __slots__ = ("line", "lo", "hi", "first", "last", "lr", "snapshot", "run")

    def __init__(self, line, lo, hi, first, last, lr, snapshot, run=0):
        self.line, self.lo, self.hi = line, lo, hi
        self.first, self.last, self.lr, self.snapshot = first, last, lr, snapshot
        self.run = run


class ReplayIndex:
    """The items of a recording read so far; `lock` guards what grows."""

    def __init__(self, recording: RecordingFile):
        self.recording = recording
        self.path = recording.path
        self.size = recording.size
        self.lock = threading.Lock()
        self.items: list = []          # RunStarted/Event messages and Items
        self.marks: list[int] = []     # marks[k]: how many items bring a viewer to snapshot k
        self.snapshot_steps: list[int] = []
        self.lines: list = []          # per steps line: (offset, length) (plain) or zlib'd bytes
        self.last_step = 0             # of the last Item read
        self.decoder = LineDecoder(str(self.path))
        self._group: list[list] = []   # a sweep's lines of the same steps, one per run so far
        self._group_key: tuple | None = None
        self._group_runs: set[int] = set()
        self._offset = 0               # stream bytes indexed (decompressed for gzip)
        self.loaded = False
        self.failed: str | None = None
        self.partial_tail = False
        self._stop = threading.Event()
        # The worker reads on once a viewer first wants it: its first frame
        # (the head) is drawn without a thread parsing JSON beside it.
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._read_rest, name="replay-reader",
                                        daemon=True)

    @property
    def read_bytes(self) -> int:
        return self.recording.read_bytes

    # ----- reading ---------------------------------------------------------------------
    def read_head(self) -> None:
        """At least HEAD_BYTES, and on to the first snapshot within HEAD_MAX;
        errors raise InputError. Then the worker waits to be woken."""
        while not self.loaded and (self.read_bytes < opener.HEAD_BYTES or (
                not self.marks and self.read_bytes < HEAD_MAX)):
            self.read_chunk()
        if self.decoder.header is None:
            raise errors.empty(self.path)
        self._thread.start()

    def wake(self) -> None:
        self._wanted.set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the worker has read the whole file (tests, benchmarks)."""
        self._wanted.set()
        self._thread.join(timeout)
        return self.loaded

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _read_rest(self) -> None:
        self._wanted.wait()
        try:
            while not self.loaded and not self._stop.is_set():
                self.read_chunk()
        except InputError as exc:
            self.failed = str(exc)
        except Exception as exc:  # noqa: BLE001 - the viewer is told: no silent death
            self.failed = f"{self.path}: {type(exc).__name__}: {exc}"

    def read_chunk(self) -> None:
        raw, data = self.recording.read(opener.CHUNK)
        if not raw:
            self._add(self._merged_group())   # a sweep's last lines, whatever runs wrote them
            self.partial_tail = self.decoder.pending
            self.loaded = True
            return
        self._index(data)

    # ----- indexing --------------------------------------------------------------------
    def _index(self, data: bytes) -> None:
        decoder = self.decoder
        items: list = []
        for raw in decoder.split(data):
            start = self._offset
            self._offset += len(raw) + 1
            decoder.line += 1
            if not raw.strip():
                continue
            doc = decoder.parse(raw)
            if decoder.header is None:
                items += decoder.header_messages(doc)
                continue
            kind = doc.get("t")
            if kind in ("s", "steps"):
                items += self._steps_line(doc, raw, start)
            else:
                items += self._merged_group()    # in the order the file has them
                if kind != "status":           # the replay reports its own position instead
                    items.append(decoder.decode_doc(doc))
        self._add(items)

    def _steps_line(self, doc: dict, raw: bytes, start: int) -> list:
        decoder = self.decoder
        try:
            steps, lrs, snapshots = step_rows(doc)
        except DECODE_ERRORS as exc:
            raise decoder.corrupt(exc) from None
        line = len(self.lines)
        self.lines.append(zlib.compress(raw, 1) if self.recording.gzip else (start, len(raw)))
        run = doc.get("r", 0)
        if isinstance(run, bool) or not isinstance(run, int) or run < 0:
            raise errors.corrupt_line(decoder.name, decoder.line, f"run index {run!r}")
        items: list = []
        key = (steps[0], len(steps))
        if self._group and (self._group_key != key or run in self._group_runs):
            items += self._merged_group()
        self._group.append(_cut(line, steps, lrs, snapshots, run))
        self._group_key = key
        self._group_runs.add(run)
        if decoder.sweep is None or len(self._group) >= len(decoder.sweep.labels):
            items += self._merged_group()
        return items

    def _merged_group(self) -> list:
        """A sweep's lines of the same steps (one per run), their items in step
        order: the timeline moves every run along together."""
        group, self._group, self._group_runs = self._group, [], set()
        if len(group) == 1:
            return group[0]
        return sorted((item for items in group for item in items), key=lambda i: (i.last, i.run))

    def _add(self, items: list) -> None:
        with self.lock:
            base = len(self.items)
            self.items += items
            for k, item in enumerate(items):
                if not isinstance(item, Item):
                    continue
                self.last_step = item.last
                if not item.snapshot:
                    continue
                mark, step = base + k + 1, item.last
                if self.snapshot_steps and self.snapshot_steps[-1] == step and \
                        item.run != self.items[self.marks[-1] - 1].run:
                    # A sweep's runs each take a snapshot at this step: one place on
                    # the timeline, after the last of them.
                    self.marks[-1] = mark
                else:
                    self.marks.append(mark)
                    self.snapshot_steps.append(step)


def _cut(line, steps, lrs, snapshots, run=0) -> list:
    """Items of one line: cut after each snapshot and each PLAY_GRAIN-th step."""
    items, lo = [], 0
    for i, step in enumerate(steps):
        snap = i in snapshots
        if snap or step % PLAY_GRAIN == 0 or i == len(steps) - 1:
            items.append(Item(line, lo, i + 1, steps[lo], step, lrs[i], snap, run))
            lo = i + 1
    return items
