"""The recording format: one JSON document per line, a header first.

    {"format": "traintop-stream", "version": 2, "traintop": "0.1.0", "info": {...}, "meta": {...}}
    {"t": "s", "n": 100, "step": 1, "loss": "f...", "lr": [[0.1, 100]], "p": 19, "u": "f...",
     "x": {"99": {...}}}                    # traintop.engine.feed.messages.Steps, columnar
    {"t": "event", "kind": "lr", ...}       # traintop.engine.feed.messages.Event
    {"t": "run", "info": {...}, "why": ...} # traintop.engine.feed.messages.RunStarted (a restart)
    {"t": "status", ...}                    # traintop.engine.feed.messages.Status

A sweep (several runs side by side, feed.Sweep) is version 3: the header adds
`"sweep": {"labels": [...], "keys": [...]}` (its info is run 0's) and every
line of a run other than run 0 adds `"r": K`, the run's index. A reader of
versions 1-2 refuses such a file ("version 3 is newer than this traintop
reads") instead of folding its runs into one; a recording of one run stays
version 2, byte for byte as before.

Version 2 writes step results as columnar blocks: losses and update:data
ratios as packed float arrays, the lr as runs of equal values, the stats
snapshots of the block keyed by row, their figures packed and their
histograms as integer counts (traintop.engine.recording.packing), and such a
line decodes to columns too: a Steps whose results are a StepBlock
(traintop.engine.step_block), which builds each StepResult only when asked.
Version 1 wrote every step as a row of JSON numbers (`{"t": "steps",
"results": [...]}`) and every histogram as densities; both are read.

The header is the first run's RunStarted. Every line is a whole JSON value
ending in a newline; a line without its newline is still being written (or
its writer crashed) and is never decoded. JSON has no NaN or infinity, so
non-finite floats are written as the strings "NaN", "Infinity" and
"-Infinity" and decoded back to floats; decoding rebuilds the very frozen
dataclasses that were written, so figures round-trip bit for bit.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
import time
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Iterator

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Event, Message, RunStarted, Status, Steps, Sweep
from traintop.engine.recording.packing import (density_of, histogram_counts, pack_counts, pack_floats, unpack_counts,
                      unpack_floats)
from traintop.engine.results import (Histogram, LayerStats, NonFinite, RunInfo, StatsSnapshot,
                            StepResult, WeightStats)
from traintop.engine.step_block import StepBlock

FORMAT = "traintop-stream"
VERSION = 2
SWEEP_VERSION = 3   # a sweep's recording: runs tagged "r", labels in the header
READS = (1, 2, 3)   # versions this traintop reads


@functools.cache
def traintop_version() -> str:
    """Asked when a header is written, not at import: importlib.metadata costs
    a viewer's start-up ~30 ms."""
    from importlib import metadata
    try:
        return metadata.version("traintop")
    except metadata.PackageNotFoundError:   # run from a checkout, not installed
        return "unknown"


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


def header(info: RunInfo, meta: dict | None = None, sweep: Sweep | None = None) -> dict:
    # `created` makes every recording's first line unique, so a follower can
    # tell a rewritten file from the one it was reading.
    doc = {"format": FORMAT, "version": SWEEP_VERSION if sweep else VERSION,
           "traintop": traintop_version(), "created": time.time(), "info": _plain(info),
           "meta": _plain(meta or {})}
    if sweep:
        doc["sweep"] = {"labels": list(sweep.labels), "keys": list(sweep.keys)}
    return doc


def _runs(values: list[float]) -> list[list]:
    """[[value, count], ...]: the lr changes a few times in a whole run."""
    out: list[list] = []
    for v in values:
        if out and (out[-1][0] == v or (v != v and out[-1][0] != out[-1][0])):
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return [[_num(v), k] for v, k in out]


def _hists(snapshot: StatsSnapshot) -> list[tuple[tuple, Histogram]]:
    """Every histogram of a snapshot with a key naming its slot, in file order."""
    return ([(("a", x.index), x.hist) for x in snapshot.layers]
            + [(("g", x.index), x.grad_hist) for x in snapshot.layers]
            + [(("w", x.name), x.hist) for x in snapshot.weights])


