"""A replay's steps lines decoded again when delivered, the last few kept.

A line comes back as columns (a StepBlock) without its snapshots, and the
snapshots' payloads undecoded: a viewer catching up shows only the last
snapshot it is given, so only that one is decoded (replay_delivery)."""

from __future__ import annotations

import json
import os
import zlib
from collections import OrderedDict

from traintop.engine.recording.decode import decode, without_snapshots
from traintop.engine.step_block import StepBlock

LINES_CACHED = 4


class LineCache:
    """`lines[k]`: where steps line k lies, as ReplayIndex keeps it."""

    def __init__(self, fileno: int, lines: list, size: int = LINES_CACHED):
        self._fileno = fileno
        self._lines = lines
        self._size = size
        self._cache: OrderedDict[int, tuple] = OrderedDict()

    def results(self, line: int) -> tuple[StepBlock, dict[int, tuple[int, dict]]]:
        """(the line's steps without their snapshots, {row: (version, payload)})."""
        cached = self._cache.get(line)
        if cached is not None:
            self._cache.move_to_end(line)
            return cached
        where = self._lines[line]
        if isinstance(where, bytes):
            raw = zlib.decompress(where)
        else:
            raw = os.pread(self._fileno, where[1], where[0])
        doc, snapshots = without_snapshots(json.loads(raw))
        cached = (StepBlock.of(decode(doc).results), snapshots)
        self._cache[line] = cached
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return cached
