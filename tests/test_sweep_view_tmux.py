"""`traintop --sweep gain=1,5/3 --steps 300` for real, in a tmux terminal at
120x40 and 80x24: the overview, a run in full, an lr key on that run only,
back to the overview, quit with no traceback and no process left; the
recording it wrote replays as `{"runs": [...]}`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers.tmux import TMUX_TEST, Tmux, descendants, quit_cleanly
from tui_fakes import write_words

pytestmark = TMUX_TEST


def wait_for(tmux: Tmux, text: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {text!r}; screen:\n{tmux.screen()}")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_a_sweep_in_tmux(tmp_path, size):
    words = write_words(tmp_path / "words.txt")
    rec = tmp_path / "sweep.jsonl"
    exit_file = tmp_path / "exit-code"
    command = (f"cd {ROOT} && {sys.executable} -m traintop --sweep gain=1,5/3 --steps 300 "
               f"--data {words} --n-hidden 16 --record {rec}; echo $? > {exit_file}")
    tmux = Tmux(tmp_path)
    cols, rows = size
    tmux("new-session", "-d", "-s", "app", "-x", str(cols), "-y", str(rows), "sh", "-c", command)
    try:
        tmux("set-option", "-t", "app", "remain-on-exit", "on")
        shell = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        screen = wait_for(tmux, "sweep of 2 runs (gain) · step 300")
        assert "━ gain=1" in screen or "━ 1 " in screen      # the legend names the runs
        processes = descendants(shell)
        wait_for(tmux, "finished")

        tmux.keys("v")
        # (a narrow line drops "gain 1": the run's label says it)
        wait_for(tmux, "run 1/2 gain=1 · step 300 · lr 0.1 · ")
        tmux.keys("]")                                        # run 1 only
        wait_for(tmux, "run 1/2 gain=1 · step 300 · lr 0.2")
        tmux.keys("v")
        wait_for(tmux, "run 2/2 gain=5/3 · step 300 · lr 0.1 · ")
        tmux.keys("o")
        wait_for(tmux, "sweep of 2 runs (gain) · step 300 · lr 0.1-0.2")

        quit_cleanly(tmux, exit_file, processes)
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)

    done = subprocess.run([sys.executable, "-m", "traintop", "replay", str(rec), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert [r["config"]["gain"] for r in runs] == ["1", "5/3"]
    assert [r["steps"] for r in runs] == [300, 300]
    assert [r["lr"] for r in runs] == [0.2, 0.1]
