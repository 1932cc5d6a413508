"""SIGTERM and SIGHUP end `traintop run` and the app cleanly: the report (run)
or a restored terminal (app), a closed recording, no process left; a
trainer child killed under the real app in tmux is said, restarted with `r`;
and the terminal guard (tui/terminal_guard.py) ends a process whose pty hangs
up or that gets SIGHUP, within 2 s even when closing its source is stuck."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, TIMING
from helpers.tmux import Tmux, alive, descendants, start_app, tmux_test
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.opener import load
from tui_fakes import write_words

ENDING = [signal.SIGTERM, signal.SIGHUP]


def wait_for(condition, what: str, timeout: float = 90.0, extra=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}{extra() if extra else ''}")


def recorded(path) -> tuple[list[int], object]:
    try:
        messages = load(path).messages
    except Exception:  # noqa: BLE001 - not written yet
        return [], None
    steps = [r.step for m in messages if isinstance(m, Steps) for r in m.results]
    return steps, messages[-1] if messages else None


@pytest.mark.parametrize("number", ENDING, ids=lambda n: signal.Signals(n).name)
def test_run_stops_reports_and_closes_its_recording(tmp_path, number):
    path = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "traintop", "run", "--data",
                             str(write_words(tmp_path / "w.txt")), "--steps", "10000000",
                             "--n-hidden", "16", "--engine", "fast", "--json", "--record", str(path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: recorded(path)[0], "recorded steps")
        proc.send_signal(number)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + number, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and 0 < doc["steps"] < 10_000_000
    steps, last = recorded(path)
    assert steps == list(range(1, doc["steps"] + 1))       # every step, to the last
    assert isinstance(last, Status) and not last.running and last.step == doc["steps"]


needs_tmux = tmux_test   # skipped without tmux; in the xdist group of the timing tests


def app_and_trainer(shell: int) -> tuple[int, int]:
    (app,) = [p for p in descendants(shell) if f"{p}" and _parent(p) == shell]
    trainers = [p for p in descendants(app) if "traintop-trainer" in _cmdline(p)
                or ("spawn_main" in _cmdline(p) and "resource_tracker" not in _cmdline(p))]
    return app, trainers[0]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def finish(tmux: Tmux, exit_file: Path, processes) -> str:
    wait_for(exit_file.exists, "the app to exit", 30)
    wait_for(lambda: not [p for p in processes if alive(p)], "every process to end", 15)
    return exit_file.read_text().strip()


@needs_tmux
@pytest.mark.parametrize("number", ENDING, ids=lambda n: signal.Signals(n).name)
def test_app_ends_on_a_signal_with_nothing_left(tmp_path, number):
    record = tmp_path / "run.jsonl"
    tmux, exit_file, shell = start_app(tmp_path, "--record", str(record))
    try:
        processes = descendants(shell)
        app, trainer = app_and_trainer(shell)
        assert len(processes) >= 2
        os.kill(app, number)
        assert finish(tmux, exit_file, processes) == str(128 + number)
        screen = tmux.screen()
        assert "Traceback" not in screen and "steps/s" not in screen, screen
        assert tmux("display-message", "-p", "-t", "app", "#{alternate_on}").strip() == "0"
        steps, last = recorded(record)
        assert steps and isinstance(last, Status) and not last.running
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)


@needs_tmux
def test_killed_trainer_in_the_real_terminal(tmp_path):
    tmux, exit_file, shell = start_app(tmp_path)
    try:
        app, trainer = app_and_trainer(shell)
        os.kill(trainer, signal.SIGKILL)
        wait_for(lambda: "trainer died: killed by signal 9" in tmux.screen(), "the death said",
                 3, lambda: f"; screen:\n{tmux.screen()}")
        # The toast goes after a few seconds; the status line keeps saying it.
        status = re.compile(r"trainer died: killed by signal 9 \(out of memory\?\) · step [\d,]+ · ")
        wait_for(lambda: status.search(tmux.screen()), "the death on the status line", 10,
                 lambda: f"; screen:\n{tmux.screen()}")
        tmux.keys("r")
        tmux.wait(lambda s: s[4] == "running" and s[0] > 10, "a fresh trainer")
        processes = descendants(shell)
        assert trainer not in processes
        tmux.keys("q")
        assert finish(tmux, exit_file, processes) == "0"
        assert "Traceback" not in tmux.screen()
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)


# ----- the terminal guard (tui/terminal_guard.py) on a bare pty ----------------
# A process with a pty for its terminal (not its controlling one: no signal
# comes from the kernel), its main thread blocked for good, owning a source
# whose close() writes a file after CLOSE_SECONDS; the test ends the pty or
# sends SIGHUP. The tmux tests (test_tmux_hangup.py) do the same to the app.
GUARDED = r"""
import subprocess, sys, threading, time
from traintop.tui import terminal_guard

class Source:
    def close(self):
        time.sleep(float(sys.argv[2]))
        with open(sys.argv[1], "w") as f:
            f.write("closed")

guard = terminal_guard.install()
guard.own(Source())
# a child of its own, as the trainer is: it must not outlive the guard's ending
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("ready", flush=True)
threading.Event().wait()   # the main thread stuck
"""


def guarded_process(tmp_path: Path, close_seconds: float):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", GUARDED, str(tmp_path / "closed"),
                             str(close_seconds)], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"ready" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 1024)
    assert b"ready" in seen, seen
    return proc, master, descendants(proc.pid)


def ended_within(proc, seconds: float, since: float) -> int:
    code = proc.wait(timeout=10)
    took = time.monotonic() - since
    assert took < seconds, f"took {took:.2f} s"
    return code


@TIMING
@pytest.mark.parametrize("close_seconds", [0.1, 30.0], ids=["clean", "stuck close"])
def test_guard_ends_the_process_when_its_tty_hangs_up(tmp_path, close_seconds):
    """The pty's other end closed, nothing else: the guard's thread sees
    POLLHUP and ends the process (129), the source closed first; a close()
    stuck for good is cut off at GRACE_SECONDS (1.2 s). Either way the
    process's own child goes with it."""
    proc, master, children = guarded_process(tmp_path, close_seconds)
    assert children, "no child started"
    try:
        since = time.monotonic()
        os.close(master)
        assert ended_within(proc, 2.0, since) == 129
        assert (tmp_path / "closed").exists() == (close_seconds < 1)
        wait_for(lambda: not [p for p in children if alive(p)], "the child to go", 2)
    finally:
        proc.kill()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@TIMING
def test_guard_ends_the_process_on_sighup_and_puts_the_terminal_back(tmp_path):
    """SIGHUP with the terminal still there (no Textual handler yet): the
    source closed, the main screen and the cursor back, exit 129."""
    proc, master, children = guarded_process(tmp_path, 0.1)
    try:
        since = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        assert ended_within(proc, 2.0, since) == 129
        out = b""
        try:
            while chunk := os.read(master, 4096):
                out += chunk
        except OSError:   # EIO: the other end is closed, all is read
            pass
        assert b"\x1b[?1049l" in out and b"\x1b[?25h" in out, out
        assert (tmp_path / "closed").read_text() == "closed"
        wait_for(lambda: not [p for p in children if alive(p)], "the child to go", 2)
    finally:
        proc.kill()
        os.close(master)
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
