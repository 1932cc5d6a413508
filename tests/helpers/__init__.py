"""What the tests share beyond fixtures: import it by name
(`from helpers import ROOT`, `from helpers.tmux import Tmux`); tests never
import conftest or each other."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent   # the checkout
REFERENCE = ROOT.parent / "shared" / "reference"        # the lecture's files, beside it

# Tests that time what a real app or trainer child does (said within a second,
# a tmux screen within its timeout) run in one xdist group: one worker, one
# after the other, never two of them starving each other on a small machine
# (the README's test command runs with --dist loadgroup).
TIMING = pytest.mark.xdist_group("timing")
