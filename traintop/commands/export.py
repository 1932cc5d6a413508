"""`traintop export RUN.jsonl --csv DIR --tensorboard DIR`: a recording, elsewhere."""

from __future__ import annotations

import argparse
import sys

from traintop.data.errors import InputError
from traintop.engine.export.tables import write_csv
from traintop.engine.export.tensorboard import write_tensorboard
from .options import Parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="traintop export",
        description="Write a recording as tidy CSV tables and/or TensorBoard event files.")
    parser.add_argument("path", metavar="RUN.jsonl", help="recording (.jsonl or .jsonl.gz)")
    parser.add_argument("--csv", metavar="DIR",
                        help="write steps, update_ratios, layers, weights and events .csv here")
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="write TensorBoard scalars and histograms here "
                             "(needs the optional tensorboard package)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for option, value in (("--csv", args.csv), ("--tensorboard", args.tensorboard)):
        if value is not None and not value.strip():   # `--csv ''`: given, but no path
            raise InputError(f"{option}: the path is empty; give a directory, e.g. "
                             f"{option} {option.strip('-')}-out")
    if not args.csv and not args.tensorboard:
        raise InputError("export: give --csv DIR and/or --tensorboard DIR")
    # Each export reads the recording line by line as it writes (bounded
    # memory however long the run): both read it once each.
    written = []
    if args.csv:
        written += write_csv(args.path, args.csv)
    if args.tensorboard:
        written += write_tensorboard(args.path, args.tensorboard)
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0
