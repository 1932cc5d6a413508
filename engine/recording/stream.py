"""The recording format: one JSON document per line, a header first.

    {"format": "traintop-stream", "version": 1, "traintop": "0.1.0", "info": {...}, "meta": {...}}
    {"t": "steps", "results": [...]}        # traintop.engine.recording.feed.Steps, batched
    {"t": "event", "kind": "lr", ...}       # traintop.engine.recording.feed.Event
    {"t": "run", "info": {...}, "why": ...} # traintop.engine.recording.feed.RunStarted (a restart)
    {"t": "status", ...}                    # traintop.engine.recording.feed.Status

The header is the first run's RunStarted. Every line is a whole JSON value
ending in a newline; a line without its newline is still being written (or
its writer crashed) and is never decoded. JSON has no NaN or infinity, so
non-finite floats are written as the strings "NaN", "Infinity" and
"-Infinity" and decoded back to floats; decoding rebuilds the very frozen
dataclasses that were written, so figures round-trip bit for bit.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import time
import zlib
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import IO

from ...data.errors import InputError
from .feed import Event, Message, RunStarted, Status, Steps
from ..results import (Histogram, LayerStats, NonFinite, RunInfo, StatsSnapshot,
                            StepResult, WeightStats)

FORMAT = "traintop-stream"
VERSION = 1


def _traintop_version() -> str:
    try:
        return metadata.version("traintop")
    except metadata.PackageNotFoundError:   # run from a checkout, not installed
        return "unknown"


TRAINTOP_VERSION = _traintop_version()
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ----- encoding ---------------------------------------------------------------
def _num(x: float):
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def _plain(value):
    """Dataclasses to dicts, tuples to lists, non-finite floats to strings."""
    if isinstance(value, Histogram):   # most of a snapshot's floats: the quick way
        return {"lo": _num(value.lo), "hi": _num(value.hi),
                "density": [d if d - d == 0.0 else _num(d) for d in value.density]}
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def _step(r: StepResult) -> list:
    # Compact on purpose: a long run writes hundreds of thousands of these.
    return [r.step, _num(r.loss), _num(r.lr), [_num(x) for x in r.update_ratio_log10],
            _plain(r.stats) if r.stats is not None else None,
            _plain(r.nonfinite) if r.nonfinite is not None else None]


def header(info: RunInfo, meta: dict | None = None) -> dict:
    # `created` makes every recording's first line unique, so a follower can
    # tell a rewritten file from the one it was reading.
    return {"format": FORMAT, "version": VERSION, "traintop": TRAINTOP_VERSION,
            "created": time.time(), "info": _plain(info), "meta": _plain(meta or {})}


def encode(message: Message) -> dict:
    if isinstance(message, Steps):
        return {"t": "steps", "results": [_step(r) for r in message.results]}
    if isinstance(message, Event):
        return {"t": "event", "kind": message.kind, "step": message.step, "text": message.text,
                "data": _plain(message.data)}
    if isinstance(message, RunStarted):
        return {"t": "run", "info": _plain(message.info), "why": message.why}
    if isinstance(message, Status):
        return {"t": "status", **_plain(message)}
    raise TypeError(f"not a feed message: {type(message).__name__}")


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n").encode()


# ----- decoding ---------------------------------------------------------------
def _f(x) -> float:
    if isinstance(x, str):
        return _NONFINITE[x]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}")
    return float(x)


def _floats(xs) -> tuple[float, ...]:
    return tuple(_f(x) for x in xs)


def _data(value):
    """Event data back from JSON: the non-finite strings become floats again."""
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, list):
        return [_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items()}
    return value


def _hist(d: dict) -> Histogram:
    return Histogram(lo=_f(d["lo"]), hi=_f(d["hi"]), density=_floats(d["density"]))


def _layer(d: dict) -> LayerStats:
    return LayerStats(index=int(d["index"]), kind=str(d["kind"]), mean=_f(d["mean"]),
                      std=_f(d["std"]), saturation_pct=_f(d["saturation_pct"]),
                      dead=int(d["dead"]), units=int(d["units"]), grad_mean=_f(d["grad_mean"]),
                      grad_std=_f(d["grad_std"]), hist=_hist(d["hist"]),
                      grad_hist=_hist(d["grad_hist"]), name=str(d.get("name", "")),
                      family=str(d.get("family", "")), per_unit=int(d.get("per_unit", 0)))


def _weight(d: dict) -> WeightStats:
    return WeightStats(name=str(d["name"]), shape=tuple(int(s) for s in d["shape"]),
                       grad_mean=_f(d["grad_mean"]), grad_std=_f(d["grad_std"]),
                       grad_data_ratio=_f(d["grad_data_ratio"]), hist=_hist(d["hist"]))


def decode_snapshot(d: dict) -> StatsSnapshot:
    return StatsSnapshot(step=int(d["step"]), loss=_f(d["loss"]), lr=_f(d["lr"]),
                         layers=tuple(_layer(x) for x in d["layers"]),
                         weights=tuple(_weight(x) for x in d["weights"]),
                         update_ratio_log10=_floats(d["update_ratio_log10"]))


def _decode_step(row: list) -> StepResult:
    step, loss, lr, ratios, stats, nonfinite = row
    return StepResult(
        step=int(step), loss=_f(loss), lr=_f(lr), update_ratio_log10=_floats(ratios),
        stats=decode_snapshot(stats) if stats is not None else None,
        nonfinite=NonFinite(int(nonfinite["step"]), str(nonfinite["where"]),
                            str(nonfinite["what"])) if nonfinite is not None else None)


def decode_info(d: dict) -> RunInfo:
    return RunInfo(config=dict(d["config"]), vocab=str(d["vocab"]),
                   param_names=tuple(str(n) for n in d["param_names"]),
                   param_shapes=tuple(tuple(int(s) for s in shape) for shape in d["param_shapes"]),
                   layer_kinds=tuple(str(k) for k in d["layer_kinds"]),
                   expected_initial_loss=_f(d["expected_initial_loss"]))


def decode(doc: dict) -> Message:
    kind = doc["t"]
    if kind == "steps":
        return Steps(tuple(_decode_step(r) for r in doc["results"]))
    if kind == "event":
        return Event(str(doc["kind"]), int(doc["step"]), str(doc["text"]), _data(doc["data"]))
    if kind == "run":
        return RunStarted(decode_info(doc["info"]), doc["why"])
    if kind == "status":
        return Status(step=int(doc["step"]), lr=_f(doc["lr"]), running=bool(doc["running"]),
                      finished=bool(doc["finished"]), steps_per_sec=_f(doc["steps_per_sec"]),
                      stopped=doc.get("stopped"))
    raise ValueError(f"unknown line type {kind!r}")


# ----- reading ----------------------------------------------------------------
class LineDecoder:
    """Bytes in, messages out; keeps a partial last line until it is complete.

    The first complete line must be the header; it comes out as RunStarted
    with `.meta` holding the header's meta. Errors name the file and line.
    """

    def __init__(self, name: str):
        self.name = name
        self.line = 0            # complete lines decoded so far
        self.meta: dict = {}
        self.header: dict | None = None
        self._buffer = b""

    @property
    def pending(self) -> bool:
        """True when an unfinished line is waiting for its newline."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[Message] = []
        for raw in lines:
            self.line += 1
            if not raw.strip():
                continue
            out.append(self._decode(raw))
        return out

    def _fail(self, why: str) -> InputError:
        return InputError(f"{self.name}:{self.line}: {why}")

    def _decode(self, raw: bytes) -> Message:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._fail("corrupt line (not JSON)") from None
        if not isinstance(doc, dict):
            raise self._fail("corrupt line (not a JSON object)")
        if self.header is None:
            return self._read_header(doc)
        try:
            return decode(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._fail(f"corrupt line ({type(exc).__name__}: {exc})") from None

    def _read_header(self, doc: dict) -> RunStarted:
        if doc.get("format") != FORMAT:
            raise self._fail(f"not a traintop recording (no {FORMAT!r} header)")
        version = doc.get("version")
        if not isinstance(version, int) or version > VERSION or version < 1:
            raise self._fail(f"stream format version {version!r} is newer than this traintop "
                             f"reads (version {VERSION}); upgrade traintop")
        try:
            info = decode_info(doc["info"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._fail(f"corrupt header ({type(exc).__name__}: {exc})") from None
        self.header = doc
        self.meta = dict(doc.get("meta") or {})
        return RunStarted(info, None)


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


@dataclass(frozen=True)
class Recording:
    """A whole recording: the header's meta and every complete message."""

    path: str
    meta: dict
    messages: tuple[Message, ...]
    partial_tail: bool   # the file ends in an unfinished line (writer busy or crashed)


def load(path: str | Path) -> Recording:
    """Read a recording; a partial last line is left out, bad input raises InputError."""
    path = Path(path)
    decoder = LineDecoder(str(path))
    inflater = Inflater(is_gzip(path))
    messages: list[Message] = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with f:
        while chunk := f.read(1 << 20):
            try:
                data = inflater.feed(chunk)
            except ValueError as exc:
                raise InputError(f"{path}: {exc}") from None
            messages += decoder.feed(data)
    if decoder.header is None:
        raise InputError(f"{path}: empty recording (no complete header line)")
    return Recording(str(path), decoder.meta, tuple(messages), decoder.pending)


# ----- writing ----------------------------------------------------------------
class StreamWriter:
    """Appends whole lines to a new recording; flush() makes them visible.

    Lines are written to the file only whole, so a reader never decodes
    half of one; gzip output is sync-flushed so readers can decompress what
    was flushed, and a writer killed between flushes leaves a readable file.
    """

    def __init__(self, path: str | Path, info: RunInfo, meta: dict | None = None):
        self.path = Path(path)
        try:
            raw = open(self.path, "wb")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        self._raw = raw
        self._file: IO[bytes] = (gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
                                 if is_gzip(self.path) else raw)
        self._pending = io.BytesIO()
        self.lines = 0
        self.write_doc(header(info, meta))
        self.flush()

    def write_doc(self, doc: dict) -> None:
        self._pending.write(dumps(doc))
        self.lines += 1

    def write(self, message: Message) -> None:
        self.write_doc(encode(message))

    def flush(self) -> None:
        data = self._pending.getvalue()
        if data:
            self._file.write(data)
            self._pending = io.BytesIO()
        if isinstance(self._file, gzip.GzipFile):
            self._file.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()

    def close(self) -> None:
        if self._raw.closed:
            return
        self.flush()
        if self._file is not self._raw:
            self._file.close()
        self._raw.close()
