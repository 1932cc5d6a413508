"""Consecutive Steps of a run folded into one block before a viewer takes them.

RunState folds a StepBlock in a few numpy passes, so one block of 10,000
steps costs what one line of 70 does, and the state after it is the same
(`traintop replay --json`, a folder's recordings read whole).
"""

from __future__ import annotations

from traintop.engine.feed.messages import Steps
from traintop.engine.step_block import StepBlock

STEPS = 10_000   # steps folded together at most


def coalesced(messages, steps: int = STEPS):
    """Runs of consecutive Steps messages of one run as one (up to `steps`
    results). A sweep's runs take turns line by line: each run's steps are
    held apart, and every held block goes out before any other message."""
    held: dict[int, list] = {}   # run -> its blocks held, joined when they go out

    def blocks():
        for run, parts in held.items():
            yield Steps(StepBlock.concat(parts), run=run)
        held.clear()

    for message in messages:
        if isinstance(message, Steps):
            parts = held.setdefault(message.run, [])
            parts.append(message.results)
            if sum(map(len, parts)) >= steps:
                yield Steps(StepBlock.concat(parts), run=message.run)
                del held[message.run]
            continue
        yield from blocks()
        yield message
    yield from blocks()