def _snapshot2(s: StatsSnapshot, totals: dict) -> dict:
    hists = []
    for key, h in _hists(s):
        found = histogram_counts(h.lo, h.hi, h.density, totals.get(key))
        if found is None:   # densities no counts reproduce: kept as they are
            hists.append([pack_floats(h.density)])
        else:
            totals[key] = found[0]
            hists.append([found[0], pack_counts(found[1])])
    layers, weights = s.layers, s.weights
    return {"step": s.step, "loss": _num(s.loss), "lr": _num(s.lr),
            # watch()'s layers add their module path, family and observations per unit
            "layers": [[x.index, x.kind, x.units, x.dead]
                       + ([x.name, x.family, x.per_unit] if x.name or x.family or x.per_unit
                          else []) for x in layers],
            "lf": pack_floats([v for x in layers for v in (x.mean, x.std, x.saturation_pct,
                                                             x.grad_mean, x.grad_std)], 5),
            "weights": [[x.name, list(x.shape)] for x in weights],
            "wf": pack_floats([v for x in weights
                               for v in (x.grad_mean, x.grad_std, x.grad_data_ratio)], 3),
            "u": pack_floats(s.update_ratio_log10),
            "range": pack_floats([v for _, h in _hists(s) for v in (h.lo, h.hi)], 2),
            "hists": hists}


def _steps2(results: tuple[StepResult, ...], totals: dict) -> dict:
    steps = [r.step for r in results]
    doc: dict = {"t": "s", "n": len(results)}
    if steps == list(range(steps[0], steps[0] + len(steps))):
        doc["step"] = steps[0]
    else:
        doc["steps"] = steps
    doc["loss"] = pack_floats([r.loss for r in results])
    doc["lr"] = _runs([r.lr for r in results])
    widths = {len(r.update_ratio_log10) for r in results}
    if len(widths) == 1:
        doc["p"] = width = widths.pop()
        if width:
            # The fast engines compute the ratios in float64 from float32
            # gradients: a per-step series is kept at float32 precision; the
            # rows a report or a snapshot reads (stats, non-finite, the block's
            # last) are kept bit for bit in "ue" where float32 would round them.
            doc["u"] = pack_floats([v for r in results for v in r.update_ratio_log10], width,
                                   round32=True)
            exact = {}
            for i, r in enumerate(results):
                if r.stats is not None or r.nonfinite is not None or i == len(results) - 1:
                    packed = pack_floats(r.update_ratio_log10)
                    if packed[0] == "d":
                        exact[str(i)] = packed
            if exact:
                doc["ue"] = exact
    else:   # e.g. a step whose forward went non-finite has no ratios
        doc["ur"] = [pack_floats(r.update_ratio_log10) for r in results]
    stats = {str(i): _snapshot2(r.stats, totals) for i, r in enumerate(results)
             if r.stats is not None}
    if stats:
        doc["x"] = stats
    nonfinite = {str(i): _plain(r.nonfinite) for i, r in enumerate(results)
                 if r.nonfinite is not None}
    if nonfinite:
        doc["nf"] = nonfinite
    return doc


def encode(message: Message, totals: dict | None = None) -> dict:
    """A message as a version-2 line ("r": its run where not run 0). `totals`:
    the writer's memory of each histogram's item count, which finds the
    counts of the next one at once (kept per run)."""
    run = getattr(message, "run", 0)
    totals = {} if totals is None else totals
    doc = _encode(message, totals if not run else totals.setdefault(("run", run), {}))
    if run:
        doc["r"] = run
    return doc


def _encode(message: Message, totals: dict) -> dict:
    if isinstance(message, Steps):
        if not message.results:
            return {"t": "steps", "results": []}
        return _steps2(message.results, totals)
    if isinstance(message, Event):
        return {"t": "event", "kind": message.kind, "step": message.step, "text": message.text,
                "data": _plain(message.data)}
    if isinstance(message, RunStarted):
        return {"t": "run", "info": _plain(message.info), "why": message.why}
    if isinstance(message, Status):
        return {"t": "status", **{k: v for k, v in _plain(message).items() if k != "run"}}
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


