"""Whole messages from the trainer child's queue, read without ever blocking.

A multiprocessing.Queue's reader blocks until a message it has begun to read
is complete. A child killed in the middle of a put (kill -9, the
out-of-memory killer) leaves half a message in the pipe, and the viewer,
which holds the pipe's write end too, would wait for the rest forever: its
poll hung the app (seen when a kill raced the viewer's poll). So the viewer
reads the pipe itself, non-blocking, into a buffer, and unpickles only whole
frames (multiprocessing.connection's: a "!i" length, or -1 and a "!Q" one for
more than 2 GiB, then the pickle); half a frame waits for its rest, and is
dropped with the pipe when the child is gone.
"""

from __future__ import annotations

import os
import pickle
import struct

READ_MAX = 8 << 20     # bytes taken from the pipe in one poll, at most


class FrameReader:
    def __init__(self, connection):
        self._connection = connection     # kept: its fd stays open as long as we read it
        self._fd = connection.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = bytearray()
        self.closed = False               # the write end is gone everywhere (EOF)
        self.skipped = 0                  # frames that did not unpickle

    def read(self, limit: int = 1000) -> list:
        """Up to `limit` whole messages from what the pipe holds now."""
        taken = 0
        while taken < READ_MAX and not self.closed:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self._buffer += chunk
            taken += len(chunk)
        return self._frames(limit)

    def _frames(self, limit: int) -> list:
        out = []
        buffer = self._buffer
        start = 0
        while len(out) < limit:
            if len(buffer) - start < 4:
                break
            (size,) = struct.unpack_from("!i", buffer, start)
            head = 4
            if size == -1:
                if len(buffer) - start < 12:
                    break
                (size,) = struct.unpack_from("!Q", buffer, start + 4)
                head = 12
            end = start + head + size
            if len(buffer) < end:
                break
            try:
                out.append(pickle.loads(bytes(buffer[start + head:end])))
            except Exception:  # noqa: BLE001 - a frame that does not unpickle is skipped, not retried
                self.skipped += 1
            start = end
        del buffer[:start]
        return out
