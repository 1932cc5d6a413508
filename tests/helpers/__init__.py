"""What the tests share beyond fixtures: import it by name
(`from helpers import ROOT`, `from helpers.tmux import Tmux`); tests never
import conftest or each other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent   # the checkout
REFERENCE = ROOT.parent / "shared" / "reference"        # the lecture's files, beside it

# Tests that time what a real app or trainer child does (said within a second,
# a tmux screen within its timeout) run in one xdist group: one worker, one
# after the other, never two of them starving each other on a small machine
# (the README's test command runs with --dist loadgroup).
TIMING = pytest.mark.xdist_group("timing")


def skip_unless_installed(*packages: str, reason: str) -> None:
    """Skip the calling test module where a framework is missing, without
    importing it: pytest.importorskip imports the package, and every xdist
    worker collects every module, so lightning, ray.tune and transformers
    cost each worker ~6 s before its first test. The module imports the
    framework where a test first needs it."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in packages):
        pytest.skip(reason, allow_module_level=True)


def traintop_here(capsys, *args) -> subprocess.CompletedProcess:
    """`traintop ARGS` through the command's main() in this process (what
    `python -m traintop` calls): its exit code and its stdout and stderr.
    For a check the process boundary adds nothing to; a command that sets
    the thread count wants the one_thread fixture beside it."""
    from traintop.commands.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)