def decode_snapshot2(d: dict) -> StatsSnapshot:
    layers, weights = d["layers"], d["weights"]
    lf = unpack_floats(d["lf"], 5).tolist()
    wf = unpack_floats(d["wf"], 3).tolist()
    ranges = unpack_floats(d["range"], 2).tolist()
    packed = d["hists"]
    if not (len(lf) == len(layers) and len(wf) == len(weights)
            and len(ranges) == len(packed) == 2 * len(layers) + len(weights)):
        raise ValueError("snapshot figures and names differ in length")
    hists = []
    for (lo, hi), entry in zip(ranges, packed):
        if len(entry) == 2:
            density = density_of(lo, hi, int(entry[0]), unpack_counts(entry[1]))
        else:
            density = unpack_floats(entry[0]).ravel().tolist()
        hists.append(Histogram(lo, hi, tuple(density)))
    n = len(layers)
    return StatsSnapshot(
        step=int(d["step"]), loss=_f(d["loss"]), lr=_f(d["lr"]),
        layers=tuple(_layer2(row, f, hists[k], hists[n + k])
                     for k, (row, f) in enumerate(zip(layers, lf))),
        weights=tuple(WeightStats(str(name), tuple(int(x) for x in shape), *f, hists[2 * n + j])
                      for j, ((name, shape), f) in enumerate(zip(weights, wf))),
        update_ratio_log10=tuple(unpack_floats(d["u"]).ravel().tolist()))


def _layer2(row: list, f: list, hist: Histogram, grad_hist: Histogram) -> LayerStats:
    index, kind, units, dead = row[:4]
    name, family, per_unit = row[4:7] if len(row) >= 7 else ("", "", 0)
    return LayerStats(int(index), str(kind), *f[:3], int(dead), int(units), *f[3:], hist,
                      grad_hist, name=str(name), family=str(family), per_unit=int(per_unit))


def _unruns(runs: list, n: int) -> list[float]:
    out: list[float] = []
    for value, count in runs:
        out += [_f(value)] * int(count)
    if len(out) != n:
        raise ValueError(f"lr runs hold {len(out)} steps, not {n}")
    return out


def _decode_steps2(doc: dict) -> Steps:
    """A line of steps as columns (a StepBlock): no StepResult is built here."""
    import numpy as np
    n = int(doc["n"])
    if "steps" in doc:
        steps = np.array([int(x) for x in doc["steps"]], dtype=np.int64)
    else:
        steps = np.arange(int(doc["step"]), int(doc["step"]) + n, dtype=np.int64)
    loss = unpack_floats(doc["loss"]).ravel()
    lr = np.array(_unruns(doc["lr"], n), dtype=np.float64)
    if "ur" in doc:
        ratios = [tuple(unpack_floats(x).ravel().tolist()) for x in doc["ur"]]
    elif doc["p"]:
        width = int(doc["p"])
        ratios = unpack_floats(doc["u"], width)
        for i, packed in doc.get("ue", {}).items():
            ratios[_row(i, n)] = unpack_floats(packed).ravel()   # a row of another width: ValueError
    else:
        ratios = np.zeros((n, 0))
    if not len(steps) == len(loss) == len(ratios) == n:
        raise ValueError("step columns differ in length")
    stats = {_row(i, n): decode_snapshot2(d) for i, d in doc.get("x", {}).items()}
    nonfinite = {_row(i, n): _nonfinite(d) for i, d in doc.get("nf", {}).items()}
    return Steps(StepBlock(steps, loss, lr, ratios, stats, nonfinite))


def _row(key: str, n: int) -> int:
    """A row named in a steps line ("x", "nf", "ue"): one of its n rows."""
    i = int(key)
    if not 0 <= i < n:
        raise ValueError(f"row {key!r} of a line of {n} steps")
    return i


def _nonfinite(d: dict) -> NonFinite:
    return NonFinite(int(d["step"]), str(d["where"]), str(d["what"]))


def step_rows(doc: dict) -> tuple[list[int], list[float], set[int]]:
    """(steps, lrs, rows holding a snapshot) of a steps line, version 1 or 2,
    without decoding its figures: what a replay's index keeps."""
    if doc["t"] == "s":
        n = int(doc["n"])
        steps = ([int(x) for x in doc["steps"]] if "steps" in doc
                 else list(range(int(doc["step"]), int(doc["step"]) + n)))
        if len(steps) != n:
            raise ValueError("step columns differ in length")
        return steps, _unruns(doc["lr"], n), {int(k) for k in doc.get("x", {})}
    rows = doc["results"]
    return ([int(r[0]) for r in rows], [_f(r[2]) for r in rows],
            {i for i, r in enumerate(rows) if r[4] is not None})


