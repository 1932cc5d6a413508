"""The one way a recording is opened and read: every reader (replay, attach,
the summaries, the export) goes through here, so a missing, unreadable,
foreign or corrupt file is said in the same words (errors) everywhere.

HEAD_BYTES: how much of a file a viewer checks before its screen opens (a
long file is not read whole first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from traintop.engine.feed.messages import Message
from traintop.engine.recording import errors
from traintop.engine.recording.lines import Inflater, LineDecoder, is_gzip

HEAD_BYTES = 1 << 20
CHUNK = 1 << 20       # bytes a reader reads at a time


class RecordingFile:
    """An open recording: its raw bytes read in chunks and turned into stream
    bytes (gzip inflated as it comes), bad bytes said as InputError."""

    def __init__(self, path: Path, file: BinaryIO):
        self.path = path
        self.file = file
        self.gzip = is_gzip(path)
        self._inflater = Inflater(self.gzip)
        self.read_bytes = 0      # raw file bytes read so far

    @property
    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def fileno(self) -> int:
        return self.file.fileno()

    def read_raw(self, n: int = CHUNK) -> bytes:
        chunk = self.file.read(n)
        self.read_bytes += len(chunk)
        return chunk

    def inflate(self, raw: bytes) -> bytes:
        try:
            return self._inflater.feed(raw)
        except ValueError as exc:
            raise errors.bad_bytes(self.path, exc) from None

    def read(self, n: int = CHUNK) -> tuple[bytes, bytes]:
        """(raw bytes, their stream bytes); b"" raw at the end of the file."""
        raw = self.read_raw(n)
        return raw, self.inflate(raw)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "RecordingFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_recording(path: str | Path, missing_ok: bool = False) -> RecordingFile | None:
    """The file opened for reading; None only where `missing_ok` and it is not
    there (yet: a follower waits for its writer)."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise errors.no_such_file(path) from None
    except OSError as exc:
        raise errors.cannot_read(path, exc) from None
    return RecordingFile(path, f)


def check_head(path: str | Path) -> None:
    """A corrupt line or an unknown version in the file's first HEAD_BYTES:
    InputError. A missing or empty file passes (its writer may not have
    started yet)."""
    recording = open_recording(path, missing_ok=True)
    if recording is None:
        return
    with recording:
        LineDecoder(str(path)).feed(recording.read(HEAD_BYTES)[1])


@dataclass(frozen=True)
class Recording:
    """A whole recording: the header's meta and every complete message."""

    path: str
    meta: dict
    messages: tuple[Message, ...]
    partial_tail: bool   # the file ends in an unfinished line (writer busy or crashed)


def read(path: str | Path, decoder: LineDecoder | None = None) -> Iterator[Message]:
    """The messages of a recording as they are read, holding none of them: a
    long run folds in bounded memory. A partial last line is left out (see
    decoder.pending after the last); bad input raises InputError."""
    path = Path(path)
    decoder = decoder or LineDecoder(str(path))
    with open_recording(path) as recording:
        while True:
            raw, data = recording.read()
            if not raw:
                break
            yield from decoder.feed(data)
    if decoder.header is None:
        raise errors.empty(path)


def load(path: str | Path) -> Recording:
    """Read a whole recording; a partial last line is left out, bad input raises InputError."""
    decoder = LineDecoder(str(path))
    messages = tuple(read(path, decoder))
    return Recording(str(path), decoder.meta, messages, decoder.pending)
