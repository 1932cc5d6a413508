"""A replay's items (replay_index) as the messages a viewer folds."""

from __future__ import annotations

from traintop.engine.feed.messages import Message, RunStarted, Steps
from traintop.engine.recording.decode import snapshot_of
from traintop.engine.recording.line_cache import LineCache
from traintop.engine.recording.replay_index import Item
from traintop.engine.step_block import StepBlock


def deliver(items: list, lines: LineCache, delivered: dict[int, tuple[int, float]]
            ) -> list[Message]:
    """Messages of `items`: neighbouring rows of one line go as one Steps,
    and only the last snapshot among them comes with its figures (the
    viewer shows the latest; the ones before it would be replaced at once).
    `delivered`: run -> (step, lr) of its last step delivered, updated."""
    chunks: list = []       # [line, lo, hi, last item] or a message
    for item in items:
        if isinstance(item, Item):
            last = chunks[-1] if chunks else None
            if isinstance(last, list) and last[0] == item.line and last[2] == item.lo:
                last[2], last[3] = item.hi, item
            else:
                chunks.append([item.line, item.lo, item.hi, item])
        else:
            chunks.append(item)
    shown: dict[int, int] = {}   # chunk index -> row of each run's last snapshot delivered
    found: set[int] = set()      # the runs whose last snapshot is found
    for k in range(len(chunks) - 1, -1, -1):
        chunk = chunks[k]
        if isinstance(chunk, list) and chunk[3].run not in found:
            rows = [r for r in lines.results(chunk[0])[1] if chunk[1] <= r < chunk[2]]
            if rows:
                shown[k] = max(rows)
                found.add(chunk[3].run)
    out: list[Message] = []
    # The steps of neighbouring chunks, per run (a sweep's runs take turns):
    # one Steps per run, its lines' columns joined (a StepBlock), folded at once.
    parts_of: dict[int, list] = {}

    def steps_so_far() -> None:
        for run, parts in sorted(parts_of.items()):
            out.append(Steps(StepBlock.concat(parts), run=run))
        parts_of.clear()

    for k, chunk in enumerate(chunks):
        if not isinstance(chunk, list):
            steps_so_far()
            if isinstance(chunk, RunStarted):
                delivered[chunk.run] = (0, chunk.info.config.get("lr", 0.0))
            out.append(chunk)
            continue
        line, lo, hi, last = chunk
        results, snapshots = lines.results(line)
        part = results[lo:hi]
        if k in shown:
            row = shown[k]
            part = part.with_stats(row - lo, snapshot_of(*snapshots[row]))
        parts_of.setdefault(last.run, []).append(part)
        delivered[last.run] = (last.last, last.lr)
    steps_so_far()
    return out
