"""`traintop replay RUN.jsonl`: the app on a recorded run; --json prints its summary.

`traintop replay PATH [PATH ...]` with a folder or several recordings opens
them as one overview, the sweep's (traintop.engine.recording.folder_source);
--json prints `{"runs": [...]}`, each run's path, label and own document.

The --json path imports no Textual: it folds the recording into the run's
report (traintop.engine.viewer.run_state) and prints the document `traintop run --json`
printed for the same run.
"""

from __future__ import annotations

import argparse
import json
import sys

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Sweep
from traintop.engine.recording.coalesce import coalesced
from traintop.engine.recording.folder import discover, is_folder_args, labels
from traintop.engine.viewer.run_state import RunState
from traintop.engine.viewer.sweep_state import MOST_DRAWN, SweepState
from traintop.engine.training.history import History
from traintop.engine.recording.lines import LineDecoder
from traintop.engine.recording.opener import read
from .options import Parser

# What the folder's overview draws (engine/viewer/sweep_state.py: Drawn).
OVERVIEW_NOTE = (f"draws {MOST_DRAWN} runs at most (those with the most severe findings, "
                 "then the latest); v and V go through every run in full")

# Steps folded together by --json (see _coalesced).
COALESCE_STEPS = 10_000


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="traintop replay",
        description="Open a recorded run (traintop run --record, the app's record, or "
                    "traintop.engine.watch) in the app, with a timeline of its snapshots.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a recording (.jsonl or .jsonl.gz), or a folder: every "
                             "recording under it, at any depth. Several recordings open "
                             f"as one overview (the sweep's), which {OVERVIEW_NOTE}")
    parser.add_argument("--speed", type=_speed, metavar="STEPS_PER_SEC",
                        help="play speed in steps per second (default: the whole recording "
                             "in about 30 s); + and - change it in the app")
    parser.add_argument("--play", action="store_true",
                        help="open at the first snapshot and play (default: open at the end, "
                             "paused)")
    parser.add_argument("--json", action="store_true",
                        help="print the run's JSON summary (figures of the last snapshot; "
                             "a sweep's: {\"runs\": [...]}, one per run); no app")
    return parser


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


class _TicksOnly(History):
    """The history a report never reads: its ticks counted, no series kept."""

    def add(self, log10_loss, lr, ratios) -> None:
        self.tick += 1

    def add_many(self, log10_loss, lr, ratios) -> None:
        self.tick += len(log10_loss)


def summary(path: str) -> dict:
    """The run's report (a sweep's: `{"runs": [...]}`), folded as the file is
    read (no message is kept).

    Only the run's last stats snapshot reaches the report (and the health
    findings of a snapshot are replaced by the next one's), so the steps are
    folded without their snapshots and the last one is decoded at the end.
    """
    decoder = LineDecoder(str(path), snapshots=False)
    state = SweepState(RunState(history=_TicksOnly()))
    for message in _coalesced(read(path, decoder)):
        if isinstance(message, Sweep):
            state.apply(message)
            state.runs = [RunState(history=_TicksOnly()) for _ in message.labels]
            continue
        state.apply(message)
    state.meta = decoder.meta
    for run, run_state in enumerate(state.runs):
        snapshot = decoder.snapshot(run)
        if snapshot is not None:
            run_state.take_snapshot(snapshot)
    return state.report()


def _coalesced(messages, steps: int | None = None):
    """engine.recording.coalesce, by COALESCE_STEPS (tests change it here)."""
    return coalesced(messages, COALESCE_STEPS if steps is None else steps)


def folder_summary(paths: list[str]) -> dict:
    """`{"runs": [...]}`: each recording under the PATHs, its path and label
    first, then the document `replay --json` prints for it alone."""
    found, _ = discover(paths)
    if not found:
        raise InputError(f"{' '.join(paths)}: no traintop recordings found")
    return {"runs": [{"path": str(f.path), "label": label,
                      **({"trial": f.trial, "trial_config": f.config} if f.trial else {}),
                      **summary(f.path)}
                     for f, label in zip(found, labels(found))]}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if is_folder_args(args.paths):
        return main_folder(args)
    args.path = args.paths[0]
    if args.json:
        sys.stdout.write(json.dumps(summary(args.path), indent=2, allow_nan=False) + "\n")
        return 0
    from traintop.tui import terminal_guard
    terminal_guard.install()   # a terminal closed while a long file is read ends us too
    from traintop.engine.recording.replay_source import ReplaySource
    from traintop.tui.app import run_app  # the app needs Textual: load it only here

    # Reads and checks the whole file: a missing or corrupt recording is one
    # error line here, before the screen opens.
    source = ReplaySource(args.path, speed=args.speed, at_end=not args.play)
    if args.play:
        source.play()
    code = run_app(source, title=f"replay {args.path}")
    if source.failed is not None:
        # the viewer showed what it could; the recording is still bad input
        sys.stderr.write(f"traintop: error: {source.failed}\n")
        return code or 2
    return code


def main_folder(args) -> int:
    """Several recordings: one overview, the sweep's (no timeline: each run is
    shown to its end)."""
    if args.json:
        doc = folder_summary(args.paths)
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return 0
    if args.speed is not None or args.play:
        raise InputError("--speed and --play replay one recording; several open at their end")
    from traintop.tui import terminal_guard
    terminal_guard.install()
    from traintop.engine.recording.folder_source import FolderSource
    from traintop.tui.app import run_app

    source = FolderSource(args.paths)
    return run_app(source, title=f"replay {' '.join(args.paths)}")
