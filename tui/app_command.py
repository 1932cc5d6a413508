"""`traintop` with no command: the live app, with the options of `traintop run`."""

from __future__ import annotations

import argparse

from engine.options import add_train_options, check_device, config_from_args
from engine.session import LiveSession, SessionSpec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traintop",
        description="Watch the lecture's deep Linear/BatchNorm/Tanh stack train, live, "
                    "and steer it from the keyboard (press ? in the app for help).")
    add_train_options(parser)
    app = parser.add_argument_group("app")
    app.add_argument("--checkpoint-dir", default=".", metavar="DIR",
                     help="where `w` writes checkpoints (default: the current directory)")
    app.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    app.add_argument("--paused", action="store_true", help="start paused (space starts)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    spec = spec_from_args(args)
    # Bad options and unreadable data fail here, with one line, before the screen opens.
    from data.dataset import load_dataset

    load_dataset(args.data, spec.config.block_size, spec.config.split_seed)
    if args.resume:
        from engine.checkpoint import read_checkpoint

        read_checkpoint(args.resume)
    session = LiveSession(spec)  # before App.run(): it starts the resource tracker
    from tui.app import run_app  # Textual loads only once the options are good

    return run_app(session, title="traintop")


def spec_from_args(args: argparse.Namespace) -> SessionSpec:
    config = config_from_args(args)
    return SessionSpec(config=config, data=args.data, device=check_device(args.device),
                       resume=args.resume, threads=args.threads,
                       checkpoint_dir=args.checkpoint_dir, start_paused=args.paused)
