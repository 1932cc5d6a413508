"""Lines of a recording back to messages, version 2 (columns) and version 1
(rows, traintop.engine.recording.decode_v1). Decoding rebuilds the very
frozen dataclasses that were written, so figures round-trip bit for bit."""

from __future__ import annotations

from dataclasses import replace

from traintop.engine.feed.messages import Event, Message, RunStarted, Status, Steps
from traintop.engine.recording.decode_v1 import decode_snapshot, decode_step
from traintop.engine.recording.json_numbers import number, plain_data
from traintop.engine.recording.packing import unpack_floats
from traintop.engine.recording.snapshot_codec import unpack_snapshot
from traintop.engine.results import NonFinite, RunInfo, StatsSnapshot
from traintop.engine.step_block import StepBlock


def snapshot_of(version: int, payload: dict) -> StatsSnapshot:
    """A snapshot kept undecoded (its line's format version, its payload)."""
    return unpack_snapshot(payload) if version == 2 else decode_snapshot(payload)


def _unruns(runs: list, n: int) -> list[float]:
    out: list[float] = []
    for value, count in runs:
        out += [number(value)] * int(count)
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
            # a row of another width: ValueError
            ratios[_row(i, n)] = unpack_floats(packed).ravel()
    else:
        ratios = np.zeros((n, 0))
    if not len(steps) == len(loss) == len(ratios) == n:
        raise ValueError("step columns differ in length")
    stats = {_row(i, n): unpack_snapshot(d) for i, d in doc.get("x", {}).items()}
    nonfinite = {_row(i, n): _nonfinite(d) for i, d in doc.get("nf", {}).items()}
    grad_norm = unpack_floats(doc["g"]).ravel() if "g" in doc else None   # older: none
    if grad_norm is not None and len(grad_norm) != n:
        raise ValueError("step columns differ in length")
    return Steps(StepBlock(steps, loss, lr, ratios, stats, nonfinite, grad_norm))


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
    return ([int(r[0]) for r in rows], [number(r[2]) for r in rows],
            {i for i, r in enumerate(rows) if r[4] is not None})


def without_snapshots(doc: dict) -> tuple[dict, dict[int, tuple[int, dict]]]:
    """A steps line with its snapshots taken out, and {row: (version, payload)}
    of those: most readers show only the last snapshot they are given."""
    if doc.get("t") == "s":
        snapshots = {int(k): (2, v) for k, v in doc.get("x", {}).items()}
        return ({**doc, "x": {}} if snapshots else doc), snapshots
    if doc.get("t") == "steps":
        rows = doc["results"]
        snapshots = {i: (1, r[4]) for i, r in enumerate(rows) if r[4] is not None}
        if snapshots:
            return {**doc, "results": [[*r[:4], None, *r[5:]] for r in rows]}, snapshots
    return doc, {}


def decode_info(d: dict) -> RunInfo:
    return RunInfo(config=dict(d["config"]), vocab=str(d["vocab"]),
                   param_names=tuple(str(n) for n in d["param_names"]),
                   param_shapes=tuple(tuple(int(s) for s in shape) for shape in d["param_shapes"]),
                   layer_kinds=tuple(str(k) for k in d["layer_kinds"]),
                   expected_initial_loss=number(d["expected_initial_loss"]))


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
        return Steps(tuple(decode_step(r) for r in doc["results"]))
    if kind == "event":
        return Event(str(doc["kind"]), int(doc["step"]), str(doc["text"]),
                     plain_data(doc["data"]))
    if kind == "run":
        return RunStarted(decode_info(doc["info"]), doc["why"])
    if kind == "status":
        return Status(step=int(doc["step"]), lr=number(doc["lr"]), running=bool(doc["running"]),
                      finished=bool(doc["finished"]), steps_per_sec=number(doc["steps_per_sec"]),
                      stopped=doc.get("stopped"))
    raise ValueError(f"unknown line type {kind!r}")
