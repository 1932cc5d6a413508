"""Messages to the lines of a version-2 recording (the format:
traintop.engine.recording.format)."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import fields

from traintop.engine.feed.messages import Event, Message, RunStarted, Status, Steps, Sweep
from traintop.engine.recording.format import FORMAT, SWEEP_VERSION, VERSION
from traintop.engine.recording.json_numbers import num
from traintop.engine.recording.packing import pack_floats
from traintop.engine.recording.snapshot_codec import pack_snapshot
from traintop.engine.results import Histogram, RunInfo, StepResult


@functools.cache
def traintop_version() -> str:
    """Asked when a header is written, not at import: importlib.metadata costs
    a viewer's start-up ~30 ms."""
    from importlib import metadata
    try:
        return metadata.version("traintop")
    except metadata.PackageNotFoundError:   # run from a checkout, not installed
        return "unknown"


def plain(value):
    """Dataclasses to dicts, tuples to lists, non-finite floats to strings."""
    if isinstance(value, Histogram):   # most of a snapshot's floats: the quick way
        return {"lo": num(value.lo), "hi": num(value.hi),
                "density": [d if d - d == 0.0 else num(d) for d in value.density]}
    if isinstance(value, float):
        return num(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return value


def header(info: RunInfo, meta: dict | None = None, sweep: Sweep | None = None) -> dict:
    # `created` makes every recording's first line unique, so a follower can
    # tell a rewritten file from the one it was reading.
    doc = {"format": FORMAT, "version": SWEEP_VERSION if sweep else VERSION,
           "traintop": traintop_version(), "created": time.time(), "info": plain(info),
           "meta": plain(meta or {})}
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
    return [[num(v), k] for v, k in out]


def _steps2(results: tuple[StepResult, ...], totals: dict) -> dict:
    steps = [r.step for r in results]
    doc: dict = {"t": "s", "n": len(results)}
    if steps == list(range(steps[0], steps[0] + len(steps))):
        doc["step"] = steps[0]
    else:
        doc["steps"] = steps
    doc["loss"] = pack_floats([r.loss for r in results])
    doc["lr"] = _runs([r.lr for r in results])
    norms = [r.grad_norm for r in results]
    if any(g == g for g in norms):   # a run that passes w.step(grad_norm=...): "g"
        doc["g"] = pack_floats(norms)
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
    stats = {str(i): pack_snapshot(r.stats, totals) for i, r in enumerate(results)
             if r.stats is not None}
    if stats:
        doc["x"] = stats
    nonfinite = {str(i): plain(r.nonfinite) for i, r in enumerate(results)
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
                "data": plain(message.data)}
    if isinstance(message, RunStarted):
        return {"t": "run", "info": plain(message.info), "why": message.why}
    if isinstance(message, Status):
        return {"t": "status", **{k: v for k, v in plain(message).items() if k != "run"}}
    raise TypeError(f"not a feed message: {type(message).__name__}")


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n").encode()
