"""The `traintop` command: the app by default, headless subcommands by name."""

from __future__ import annotations

import sys

from traintop.data.errors import InputError

import importlib

USAGE = """usage: traintop [OPTIONS]               open the live app (same options as run)
       traintop run [OPTIONS]           train headless, print the health report
       traintop bench [--json]          measure steps/s against plain PyTorch loops
       traintop replay PATH [PATH ...]  the app on a recorded run (--json: summary only);
                                        a folder or several: every run in one overview
       traintop attach PATH [PATH ...]  follow a run another process is writing (a folder:
                                        every run under it, and those that appear later)
       traintop export RUN.jsonl ...    write a recording as CSV or TensorBoard
       traintop COMMAND --help          options of one command"""

# Each command lives in its own module, imported only when it runs, so a
# headless command never loads Textual.
COMMANDS = {
    "run": "traintop.commands.run",
    "bench": "traintop.commands.bench",
    "replay": "traintop.commands.replay",
    "attach": "traintop.commands.attach",
    "export": "traintop.commands.export",
}


def _command(name: str):
    return importlib.import_module(COMMANDS[name]).main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return _command(argv[0])(argv[1:])
        if argv and argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        from .app import main as app_main  # the app needs Textual: load it only here

        return app_main(argv)
    except InputError as exc:
        print(f"traintop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started: nothing to report
        print("traintop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
