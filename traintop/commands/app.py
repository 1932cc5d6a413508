"""`traintop` with no command: the live app, with the options of `traintop run`."""

from __future__ import annotations

import argparse
import sys

from traintop.engine.atomic import check_writable, check_writable_dir
from .options import Parser, add_train_options, check_device, config_for, positive_float, sweep_for
from traintop.data.words import DEFAULT_DATA, read_checked_words
from traintop.data.errors import InputError
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.tui import terminal_guard


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="traintop",
        description="Watch the lecture's deep Linear/BatchNorm/Tanh stack train, live, "
                    "and steer it from the keyboard (press ? in the app for help).")
    add_train_options(parser)
    app = parser.add_argument_group("app")
    app.add_argument("--checkpoint-dir", default=".", metavar="DIR",
                     help="where `w` writes checkpoints (default: the current directory)")
    app.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    app.add_argument("--paused", action="store_true", help="start paused (space starts)")
    app.add_argument("--refresh", type=positive_float("--refresh"), default=0.8,
                     metavar="SECONDS",
                     help="the loss plot redraws every SECONDS, the status line 2.5 times "
                          "as often, the other panes a quarter as often (default 0.8; "
                          "larger for a slow link: fewer bytes to the terminal)")
    app.add_argument("--record", metavar="PATH",
                     help="record the session (every run, step and intervention) to this "
                          "JSON-lines file (.jsonl or .jsonl.gz) for traintop replay/attach")
    return parser


def main(argv: list[str]) -> int:
    # From here to the process's end the terminal's hangup (SIGHUP, or a tty
    # at its end with SIGHUP ignored) ends traintop, its child and its
    # recording within 2 s, whatever it is doing (issue 22).
    guard = terminal_guard.install()
    args = build_parser().parse_args(argv)
    spec = spec_from_args(args)
    # Bad options and unreadable data fail here, with one line, before the screen opens.
    # The UI process loads no torch: the data and the checkpoint are checked torch-free.
    # The embedded names are known good: reading them here would cost the first frame.
    source_name = str(DEFAULT_DATA) if args.data is None else read_checked_words(args.data)[0]
    # Unwritable paths fail here, with one line, not once the screen is open.
    if args.record:
        check_writable(args.record, "--record")
    check_writable_dir(args.checkpoint_dir, "--checkpoint-dir")
    source = session = LiveSession(spec)  # before App.run(): it starts the resource tracker
    guard.own(session, hurry=session.hurry)
    # The trainer child imports torch (seconds) while this process imports
    # Textual and paints: spawned now, the first step comes ~1 s sooner.
    with guard.lock:   # not while the guard is closing it
        session.start()
    recording = None
    if args.record:
        from traintop.engine.recording.recording_source import RecordingSource

        source = recording = RecordingSource(session, args.record,
                                             meta={"data": source_name, "writer": "traintop app"})
        guard.own(recording, hurry=session.hurry)
    from traintop.tui.app import run_app  # Textual loads only once the options are good

    code = run_app(source, title="traintop", refresh=args.refresh)
    if recording is not None and recording.failed:
        # Shown in the app when it happened; said again where it outlives the screen.
        sys.stderr.write(f"traintop: error: {recording.failed}\n")
        return code or 2
    return code


def spec_from_args(args: argparse.Namespace) -> SessionSpec:
    config = config_for(args)   # reads --resume's header: a bad file is one line here
    sweep = sweep_for(args, config)   # one line, exit 2, for a bad --sweep
    if sweep and args.resume:
        raise InputError("--sweep and --resume: a checkpoint holds one run, a sweep starts "
                         "its runs from step 0")
    return SessionSpec(config=config, data=args.data, device=check_device(args.device),
                       resume=args.resume, threads=args.threads,
                       checkpoint_dir=args.checkpoint_dir, start_paused=args.paused,
                       engine=args.engine, sweep=sweep)
