"""`traintop replay FOLDER` for real, in a tmux terminal at 120x40 and 80x24,
on a folder of mixed recordings (two watch() models of different shapes,
the lecture's model): the overview names the runs, v shows one in full, o
goes back, q quits with no traceback; the replay process maps no libtorch."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers.tmux import TMUX_TEST, Tmux, descendants, loads_libtorch, quit_cleanly
from folder_runs import mixed_folder

pytestmark = TMUX_TEST


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    mixed_folder(root)
    return root


def wait_for(tmux: Tmux, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {text!r}; screen:\n{tmux.screen()}")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_a_folder_in_tmux(tmp_path, mixed, size):
    exit_file = tmp_path / "exit-code"
    # unset: the environment under pytest says COLUMNS=80 LINES=24, which
    # Textual would take over the terminal's own size
    command = (f"cd {ROOT} && unset COLUMNS LINES && {sys.executable} -m traintop replay {mixed}; "
               f"echo $? > {exit_file}")
    tmux = Tmux(tmp_path)
    cols, rows = size
    tmux("new-session", "-d", "-s", "app", "-x", str(cols), "-y", str(rows), "sh", "-c", command)
    try:
        tmux("set-option", "-t", "app", "remain-on-exit", "on")
        shell = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        wait_for(tmux, "replay · 3 runs · steps 20-30")
        # the runs by what differs, in the panes' titles: the panes redraw on a
        # clock of their own, so on a busy machine a frame can show the status
        # line before them (seen once under the full suite)
        screen = wait_for(tmux, "a/small", timeout=10)
        assert "lecture" in screen
        assert max(len(line) for line in screen.splitlines()) == cols   # drawn at its size
        processes = descendants(shell)
        assert not any(loads_libtorch(p) for p in processes), "the replay mapped libtorch"
        tmux.keys("v")
        wait_for(tmux, "run 1/3 a/small · replay · step 20")
        tmux.keys("V")          # back past the first: the overview
        tmux.keys("V")          # and round to the last run
        wait_for(tmux, "run 3/3 lecture · replay · step 30")
        tmux.keys("o")
        wait_for(tmux, "replay · 3 runs · steps 20-30")
        (tmp_path / f"screen-{cols}x{rows}.txt").write_text(tmux.screen())
        quit_cleanly(tmux, exit_file, processes)
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
