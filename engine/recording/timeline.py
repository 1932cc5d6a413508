"""Where a replay stands on its index: the cursor, what is delivered, play.

`target` counts the items the cursor takes in, `pos` those delivered so far.
The cursor moves through the snapshots read so far (next/previous,
home/end, play at a speed in steps per second) and never waits for the
rest of the file. Moving back sets `rewind`: the source starts the run over
(a viewer clears what it holds and rebuilds, as for a live run).
"""

from __future__ import annotations

from traintop.data.errors import InputError
from traintop.engine.recording.replay_index import Item, ReplayIndex

PLAY_SECONDS = 30.0   # default play speed runs the whole recording in about this long


class Timeline:
    def __init__(self, index: ReplayIndex, speed: float | None, at_end: bool, clock):
        self.index = index
        self._clock = clock
        self._user_speed = speed
        self.pos = 0                   # items delivered
        self._follow_end = at_end      # the target stays at the end while the file is read
        self._target = 0
        self.playing = False
        self._play_from: tuple[float, float] | None = None
        self._rewind = False

    @property
    def target(self) -> int:
        return len(self.index.items) if self._follow_end else self._target

    @target.setter
    def target(self, value: int) -> None:
        self._target = value

    @property
    def speed(self) -> float:
        """Steps per second: the user's, else the whole run in about PLAY_SECONDS."""
        if self._user_speed is not None:
            return self._user_speed
        return max(1.0, self.index.last_step / PLAY_SECONDS)

    @speed.setter
    def speed(self, value: float) -> None:
        self._user_speed = value

    def _unfollow(self) -> None:
        """The target stops following the end where it stands now."""
        self._target = self.target
        self._follow_end = False

    @property
    def cursor(self) -> int:
        """Index of the snapshot the target shows (-1: before the first)."""
        target = self.target
        return sum(1 for m in self.index.marks if m <= target) - 1

    @property
    def catching_up(self) -> bool:
        """Delivering its way to the cursor (opening at the end, a seek), not playing:
        a viewer draws its panes once it is there, not on the way."""
        return not self.playing and self.pos < self.target

    @property
    def step(self) -> int:
        """Step of the last item the target includes."""
        for item in reversed(self.index.items[:self.target]):
            if isinstance(item, Item):
                return item.last
        return 0

    def seek(self, index: int) -> None:
        """Go to snapshot `index` (clamped); past the last means the very end."""
        self.pause()
        marks = self.index.marks
        if not marks or index >= len(marks):
            self._follow_end = True
            self._go(len(self.index.items))
        else:
            self._go(marks[max(0, index)])

    def next(self) -> None:
        self.seek(self.cursor + 1)

    def previous(self) -> None:
        k = self.cursor
        if k >= 0 and self.target > self.index.marks[k]:
            self.seek(k)       # past the snapshot shown (at the end): back onto it
        else:
            self.seek(max(0, k - 1))

    def home(self) -> None:
        self.seek(0)

    def end(self) -> None:
        self.seek(len(self.index.marks))

    def play(self, speed: float | None = None) -> None:
        if speed is not None:
            self.set_speed(speed)
        self._unfollow()
        if self.target >= len(self.index.items):
            marks = self.index.marks
            self._go(marks[0] if marks else 0)   # play from the start again
        self.playing = True
        self._play_from = (self._clock(), float(self.step))

    def set_speed(self, speed: float) -> None:
        if not speed > 0:
            raise InputError(f"replay speed: must be > 0 steps/s, got {speed}")
        self._user_speed = speed

    def pause(self) -> None:
        self.playing = False
        self._play_from = None

    def _go(self, target: int) -> None:
        items = len(self.index.items)
        if target < items:
            self._unfollow()
        target = max(0, min(items, target))
        if target < self.pos:
            self._rewind = True
        self._target = target

    def advance_play(self) -> None:
        """While playing: the target on to the steps now due."""
        started, from_step = self._play_from
        upto = from_step + (self._clock() - started) * self.speed
        target, items = self.target, self.index.items
        # Whole items only: a step shows when its grain's last step is due.
        while target < len(items) and (not isinstance(items[target], Item)
                                       or items[target].last <= upto):
            target += 1
        self._target = target
        if target >= len(items) and self.index.loaded:
            self.pause()