def decode_info(d: dict) -> RunInfo:
    return RunInfo(config=dict(d["config"]), vocab=str(d["vocab"]),
                   param_names=tuple(str(n) for n in d["param_names"]),
                   param_shapes=tuple(tuple(int(s) for s in shape) for shape in d["param_shapes"]),
                   layer_kinds=tuple(str(k) for k in d["layer_kinds"]),
                   expected_initial_loss=_f(d["expected_initial_loss"]))


def decode(doc: dict) -> Message:
    message = _decode(doc)
    run = doc.get("r", 0)
    if run:
        if isinstance(run, bool) or not isinstance(run, int) or run < 0:
            raise ValueError(f"run index {run!r} is not a count")
        message = replace(message, run=run)
    return message


def _decode(doc: dict) -> Message:
    kind = doc["t"]
    if kind == "s":
        return _decode_steps2(doc)
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

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[Message] = []
        for raw in lines:
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
        return InputError(f"{self.name}:{self.line}: {why}")

    def parse(self, raw: bytes) -> dict:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self.fail("corrupt line (not JSON)") from None
        if not isinstance(doc, dict):
            raise self.fail("corrupt line (not a JSON object)")
        return doc

    def decode_doc(self, doc: dict) -> Message:
        try:
            if not self.snapshots:
                doc = self._without_snapshots(doc)
            return decode(doc)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise self.fail(f"corrupt line ({type(exc).__name__}: {exc})") from None

    def _without_snapshots(self, doc: dict) -> dict:
        run = doc.get("r", 0)
        if doc.get("t") == "run":
            self.last_snapshots.pop(run, None)   # a restart: the new run's snapshots only
        if doc.get("t") == "s" and doc.get("x"):
            self.last_snapshots[run] = (2, doc["x"][max(doc["x"], key=int)])
            return {**doc, "x": {}}
        if doc.get("t") == "steps":
            rows = doc["results"]
            with_stats = [r for r in rows if r[4] is not None]
            if with_stats:
                self.last_snapshots[run] = (1, with_stats[-1][4])
                return {**doc, "results": [[*r[:4], None, *r[5:]] for r in rows]}
        return doc

    def snapshot(self, run: int = 0) -> StatsSnapshot | None:
        """The last snapshot of `run` a snapshots=False decoder left out, decoded."""
        if run not in self.last_snapshots:
            return None
        version, payload = self.last_snapshots[run]
        try:
            return decode_snapshot2(payload) if version == 2 else decode_snapshot(payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(f"corrupt snapshot ({type(exc).__name__}: {exc})") from None

    def read_header(self, doc: dict) -> RunStarted:
        if doc.get("format") != FORMAT:
            raise self.fail(f"not a traintop recording (no {FORMAT!r} header)")
        version = doc.get("version")
        if not isinstance(version, int) or version not in READS:
            raise self.fail(f"stream format version {version!r} is newer than this traintop "
                             f"reads (versions {READS[0]} to {READS[-1]}); upgrade traintop")
        try:
            info = decode_info(doc["info"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self.fail(f"corrupt header ({type(exc).__name__}: {exc})") from None
        sweep = doc.get("sweep")
        if sweep is not None:
            try:
                self.sweep = Sweep(tuple(str(x) for x in sweep["labels"]),
                               tuple(str(x) for x in sweep["keys"]))
            except (KeyError, TypeError) as exc:
                raise self.fail(f"corrupt header ({type(exc).__name__}: {exc})") from None
            if not self.sweep.labels:
                raise self.fail("corrupt header (a sweep of no runs)")
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
    inflater = Inflater(is_gzip(path))
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
            yield from decoder.feed(data)
    if decoder.header is None:
        raise InputError(f"{path}: empty recording (no complete header line)")


def load(path: str | Path) -> Recording:
    """Read a whole recording; a partial last line is left out, bad input raises InputError."""
    decoder = LineDecoder(str(path))
    messages = tuple(read(path, decoder))
    return Recording(str(path), decoder.meta, messages, decoder.pending)


# ----- writing ----------------------------------------------------------------
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
