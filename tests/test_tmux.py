"""`traintop` for real, in a tmux terminal: it trains, pauses, steps, changes
lr, gain and BatchNorm from the keyboard, and quits with no traceback and no
process left behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_fakes import write_words

ROOT = Path(__file__).resolve().parent.parent
STATUS = re.compile(r"step ([\d,]+) · lr (\S+) · gain (\S+) · BatchNorm (on|off)"
                    r"(?: · [^·]+)*? · ([\d,]+) steps/s · (\w+)")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (CI installs it in .ci/run)")


class Tmux:
    def __init__(self, tmp: Path):
        self.socket = f"traintop-test-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=20).stdout

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
    tmux, the file its exit status lands in, and the pane's shell pid."""
    words = write_words(tmp_path / "words.txt")
    exit_file = tmp_path / "exit-code"
    command = (f"cd {ROOT} && {sys.executable} -m traintop "
               f"--data {words} --steps 1000000 --n-hidden 16 --checkpoint-dir {tmp_path} "
               f"{' '.join(options)}; echo $? > {exit_file}")
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


def test_traintop_in_tmux(tmp_path):
    tmux, exit_file, shell = start_app(tmp_path)
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
    made = subprocess.run([sys.executable, "-m", "traintop", "run", "--data", str(words),
                           "--steps", "60", "--n-hidden", "16", "--record", str(rec)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
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
