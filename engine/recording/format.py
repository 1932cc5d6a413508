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
ratios as packed float arrays (and "g", the gradient norms, where the run
gave any: a file without it reads NaN), the lr as runs of equal values, the stats
snapshots of the block keyed by row, their figures packed and their
histograms as integer counts (traintop.engine.recording.packing; a
snapshot's layout: traintop.engine.recording.snapshot_codec), and such a
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

Where each job lives: encode (messages to lines), decode and decode_v1
(lines back), snapshot_codec (a stats snapshot, by the figures
traintop.engine.results declares), lines (bytes to messages, gzip), opener
(the one way a recording file is opened and read), writer (StreamWriter).
"""

from __future__ import annotations


FORMAT = "traintop-stream"
VERSION = 2
SWEEP_VERSION = 3   # a sweep's recording: runs tagged "r", labels in the header
READS = (1, 2, 3)   # versions this traintop reads
