"""`traintop` for real, in a tmux terminal: it trains, pauses, steps, changes
lr, gain and BatchNorm from the keyboard, and quits with no traceback and no
process left behind."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers.tmux import TMUX_TEST, Tmux, alive, descendants, loads_libtorch, parent, \
    quit_cleanly, start_app
from traintop.commands.cli import main
from tui_fakes import write_words

pytestmark = TMUX_TEST


def test_traintop_in_tmux(tmp_path):
    # the default engine, as a user starts it: the one endless tmux run that
    # compiles in the background while the keys steer it
    tmux, exit_file, shell = start_app(tmp_path, "--engine", "auto")
    try:
        processes = descendants(shell)
        assert len(processes) >= 2   # the app and its trainer child
        # The UI process never loads libtorch; its trainer child does.
        (ui,) = [p for p in processes if parent(p) == shell]
        assert not loads_libtorch(ui), "the app's UI process has libtorch mapped"
        assert any(loads_libtorch(p) for p in descendants(ui)), "no trainer child with torch"

        tmux.keys("Space")
        paused = tmux.wait(lambda s: s[4] == "paused", "pause")
        time.sleep(0.5)
        assert tmux.status()[0] == paused[0]   # no steps while paused

        tmux.keys("n")
        tmux.wait(lambda s: s[0] == paused[0] + 1, "one step")
        tmux.keys("]")
        tmux.wait(lambda s: s[1] == "0.2", "lr x2")
        tmux.keys("G")
        gain = tmux.wait(lambda s: s[2] == "2", "gain up")
        assert gain[0] == 0 and gain[1] == "0.1"   # restarted from step 0
        tmux.keys("b")
        tmux.wait(lambda s: s[3] == "off", "BatchNorm off")
        tmux.keys("Space")
        tmux.wait(lambda s: s[4] == "running" and s[0] > 10, "resume")

        quit_cleanly(tmux, exit_file, processes)
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)


def test_replay_in_tmux_loads_no_torch(tmp_path):
    """`traintop replay` shows a recorded run; its process never maps libtorch."""
    words = write_words(tmp_path / "words.txt")
    rec = tmp_path / "run.jsonl"
    # the recording made here (the replay's own process is the one probed)
    assert main(["run", "--data", str(words), "--steps", "60", "--n-hidden", "16",
                 "--record", str(rec)]) == 0
    tmux = Tmux(tmp_path)
    tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40",
         sys.executable, "-m", "traintop", "replay", str(rec))
    try:
        shell_pid = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        deadline = time.monotonic() + 60
        while "step 60" not in tmux.screen() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "step 60" in tmux.screen(), tmux.screen()
        assert not loads_libtorch(shell_pid), "the replay process has libtorch mapped"
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while alive(shell_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(shell_pid)
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
