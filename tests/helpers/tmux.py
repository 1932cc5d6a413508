"""The real app in a tmux terminal, and the processes it leaves: the helpers
of the tmux tests (test_tmux.py, test_sweep_view_tmux.py, test_tmux_watch.py,
test_faults_signals.py).

Every tmux test runs in the xdist group of the timing tests (helpers.TIMING:
one worker, one after the other): each starts a real app and trainer and
waits on its screen, and two at once on a small machine starve each other
past their timeouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import ROOT, TIMING
from tui_fakes import write_words

STATUS = re.compile(r"step ([\d,]+) · lr (\S+) · gain (\S+) · BatchNorm (on|off)"
                    r"(?: · [^·]+)*? · ([\d,]+) steps/s · (\w+)")

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (CI installs it in .ci/run)")
# The marks of a tmux test module: `pytestmark = TMUX_TEST`; of one test: @tmux_test.
TMUX_TEST = [needs_tmux, TIMING]


def tmux_test(fn):
    for mark in reversed(TMUX_TEST):
        fn = mark(fn)
    return fn


# The server and its panes without the caller's COLUMNS/LINES: a shell that
# exported them (80x24) would make Textual draw at that size whatever the pane's.
TMUX_ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


class Tmux:
    def __init__(self, tmp: Path):
        self.socket = f"traintop-test-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=20,
                              env=TMUX_ENV).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "app")

    def status(self) -> tuple | None:
        match = STATUS.search(self.screen())
        if match is None:
            return None
        step, lr, gain, bn, rate, state = match.groups()
        return int(step.replace(",", "")), lr, gain, bn, state

    def wait(self, condition, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and condition(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "app", *keys)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def loads_libtorch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def quit_cleanly(tmux: Tmux, exit_file: Path, processes) -> None:
    """`q`: the app exits 0, no traceback on screen, none of `processes` left."""
    tmux.keys("q")
    deadline = time.monotonic() + 20
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exit_file.read_text().strip() == "0"
    screen = tmux.screen()
    assert "Traceback" not in screen and "Error" not in screen, screen
    deadline = time.monotonic() + 10
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in processes if alive(p)], "processes left after quit"


def start_app(tmp_path: Path, *options: str) -> tuple[Tmux, Path, int]:
    """`traintop` on small data in a 120x40 tmux pane, training; returns the
    tmux, the file its exit status lands in, and the pane's shell pid.
    `options` go last (`--engine auto` there overrides the fast engine these
    endless runs use: no background compile unless a test asks for one)."""
    words = write_words(tmp_path / "words.txt")
    exit_file = tmp_path / "exit-code"
    command = (f"cd {ROOT} && {sys.executable} -m traintop "
               f"--data {words} --steps 1000000 --n-hidden 16 --checkpoint-dir {tmp_path} "
               f"--engine fast {' '.join(options)}; echo $? > {exit_file}")
    tmux = Tmux(tmp_path)
    tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40", "sh", "-c", command)
    try:
        tmux("set-option", "-t", "app", "remain-on-exit", "on")
        shell = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        tmux.wait(lambda s: s[0] > 100 and s[4] == "running", "training")
    except BaseException:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
        raise
    return tmux, exit_file, shell
