"""`traintop replay RUN.jsonl`: the app on a recorded run; --json prints its summary.

The --json path imports no Textual: it folds the recording into the run's
report (engine.run_state) and prints the document `traintop run --json`
printed for the same run.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.run_state import RunState
from engine.stream import load


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traintop replay",
        description="Open a recorded run (traintop run --record, the app's record, or "
                    "engine.watch) in the app, with a timeline of its snapshots.")
    parser.add_argument("path", metavar="RUN.jsonl", help="recording (.jsonl or .jsonl.gz)")
    parser.add_argument("--json", action="store_true",
                        help="print the run's JSON summary (figures of the last snapshot); "
                             "no app")
    return parser


def summary(path: str) -> dict:
    recording = load(path)
    state = RunState(meta=recording.meta)
    for message in recording.messages:
        state.add(message)
    return state.report()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.json:
        sys.stdout.write(json.dumps(summary(args.path), indent=2, allow_nan=False) + "\n")
        return 0
    from engine.file_source import ReplaySource
    from tui.app import run_app  # the app needs Textual: load it only here

    source = ReplaySource(args.path)
    return run_app(source, title=f"replay {args.path}")
