"""ReplaySource: a finished recording, opened at once, delivered up to a cursor.

The head of the file (the header and the lines up to the first stats
snapshot, at least HEAD_BYTES) is read before the source is handed to a
viewer: a missing file, a foreign one or a corrupt start is one error line
before the screen opens, and the first frame has what it needs (head()).
A worker thread reads the rest, from the viewer's first poll() on. It keeps an index, not the decoded run: for each
line where it lies (its offset in a plain file; the line itself, zlib'd, in
a gzip one, which cannot be read from the middle) and, per delivery item of
up to PLAY_GRAIN steps, its steps, last lr and whether a snapshot ends it.
A line is decoded again when it is delivered (the last few are cached), as
columns (a StepBlock), so memory grows by a few bytes per ten steps, not by
the run's figures.

The cursor moves through the snapshots read so far (next/previous,
home/end, play at a speed in steps per second) and never waits for the
rest of the file. Moving back emits Event("rewind") and the run again from
its first message: a viewer clears what it holds and rebuilds, as for a
live run. Every delivery ends with a Status of the last step delivered, so
a status line shows that step's lr while the viewer catches up.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
import zlib
from collections import OrderedDict
from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.step_block import StepBlock
from traintop.engine.feed.messages import Command, Event, Message, RunStarted, Status, Steps
from traintop.engine.recording.stream import (Inflater, LineDecoder, decode, decode_snapshot, decode_snapshot2, is_gzip,
                     step_rows)

PLAY_SECONDS = 30.0   # default play speed runs the whole recording in about this long
PLAY_GRAIN = 10       # steps per delivery item: how finely play advances
HEAD_BYTES = 1 << 20  # read before the viewer opens: small files are checked whole
HEAD_MAX = 8 << 20    # ... and on to the first snapshot, up to this much
CHUNK = 1 << 20
CATCH_UP_ITEMS = 5000  # items a poll delivers when not playing (~50,000 steps, ~0.1 s to fold)
LINES_CACHED = 4


class _Steps:
    """An index item: rows [lo, hi) of line `line` (of run `run`), steps first..last."""

    __slots__ = ("line", "lo", "hi", "first", "last", "lr", "snapshot", "run")

    def __init__(self, line, lo, hi, first, last, lr, snapshot, run=0):
        self.line, self.lo, self.hi = line, lo, hi
        self.first, self.last, self.lr, self.snapshot = first, last, lr, snapshot
        self.run = run


def _speed(speed: float) -> str:
    """`6,667`, `83.33`: whole steps with separators from 1,000 up (never `1.3e+04`)."""
    return f"{speed:,.0f}" if speed >= 1000 else f"{speed:,.4g}"


class ReplaySource:
    """A finished recording, delivered up to a cursor on its timeline."""

    # The commands it answers: the timeline's. A viewer tells the user the
    # others (lr, restart, ...) cannot change a recorded run.
    accepts = frozenset({"pause", "resume", "step", "seek", "speed"})

    def __init__(self, path: str | Path, speed: float | None = None, at_end: bool = True,
                 clock=time.monotonic):
        self.path = Path(path)
        self._clock = clock
        self._gzip = is_gzip(self.path)
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        self.size = os.fstat(self._file.fileno()).st_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The worker reads on once the viewer first polls: its first frame
        # (the head) is drawn without a thread parsing JSON beside it.
        self._wanted = threading.Event()
        self.items: list = []          # RunStarted/Event messages and _Steps entries
        self.marks: list[int] = []     # marks[k]: how many items bring a viewer to snapshot k
        self.snapshot_steps: list[int] = []
        self._group: list[list] = []   # a sweep's lines of the same steps, one per run so far
        self._group_key: tuple | None = None
        self._group_runs: set[int] = set()
        self._lines: list = []         # per line: (offset, length) (plain) or zlib'd bytes (gzip)
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._decoder = LineDecoder(str(self.path))
        self._inflater = Inflater(self._gzip)
        self._offset = 0               # stream bytes indexed (decompressed for gzip)
        self.read_bytes = 0            # file bytes read
        self.loaded = False
        self.failed: str | None = None
        self._failed_sent = False
        self.partial_tail = False
        self._user_speed = speed
        self.speed = speed or 1.0
        self.pos = 0                   # items delivered
        self._follow_end = at_end      # the target stays at the end while the file is read
        self.target = 0
        self.playing = False
        self._play_from: tuple[float, float] | None = None
        self._rewind = False
        # run -> (step, lr) of its last step delivered (a sweep's runs each have theirs)
        self._delivered: dict[int, tuple[int, float]] = {0: (0, 0.0)}
        self._status_sent: dict[int, Status] = {}
        self._read_head()
        self.meta = self._decoder.meta
        if not at_end:
            self.target = self.marks[0] if self.marks else len(self.items)
        self._thread = threading.Thread(target=self._read_rest, name="replay-reader",
                                        daemon=True)
        self._thread.start()

    # ----- reading (the head here, the rest in the worker) ---------------------------
    def _read_head(self) -> None:
        """At least HEAD_BYTES, and on to the first snapshot within HEAD_MAX;
        errors raise InputError."""
        while not self.loaded and (self.read_bytes < HEAD_BYTES or (
                not self.marks and self.read_bytes < HEAD_MAX)):
            self._read_chunk()
        if self._decoder.header is None:
            raise InputError(f"{self.path}: empty recording (no complete header line)")

    def _read_rest(self) -> None:
        self._wanted.wait()
        try:
            while not self.loaded and not self._stop.is_set():
                self._read_chunk()
        except InputError as exc:
            self.failed = str(exc)
        except Exception as exc:  # noqa: BLE001 - the viewer shows it; the thread must not die silently
            self.failed = f"{self.path}: {type(exc).__name__}: {exc}"

    def _read_chunk(self) -> None:
        chunk = self._file.read(CHUNK)
        if not chunk:
            self._add(self._merged_group())   # a sweep's last lines, whatever runs wrote them
            self.partial_tail = self._decoder.pending
            self._update_speed()
            self.loaded = True
            return
        self.read_bytes += len(chunk)
        try:
            data = self._inflater.feed(chunk)
        except ValueError as exc:
            raise InputError(f"{self.path}: {exc}") from None
        self._index(data)
        self._update_speed()

    def _index(self, data: bytes) -> None:
        decoder = self._decoder
        buffer = decoder._buffer + data
        *lines, decoder._buffer = buffer.split(b"\n")
        items: list = []
        for raw in lines:
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
                try:
                    steps, lrs, snapshots = step_rows(doc)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise decoder.fail(f"corrupt line ({type(exc).__name__}: {exc})") from None
                line = len(self._lines)
                self._lines.append(zlib.compress(raw, 1) if self._gzip else (start, len(raw)))
                run = doc.get("r", 0)
                if isinstance(run, bool) or not isinstance(run, int) or run < 0:
                    raise decoder.fail(f"corrupt line (run index {run!r})")
                key = (steps[0], len(steps))
                if self._group and (self._group_key != key or run in self._group_runs):
                    items += self._merged_group()
                self._group.append(self._cut(line, steps, lrs, snapshots, run))
                self._group_key = key
                self._group_runs.add(run)
                if decoder.sweep is None or len(self._group) >= len(decoder.sweep.labels):
                    items += self._merged_group()
            else:
                items += self._merged_group()    # in the order the file has them
                if kind != "status":           # the replay reports its own position instead
                    items.append(decoder.decode_doc(doc))
        self._add(items)

    def _merged_group(self) -> list:
        """A sweep's lines of the same steps (one per run), their items in step
        order: the timeline moves every run along together."""
        group, self._group, self._group_runs = self._group, [], set()
        if len(group) == 1:
            return group[0]
        return sorted((item for items in group for item in items), key=lambda i: (i.last, i.run))

    def _add(self, items: list) -> None:
        with self._lock:
            base = len(self.items)
            self.items += items
            for k, item in enumerate(items):
                if not (isinstance(item, _Steps) and item.snapshot):
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
            if self._follow_end:
                self.target = len(self.items)

    @staticmethod
    def _cut(line, steps, lrs, snapshots, run=0) -> list:
        """Items of one line: cut after each snapshot and each PLAY_GRAIN-th step."""
        items, lo = [], 0
        for i, step in enumerate(steps):
            snap = i in snapshots
            if snap or step % PLAY_GRAIN == 0 or i == len(steps) - 1:
                items.append(_Steps(line, lo, i + 1, steps[lo], step, lrs[i], snap, run))
                lo = i + 1
        return items

    def _update_speed(self) -> None:
        if self._user_speed is None:
            self.speed = max(1.0, self._last_step() / PLAY_SECONDS)

    def _last_step(self) -> int:
        for item in reversed(self.items):
            if isinstance(item, _Steps):
                return item.last
        return 0

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the worker has read the whole file (tests, benchmarks)."""
        self._wanted.set()
        self._thread.join(timeout)
        return self.loaded

    def _results(self, line: int) -> tuple[tuple, dict]:
        """(results without their snapshots, {row: snapshot payload}) of a line:
        a viewer catching up shows only the last snapshot it is given, so
        only that one is decoded (see _deliver)."""
        cached = self._cache.get(line)
        if cached is not None:
            self._cache.move_to_end(line)
            return cached
        where = self._lines[line]
        if isinstance(where, bytes):
            raw = zlib.decompress(where)
        else:
            raw = os.pread(self._file.fileno(), where[1], where[0])
        doc = json.loads(raw)
        if doc["t"] == "s":
            snapshots = {int(k): (2, v) for k, v in doc.get("x", {}).items()}
            doc = {**doc, "x": {}}
        else:
            snapshots = {i: (1, r[4]) for i, r in enumerate(doc["results"]) if r[4] is not None}
            doc = {**doc, "results": [[*r[:4], None, *r[5:]] for r in doc["results"]]}
        cached = (StepBlock.of(decode(doc).results), snapshots)
        self._cache[line] = cached
        if len(self._cache) > LINES_CACHED:
            self._cache.popitem(last=False)
        return cached

    # ----- the timeline --------------------------------------------------------------
    @property
    def cursor(self) -> int:
        """Index of the snapshot the target shows (-1: before the first)."""
        return sum(1 for m in self.marks if m <= self.target) - 1

    @property
    def catching_up(self) -> bool:
        """Delivering its way to the cursor (opening at the end, a seek), not playing:
        a viewer draws its panes once it is there, not on the way."""
        return not self.playing and self.pos < self.target

    @property
    def step(self) -> int:
        """Step of the last item the target includes."""
        for item in reversed(self.items[:self.target]):
            if isinstance(item, _Steps):
                return item.last
        return 0

    def seek(self, index: int) -> None:
        """Go to snapshot `index` (clamped); past the last means the very end."""
        self.pause()
        if not self.marks or index >= len(self.marks):
            self._follow_end = True
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
            self.speed = self._user_speed = speed
        self._follow_end = False
        if self.target >= len(self.items):
            self._go(self.marks[0] if self.marks else 0)   # play from the start again
        self.playing = True
        self._play_from = (self._clock(), float(self.step))

    def pause(self) -> None:
        self.playing = False
        self._play_from = None

    def _go(self, target: int) -> None:
        if target < len(self.items):
            self._follow_end = False
        target = max(0, min(len(self.items), target))
        if target < self.pos:
            self._rewind = True
        self.target = target

    def _advance_play(self) -> None:
        started, from_step = self._play_from
        upto = from_step + (self._clock() - started) * self.speed
        target, items = self.target, self.items
        # Whole items only: a step shows when its grain's last step is due.
        while target < len(items) and (not isinstance(items[target], _Steps)
                                       or items[target].last <= upto):
            target += 1
        self.target = target
        if target >= len(items) and self.loaded:
            self.pause()

    # ----- Source --------------------------------------------------------------------
    def start(self) -> None:
        pass   # the head is already read; the worker reads on from the first poll()

    def head(self) -> list[Message]:
        """What a viewer's first frame shows, read before it opened: the
        header, a sweep's runs, early events and the steps up to the first
        stats snapshot (the issue's "first frame from the head and the first
        snapshot"; the constructor reads on to it). poll() goes on from there."""
        with self._lock:
            if self.pos or self._rewind:
                return []
            upto = min(self.target, len(self.items))
            end = min(upto, self.marks[0]) if self.marks else 0
            if not self.marks:      # no snapshot near the head: the run before its steps
                while end < upto and not isinstance(self.items[end], _Steps):
                    end += 1
            self.pos = end
            return self._deliver(self.items[:end])

    def poll(self, limit: int = 1000) -> list[Message]:
        self._wanted.set()
        with self._lock:
            if self._follow_end:
                self.target = len(self.items)
            if self.playing:
                self._advance_play()
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
            out += self._deliver(self.items[self.pos:end])
            self.pos = end
        if self.failed is not None and not self._failed_sent:
            self._failed_sent = True
            out.append(Event("error", self._delivered[0][0], self.failed))
        finished = self.pos >= len(self.items) and self.loaded
        for run, (step, lr) in sorted(self._delivered.items()):
            status = Status(step=step, lr=lr, running=self.playing, finished=finished,
                            steps_per_sec=self.speed, run=run)
            if status != self._status_sent.get(run) and (out or self.pos == self.target):
                out.append(status)
                self._status_sent[run] = status
        return out

    def _deliver(self, items: list) -> list[Message]:
        """Messages of `items`: neighbouring rows of one line go as one Steps,
        and only the last snapshot among them comes with its figures (the
        viewer shows the latest; the ones before it would be replaced at once)."""
        chunks: list = []       # [line, lo, hi, last item] or a message
        for item in items:
            if isinstance(item, _Steps):
                last = chunks[-1] if chunks else None
                if isinstance(last, list) and last[0] == item.line and last[2] == item.lo:
                    last[2], last[3] = item.hi, item
                else:
                    chunks.append([item.line, item.lo, item.hi, item])
            else:
                chunks.append(item)
        shown: dict[int, int] = {}   # chunk index -> row of each run's last snapshot delivered
        found: set[int] = set()      # the runs whose last snapshot is found
        for k in range(len(chunks) - 1, -1, -1):
            chunk = chunks[k]
            if isinstance(chunk, list) and chunk[3].run not in found:
                rows = [r for r in self._results(chunk[0])[1] if chunk[1] <= r < chunk[2]]
                if rows:
                    shown[k] = max(rows)
                    found.add(chunk[3].run)
        out: list[Message] = []
        # The steps of neighbouring chunks, per run (a sweep's runs take turns):
        # one Steps per run, its lines' columns joined (a StepBlock), folded at once.
        parts_of: dict[int, list] = {}

        def steps_so_far() -> None:
            for run, parts in sorted(parts_of.items()):
                out.append(Steps(StepBlock.concat(parts), run=run))
            parts_of.clear()

        for k, chunk in enumerate(chunks):
            if not isinstance(chunk, list):
                steps_so_far()
                if isinstance(chunk, RunStarted):
                    self._delivered[chunk.run] = (0, chunk.info.config.get("lr", 0.0))
                out.append(chunk)
                continue
            line, lo, hi, last = chunk
            run = last.run
            results, snapshots = self._results(line)
            part = results[lo:hi]
            if k in shown:
                row = shown[k]
                version, payload = snapshots[row]
                stats = decode_snapshot2(payload) if version == 2 else decode_snapshot(payload)
                part = part.with_stats(row - lo, stats)
            parts_of.setdefault(run, []).append(part)
            self._delivered[run] = (last.last, last.lr)
        steps_so_far()
        return out

    def position(self) -> tuple[str, str]:
        """Where the timeline stands, for a viewer's status line: (head, tail)."""
        # the snapshot shown (the cursor's once a catch-up has got there), so
        # that it agrees with the step and lr the status line shows beside it
        shown = bisect.bisect_right(self.marks, min(self.pos, self.target))
        head = (f"replay · snapshot {shown}/{len(self.marks)}" if self.marks
                else "replay · no stats snapshots")
        if self.failed is not None:
            tail = "stopped reading: " + self.failed.replace(str(self.path), self.path.name)
        elif self.playing:
            tail = f"playing {_speed(self.speed)} steps/s"
        elif self.pos < self.target:
            # a catch-up (opening at the end, a seek): not there yet, whatever the file holds
            k = min(self.target, len(self.items)) - 1
            while k >= 0 and not isinstance(self.items[k], _Steps):
                k -= 1
            to = f" to step {self.items[k].last:,}" if k >= 0 else ""
            tail = f"catching up{to} · plays at {_speed(self.speed)} steps/s"
        elif self.target >= len(self.items) and self.loaded:
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
            speed = float(args["steps_per_sec"])
            if not speed > 0:
                raise InputError(f"replay speed: must be > 0 steps/s, got {speed}")
            self.speed = self._user_speed = speed
            if self.playing:
                self.play()

    def close(self) -> None:
        self.pause()
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._file.close()
