"""`traintop attach RUN.jsonl`: follow a run another process is writing.

`traintop attach PATH [PATH ...]` with a folder or several recordings
follows each of them (and each one that appears later) as one overview
(traintop.engine.recording.folder_source); --json prints `{"runs": [...]}`.

Without --json it opens the app on an traintop.engine.recording.follow_source.FollowSource.
With --json it imports no Textual: it follows the file until the writer
finishes (or stops, or stays quiet for --quiet seconds) and prints the
run's JSON summary, the same document `traintop run --json` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Event
from traintop.engine.recording.folder import is_folder_args, labels
from traintop.engine.recording.folder_source import FolderSource
from traintop.engine.recording.follow_source import FollowSource
from traintop.engine.viewer.sweep_state import SweepState
from traintop.engine.recording.opener import check_head
from .options import Parser

POLL_SECONDS = 0.2


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="traintop attach",
        description="Follow a recording that another process is still writing "
                    "(traintop run --record, the app's record, or traintop.engine.watch), like tail -F.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a recording (.jsonl or .jsonl.gz), or a folder: every "
                             "recording under it, at any depth, and each one that appears "
                             "later (a new Ray Tune trial, a late rank), in one overview")
    parser.add_argument("--quiet", type=float, default=10.0, metavar="SECONDS",
                        help="call the writer quiet after this long without new lines "
                             "(default 10)")
    parser.add_argument("--json", action="store_true",
                        help="no app: wait until the writer finishes or goes quiet, then "
                             "print the run's JSON summary")
    return parser


def follow_to_end(source: FollowSource, sleep=time.sleep) -> SweepState:
    """Fold the followed stream (every run of a sweep) until its writer
    finishes or goes quiet."""
    state = SweepState()
    waited = 0.0
    while True:
        for message in source.poll():
            if isinstance(message, Event) and message.kind == "error":
                raise InputError(message.text)
            state.apply(message)
        state.meta = source.meta
        started = state.runs[0].info is not None
        if started and (source.finished or source.quiet):
            return state
        if not started and waited >= source.quiet_after:
            raise InputError(f"{source.path}: no recording header after "
                             f"{source.quiet_after:g} s")
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def follow_folder(source: FolderSource, sleep=time.sleep) -> SweepState:
    """Fold every recording under the PATHs until each writer has finished or
    gone quiet (and at least one recording is there)."""
    state = SweepState()
    waited = 0.0
    while True:
        for message in source.poll():
            state.apply(message)
        if source.files and all(w in ("finished", "quiet", "failed")
                                for w in source.writers()) and all(
                s.info is not None for s in state.runs):
            return state
        if not source.files and waited >= source.quiet_after:
            raise InputError(f"{' '.join(source.paths)}: no recording after "
                             f"{source.quiet_after:g} s")
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def folder_report(source: FolderSource, state: SweepState) -> dict:
    """`{"runs": [...]}` as `replay --json` prints it for the same PATHs: each
    recording's path and label, then its own document (a sweep's: its runs)."""
    names = labels([f.found for f in source.files])
    runs = []
    for f, label in zip(source.files, names):
        for slot in f.slots:
            state.runs[slot].meta = f.found.meta
        if f.inner:
            doc = {"runs": [{"label": inner, **state.runs[slot].report()}
                            for inner, slot in zip(f.inner, f.slots)]}
        else:
            doc = state.runs[f.slots[0]].report()
        trial = {"trial": f.found.trial, "trial_config": f.found.config} if f.found.trial else {}
        runs.append({"path": str(f.found.path), "label": label, **trial, **doc})
    return {"runs": runs}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.quiet > 0:
        raise InputError(f"--quiet: must be > 0 seconds, got {args.quiet}")
    if is_folder_args(args.paths):
        return main_folder(args)
    args.path = args.paths[0]
    # The app joins a long file near its end; a summary needs every step.
    source = FollowSource(args.path, quiet_after=args.quiet, jump=not args.json)
    if args.json:
        source.start()
        try:
            state = follow_to_end(source)
        finally:
            source.close()
        sys.stdout.write(json.dumps(state.report(), indent=2, allow_nan=False) + "\n")
        return 0
    from traintop.tui import terminal_guard
    terminal_guard.install()   # the terminal gone means traintop gone, from here on
    # A corrupt line or an unknown version at the start of the file: one
    # error line before the screen opens. A missing or empty file is fine:
    # the writer may not have started yet, and the app says it is waiting.
    check_head(source.path)
    from traintop.tui.app import run_app  # the app needs Textual: load it only here

    return run_app(source, title=f"attach {args.path}")



def main_folder(args) -> int:
    source = FolderSource(args.paths, follow=True, quiet_after=args.quiet, jump=not args.json)
    source.start()
    if args.json:
        try:
            state = follow_folder(source)
        finally:
            source.close()
        doc = folder_report(source, state)
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return 0
    from traintop.tui import terminal_guard
    terminal_guard.install()
    from traintop.tui.app import run_app

    return run_app(source, title=f"attach {' '.join(args.paths)}")
