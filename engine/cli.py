"""The `traintop` command: the app by default, headless subcommands by name."""

from __future__ import annotations

import sys

from data.errors import InputError

USAGE = """usage: traintop [OPTIONS]            open the live app (same options as run)
       traintop run [OPTIONS]        train headless, print the health report
       traintop COMMAND --help       options of one command

commands: run"""


def _commands() -> dict:
    from engine import run_command

    return {"run": run_command.main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        if argv and argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        from tui.app_command import main as app_main  # the app needs Textual: load it only here

        return app_main(argv)
    except InputError as exc:
        print(f"traintop: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
