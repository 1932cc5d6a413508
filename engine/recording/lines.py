"""Stream bytes to messages: whole lines decoded as they complete (LineDecoder),
gzip inflated as it arrives (Inflater)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Message, RunStarted, Sweep
from traintop.engine.recording import errors
from traintop.engine.recording import format as stream_format
from traintop.engine.recording.decode import decode, decode_info, snapshot_of, without_snapshots
from traintop.engine.results import StatsSnapshot

# What a decoder raises on a line whose fields are wrong: a corrupt line.
DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class LineDecoder:
    """Bytes in, messages out; keeps a partial last line until it is complete.

    The first complete line must be the header; it comes out as RunStarted
    with `.meta` holding the header's meta. Errors name the file and line.
    """

    def __init__(self, name: str, snapshots: bool = True):
        self.name = name
        self.line = 0            # complete lines decoded so far
        self.meta: dict = {}
        self.header: dict | None = None
        self._buffer = b""
        # snapshots=False: step results come without their stats snapshots (a
        # summary needs only the last), the last one kept undecoded here.
        self.snapshots = snapshots
        # run -> (format version, payload) of its last snapshot
        self.last_snapshots: dict[int, tuple[int, dict]] = {}
        self.sweep: Sweep | None = None   # the header's sweep, if it holds several runs

    @property
    def pending(self) -> bool:
        """True when an unfinished line is waiting for its newline."""
        return bool(self._buffer)

    def split(self, data: bytes) -> list[bytes]:
        """The lines `data` completes; the rest waits for its newline."""
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        return lines

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        for raw in self.split(data):
            self.line += 1
            if not raw.strip():
                continue
            doc = self.parse(raw)
            if self.header is None:
                out += self.header_messages(doc)
            else:
                out.append(self.decode_doc(doc))
        return out

    def fail(self, why: str) -> InputError:
        return errors.at_line(self.name, self.line, why)

    def corrupt(self, exc: Exception) -> InputError:
        return errors.corrupt_line(self.name, self.line, errors.why(exc))

    def parse(self, raw: bytes) -> dict:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise errors.corrupt_line(self.name, self.line, "not JSON") from None
        if not isinstance(doc, dict):
            raise errors.corrupt_line(self.name, self.line, "not a JSON object")
        return doc

    def decode_doc(self, doc: dict) -> Message:
        try:
            if not self.snapshots:
                doc = self._without_snapshots(doc)
            return decode(doc)
        except DECODE_ERRORS as exc:
            raise self.corrupt(exc) from None

    def _without_snapshots(self, doc: dict) -> dict:
        run = doc.get("r", 0)
        if doc.get("t") == "run":
            self.last_snapshots.pop(run, None)   # a restart: the new run's snapshots only
        doc, snapshots = without_snapshots(doc)
        if snapshots:
            self.last_snapshots[run] = snapshots[max(snapshots)]
        return doc

    def snapshot(self, run: int = 0) -> StatsSnapshot | None:
        """The last snapshot of `run` a snapshots=False decoder left out, decoded."""
        if run not in self.last_snapshots:
            return None
        try:
            return snapshot_of(*self.last_snapshots[run])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(f"corrupt snapshot ({errors.why(exc)})") from None

    def read_header(self, doc: dict) -> RunStarted:
        if doc.get("format") != stream_format.FORMAT:
            raise errors.not_a_recording(self.name, self.line)
        version = doc.get("version")
        if not isinstance(version, int) or version not in stream_format.READS:
            raise errors.newer_version(self.name, self.line, version)
        try:
            info = decode_info(doc["info"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.corrupt_header(self.name, self.line, errors.why(exc)) from None
        sweep = doc.get("sweep")
        if sweep is not None:
            try:
                self.sweep = Sweep(tuple(str(x) for x in sweep["labels"]),
                                   tuple(str(x) for x in sweep["keys"]))
            except (KeyError, TypeError) as exc:
                raise errors.corrupt_header(self.name, self.line, errors.why(exc)) from None
            if not self.sweep.labels:
                raise errors.corrupt_header(self.name, self.line, "a sweep of no runs")
        self.header = doc
        self.meta = dict(doc.get("meta") or {})
        return RunStarted(info, None)

    def header_messages(self, doc: dict) -> list[Message]:
        """The header as messages: a sweep's Sweep first, then run 0's RunStarted."""
        start = self.read_header(doc)
        return [self.sweep, start] if self.sweep is not None else [start]


class Inflater:
    """Raw file bytes to stream bytes: gzip decompressed incrementally, so a
    gzip file still being written (or cut off by a crash) reads up to where
    it got, and a writer's later gzip members are read too."""

    def __init__(self, gzipped: bool):
        self.gzipped = gzipped
        self._z = zlib.decompressobj(wbits=31) if gzipped else None

    def feed(self, data: bytes) -> bytes:
        if self._z is None:
            return data
        out = b""
        while data:
            try:
                out += self._z.decompress(data)
            except zlib.error as exc:
                raise ValueError(f"corrupt gzip data ({exc})") from None
            data = self._z.unused_data
            if self._z.eof:
                self._z = zlib.decompressobj(wbits=31)
            else:
                data = b""
        return out


def is_gzip(path: str | Path) -> bool:
    return str(path).endswith(".gz")
