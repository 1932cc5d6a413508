"""FolderSource: every recording a list of PATHs names, as one sweep of runs.

Each recording is read by its own FollowSource (its lines, its restarts,
its quiet writer); this source renumbers their messages into one run index
(the file's order of discovery: a run keeps its index, so its colour, for
as long as the viewer is open) and says the runs as a Sweep with no swept
keys, labelled by what differs (traintop.engine.recording.folder). A
recording that is itself a sweep adds one run per run of it.

replay (follow=False): the recordings there when it opens, each read whole
in turn (WholeRecording: as `replay --json` folds it), one file open at a time. attach
(follow=True): the PATHs are looked at again every RESCAN_SECONDS, and a
recording that appears later (a new Tune trial, a late rank) joins as a
new run (Sweep with grows=True: the runs already there keep their state).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Command, Event, Message, Status, Steps, Sweep
from traintop.engine.recording.coalesce import coalesced
from traintop.engine.recording.folder import Found, discover, labels
from traintop.engine.recording.follow_source import FollowSource
from traintop.engine.recording.lines import LineDecoder
from traintop.engine.recording.opener import read
from traintop.engine.step_block import StepBlock

RESCAN_SECONDS = 1.0
POLL_SECONDS = 0.05     # a poll's reading stops after this long; the next goes on


class WholeRecording:
    """A finished recording read start to end, as `replay --json` folds it:
    its steps coalesced into blocks, their stats snapshots left undecoded
    but a run's latest where its block goes out (at its end, or before an
    event of its own), so a folder of hundreds of recordings reads in
    seconds, and its figures and findings are those its --json prints.
    One file is open at a time: the one being read."""

    def __init__(self, path: Path):
        self.path = path
        self.decoder = LineDecoder(str(path), snapshots=False)
        self._messages = None
        self._held: dict[int, Steps] = {}    # run -> its latest block, not gone out yet
        self.done = False
        self.failed: str | None = None
        self.finished = self.quiet = False

    def start(self) -> None:
        pass      # opened by the first poll: one file open at a time

    def poll(self, limit: int = 1000) -> list[Message]:
        if self.done:
            return []
        if self._messages is None:
            self._messages = coalesced(read(self.path, self.decoder))
        out: list[Message] = []
        while len(out) < limit:
            try:
                m = next(self._messages)
            except StopIteration:
                self.done = self.finished = True
                break
            except InputError as exc:   # cut short or corrupt: what was read stays
                self.done, self.failed = True, str(exc)
                out += self._release()
                out.append(Event("error", 0, self.failed))
                return out
            if isinstance(m, Steps):
                out += self._release(m.run)
                self._held[m.run] = m
            elif isinstance(m, Status):
                out.append(m)            # where it stands: no need to wait for the steps
            else:
                out += self._release(getattr(m, "run", None))
                out.append(m)
        if self.done:
            out += self._release()
        return out

    def _release(self, run: int | None = None) -> list[Message]:
        """The held blocks (of `run`, or every run), each with its run's latest
        snapshot where that is one of its steps."""
        out = []
        for r in ([run] if run is not None else list(self._held)):
            held = self._held.pop(r, None)
            if held is None:
                continue
            with_snapshot([held], self._snapshot(r))
            out.append(held)
        return out

    def _snapshot(self, run: int):
        try:
            return self.decoder.snapshot(run)
        except InputError:
            return None

    def position(self) -> tuple[str, str | None]:
        return "replay", None

    def close(self) -> None:
        if self._messages is not None:
            self._messages.close()     # the generator's `with` closes the file
        self.done = True


@dataclasses.dataclass
class FileRun:
    """One recording and the runs it feeds."""

    found: Found
    source: FollowSource | WholeRecording
    slots: list[int]                       # its run k -> the view's run index
    inner: tuple[str, ...] = ()            # a sweep recording's own labels
    done: bool = False                     # replay: read to its end and closed
    caught_up: bool = False                # attach: read once to where its writer is


class FolderSource:
    read_only = True

    def __init__(self, paths: list[str], follow: bool = False, quiet_after: float = 10.0,
                 jump: bool = True, clock=time.monotonic):
        self.paths = [str(p) for p in paths]
        self.follow = follow
        # a replay's files are finished: none of them is ever called quiet
        self.quiet_after = quiet_after if follow else float("inf")
        self.jump = jump
        self._clock = clock
        self.files: list[FileRun] = []
        self.owner: list[tuple[int, int]] = []   # run index -> (file, its run)
        self.left_out: list[Path] = []           # files under the PATHs that are no recording
        self._scanned = clock()
        self._cursor = 0
        self._announce = False
        self._started = False
        self._add(missing_ok=follow)
        if not follow and not self.files:
            raise InputError(f"{' '.join(self.paths)}: no traintop recordings found")

    # ----- the runs ------------------------------------------------------------
    def _add(self, missing_ok: bool) -> None:
        known = {f.found.path for f in self.files}
        new, self.left_out = discover(self.paths, known, missing_ok)
        for found in new:
            source = (FollowSource(found.path, quiet_after=self.quiet_after, clock=self._clock,
                                   jump=self.jump, snapshots=False)
                      if self.follow else WholeRecording(found.path))
            self.files.append(FileRun(found, source, [len(self.owner)]))
            self.owner.append((len(self.files) - 1, 0))
            if self._started:
                source.start()
            self._announce = True

    def labels(self) -> list[str]:
        """Every run's label: its recording's, and a sweep recording's own after it."""
        files = labels([f.found for f in self.files])
        out = []
        for file, k in self.owner:
            inner = self.files[file].inner
            if inner:
                out.append(f"{files[file]} {inner[k]}" if len(self.files) > 1 else inner[k])
            else:
                out.append(files[file])
        return out

    def sweep(self) -> Sweep:
        return Sweep(tuple(self.labels()), (), grows=True)

    def run_paths(self) -> list[Path]:
        return [self.files[file].found.path for file, _ in self.owner]

    # ----- Source --------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        for f in self.files:
            f.source.start()

    def poll(self, limit: int = 1000) -> list[Message]:
        out: list[Message] = []
        now = self._clock()
        if self.follow and now - self._scanned >= RESCAN_SECONDS:
            self._scanned = now
            self._add(missing_ok=True)
        if self._announce:
            self._announce = False
            out.append(self.sweep())
        deadline = time.monotonic() + POLL_SECONDS
        if not self.follow:
            # one recording after the other, each read whole (one file open at a time)
            for k, f in enumerate(self.files):
                while not f.done and len(out) < limit and time.monotonic() <= deadline:
                    for m in f.source.poll(limit):
                        out += self._renumbered(k, f, m)
                    f.done = f.source.done
                if not f.done:
                    break
            return out
        for j in range(len(self.files)):
            k = (self._cursor + j) % len(self.files)
            f = self.files[k]
            # a version 1 file's rows as a block too: it can then take its snapshot
            got = [dataclasses.replace(m, results=StepBlock.of(m.results))
                   if isinstance(m, Steps) and not isinstance(m.results, StepBlock) else m
                   for m in f.source.poll(limit)]
            by_run: dict[int, list[Steps]] = {}
            for m in got:
                if isinstance(m, Steps):
                    by_run.setdefault(m.run, []).append(m)
            for run, steps in by_run.items():   # the poll's latest snapshot of each run
                with_snapshot(steps, self._snapshot(f.source, run))
            for m in got:
                out += self._renumbered(k, f, m)
            # (fewer than asked: the follower's queue is empty too)
            f.caught_up = f.caught_up or not got or len(got) < limit and at_end(f.source)
            if time.monotonic() > deadline or len(out) >= limit:
                self._cursor = (k + 1) % len(self.files)
                break
        return out

    @property
    def catching_up(self) -> bool:
        """Still reading the recordings there when it opened (a replay's, or
        the backlog an attach joins): the app draws once they are in."""
        if not self.follow:
            return not self.loaded
        return not all(f.caught_up for f in self.files)

    def _renumbered(self, k: int, f: FileRun, m: Message) -> list[Message]:
        if isinstance(m, Sweep):      # a sweep recording: one run per run of it
            f.inner = tuple(m.labels)
            for j in range(len(f.slots), len(m.labels)):
                f.slots.append(len(self.owner))
                self.owner.append((k, j))
            return [self.sweep()]
        run = getattr(m, "run", 0)
        if not 0 <= run < len(f.slots):
            return []                 # a run its header never announced: the file's fault
        return [dataclasses.replace(m, run=f.slots[run])]

    @staticmethod
    def _snapshot(source: FollowSource, run: int):
        try:
            return source.snapshot(run)
        except InputError:
            return None

    # ----- where the writers stand ---------------------------------------------
    def writer(self, file: int) -> str:
        """live, finished, quiet, waiting or failed: the writer of one recording."""
        s = self.files[file].source
        if s.failed is not None:
            return "failed"
        if s.finished or self.files[file].done:
            return "finished"
        if s.quiet:
            return "quiet"
        return "live"

    def writers(self) -> list[str]:
        """Each run's writer (a sweep recording's runs share theirs)."""
        return [self.writer(file) for file, _ in self.owner]

    @property
    def loaded(self) -> bool:
        return all(f.done for f in self.files)

    @property
    def finished(self) -> bool:
        return all(self.writer(k) == "finished" for k in range(len(self.files)))

    def position(self) -> "Position":
        """(head, tail) for the status line: how many writers are live,
        finished, quiet; a replay's, how many recordings are still being read.
        `.by_run`: each run's own tail, for its view (its writer quiet, ...)."""
        n = len(self.files)
        if not self.follow:
            reading = sum(not f.done for f in self.files)
            return Position("replay", f"reading {n - reading} of {n} recordings"
                            if reading else None)
        by_run = tuple(self.files[file].source.position()[1] for file, _ in self.owner)
        counts: dict[str, int] = {}
        for k in range(n):
            word = self.writer(k)
            counts[word] = counts.get(word, 0) + 1
        if not n:
            return Position("attach", f"waiting for recordings under {' '.join(self.paths)}")
        words = [f"{counts[w]} {w}" for w in ("live", "quiet", "finished", "failed")
                 if w in counts]
        caught = sum(f.caught_up for f in self.files)
        if caught < n:      # the backlog first: the panes are drawn once it is read
            words.insert(0, f"reading {caught} of {n} recordings")
        return Position("attach", " · ".join(words), by_run)

    def send(self, command: Command) -> None:
        pass    # recordings take no commands

    def close(self) -> None:
        for f in self.files:
            f.source.close()


class Position(tuple):
    """(head, tail) as every source's position(), and each run's own tail."""

    def __new__(cls, head: str, tail: str | None, by_run: tuple = ()):
        self = super().__new__(cls, (head, tail))
        self.by_run = by_run
        return self


def at_end(source: FollowSource) -> bool:
    """The follower has read its file as far as the writer has written it (a
    busy writer may never leave a poll with nothing new)."""
    file = source._file      # the follower's open file, its offset: same package
    return file is None or source._offset >= file.size


def with_snapshot(steps: list[Steps], snapshot) -> None:
    """Give `snapshot` to the latest of `steps` (a run's blocks, in order)
    that holds its step: a follower or reader that left the snapshots out
    (decoding each costs ~1 ms) hands the viewer the latest one only."""
    if snapshot is None:
        return
    import numpy as np   # where used: the app's first frame does not wait for it

    for m in reversed(steps):
        block = m.results
        if isinstance(block, StepBlock):
            rows = np.flatnonzero(block.steps == snapshot.step)
            if len(rows):
                block.stats = {**block.stats, int(rows[-1]): snapshot}
                return
