"""StreamWriter: a new recording, written whole line by whole line."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import IO

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Message, Sweep
from traintop.engine.recording.encode import dumps, encode, header
from traintop.engine.recording.lines import is_gzip
from traintop.engine.results import RunInfo


class StreamWriter:
    """Appends whole lines to a new recording; flush() makes them visible.

    Lines are written to the file only whole, so a reader never decodes
    half of one; gzip output is sync-flushed so readers can decompress what
    was flushed, and a writer killed between flushes leaves a readable file.
    """

    def __init__(self, path: str | Path, info: RunInfo, meta: dict | None = None,
                 sweep: Sweep | None = None):
        self.path = Path(path)
        try:
            raw = open(self.path, "wb")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        self._raw = raw
        self._file: IO[bytes] = (gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
                                 if is_gzip(self.path) else raw)
        self._pending = io.BytesIO()
        self._totals: dict = {}    # each histogram's item count, for the next snapshot
        self.lines = 0
        self.write_doc(header(info, meta, sweep))
        self.flush()

    def write_doc(self, doc: dict) -> None:
        self._pending.write(dumps(doc))
        self.lines += 1

    def write(self, message: Message) -> None:
        self.write_doc(encode(message, self._totals))

    def flush(self) -> None:
        data = self._pending.getvalue()
        if data:
            self._file.write(data)
            self._pending = io.BytesIO()
        if isinstance(self._file, gzip.GzipFile):
            self._file.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()

    def abandon(self) -> None:
        """Close without writing what the buffers still hold. After a write
        error the file is cut back to whole lines; a buffer flushed later (at
        exit, when the cut has freed space) would write a part-line past it."""
        try:
            self._raw.raw.close()   # the OS file: the buffers above it write nothing more
        except (OSError, ValueError, AttributeError):
            pass

    def close(self) -> None:
        if self._raw.closed:
            return
        self.flush()
        if self._file is not self._raw:
            self._file.close()
        self._raw.close()
