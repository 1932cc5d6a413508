"""The terminal gone means traintop gone (issue 22), in a real terminal.

Each phase of the app (starting up before its first frame, training,
paused, in the middle of quitting, a sweep, replay, attach) has its tmux
terminal closed in two ways:

- `hangup`: `tmux kill-session`, as a closed window: SIGHUP to the pane's
  processes and the tty hung up;
- `tty`: the shell ignores SIGHUP (`trap '' HUP`, as `nohup` would) and the
  tmux server is killed outright (SIGKILL), as a dead SSH link: no SIGHUP
  reaches the app from anyone, the hung-up tty is the only sign.

Both run side by side in each test (two tmux servers): a test's time is
one app's start-up, not two.

Within DEADLINE seconds no process of the app's tree (found through a marker
in its environment: the app, its trainer child, multiprocessing's resource
tracker) may be left; where the app is kept waiting (paused, a replay at its
end, attach) none of its processes may use CPU; a recording being written is
closed whole (every step, a final status). See README "Faults".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.tmux import TMUX_TEST, Tmux
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.opener import load
from tui_fakes import write_words

# One xdist group with the other tmux and timing tests (helpers.TIMING).
pytestmark = TMUX_TEST

MARK = "TRAINTOP_HANGUP_TEST"   # in the environment of every process of the app's tree
DEADLINE = 2.5                  # seconds from the terminal's end to no process left
VARIANTS = ("hangup", "tty")
FIXTURE = ROOT / "tests" / "fixtures" / "v1_small.jsonl"   # 120 steps, 4 snapshots
LIVE = "--steps 1000000 --n-hidden 16 --engine fast"


# ----- the processes of one app, by their marker -------------------------------
def marked(mark: str) -> list[int]:
    """The live (not zombie) processes whose environment holds `mark`."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(int(entry.name))
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:140]
    except OSError:
        return "?"


def maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def cpu_ticks(pid: int) -> int:
    """utime + stime, in clock ticks (1/100 s)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def wait_until(condition, what: str, timeout: float, screen=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f"; screen:\n{screen()}" if screen else ""))


class App:
    """`traintop ARGS` in a 120x40 tmux terminal, its tree marked."""

    def __init__(self, tmp_path: Path, args: str, variant: str, then: str = ""):
        self.mark = uuid.uuid4().hex
        self.variant = variant
        self.exit_file = tmp_path / f"exit-{self.mark}"
        trap = "trap '' HUP; " if variant == "tty" else ""
        command = (f"{trap}cd {ROOT} && {MARK}={self.mark} {sys.executable} -m traintop {args}; "
                   f"echo $? > {self.exit_file}{then}")
        self.tmux = Tmux(tmp_path)
        self.tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40", "sh", "-c", command)
        self.server = int(self.tmux("display-message", "-p", "-t", "app", "#{pid}").strip())

    def screen(self) -> str:
        try:
            return self.tmux.screen()
        except subprocess.SubprocessError:
            return "(no screen)"

    def wait_for_screen(self, text: str, timeout: float = 60.0) -> None:
        wait_until(lambda: text in self.screen(), repr(text), timeout, self.screen)

    def processes(self) -> list[int]:
        return marked(self.mark)

    def trainer(self) -> int | None:
        found = [p for p in self.processes() if "spawn_main" in cmdline(p)]
        return found[0] if found else None

    def close_terminal(self) -> float:
        """End the terminal as the variant says; returns when it was ended."""
        if self.variant == "hangup":
            self.tmux("kill-session", "-t", "app")
        else:
            os.kill(self.server, signal.SIGKILL)
        return time.monotonic()

    def assert_gone(self, since: float, after: str = "the terminal ended") -> None:
        """No process of the app's tree left within DEADLINE of `since`."""
        while time.monotonic() - since < DEADLINE:
            if not self.processes():
                return
            time.sleep(0.05)
        left = self.processes()
        if not left:
            return
        before = {p: cpu_ticks(p) for p in left}
        time.sleep(0.5)
        raise AssertionError(
            f"{len(left)} process(es) left {time.monotonic() - 0.5 - since:.1f} s after {after} "
            f"({self.variant}):\n"
            + "\n".join(f"  {p} cpu {2 * (cpu_ticks(p) - before[p])}%: {cmdline(p)}" for p in left))

    def cleanup(self) -> None:
        subprocess.run(["tmux", "-L", self.tmux.socket, "kill-server"], capture_output=True)
        # A server killed outright leaves its socket behind.
        socket = Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}",
                      self.tmux.socket)
        socket.unlink(missing_ok=True)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def apps():
    started: list[App] = []
    yield started
    for app in started:
        app.cleanup()


def open_both(apps, tmp_path: Path, args) -> list[App]:
    """The app in each variant's terminal, side by side; `args(variant)`."""
    for variant in VARIANTS:
        apps.append(App(tmp_path, args(variant), variant))
    return list(apps)


def wait_all(pair: list[App], condition, what: str, timeout: float = 90.0) -> None:
    for app in pair:
        wait_until(lambda: condition(app), f"{what} ({app.variant})", timeout, app.screen)


def close_all(pair: list[App], exit_codes=("129",)) -> None:
    """Each terminal ended, then nothing of its app left within DEADLINE;
    where the shell outlives the app (`tty`: it ignores SIGHUP) it writes
    the app's exit status, one of `exit_codes`."""
    ended = [app.close_terminal() for app in pair]
    for app, since in zip(pair, ended):
        app.assert_gone(since)
    for app in pair:
        if app.variant == "tty":
            code = wait_until(lambda: app.exit_file.exists() and app.exit_file.read_text().strip(),
                              "the shell to write the exit status", 5)
            assert code in exit_codes, code


def assert_idle(pair: list[App], seconds: float = 1.5) -> None:
    """A waiting app's processes use no CPU to speak of: nothing spins (a
    spinning thread takes 100 ticks a second). The UI process ticks its
    clocks (20 source polls and 10 redraw ticks a second: ~1% of a core
    measured): at most 3 ticks a second; the trainer child and the
    resource tracker next to none (a paused child's pipe and parent checks:
    3 ticks in 10 s measured): at most 2 in the window. One tick of slack: the
    counters are whole ticks, and on a machine busy compiling beside the test
    the clocks' ~1 tick a second read 5 ticks in 1.5 s once, and the paused
    child 2 (a spinning thread reads 150)."""
    pids = {app: app.processes() for app in pair}
    assert all(pids.values()), "no process to watch"
    before = {p: cpu_ticks(p) for ps in pids.values() for p in ps}
    time.sleep(seconds)
    for app, ps in pids.items():
        for pid in ps:
            ticks = cpu_ticks(pid) - before[pid]
            limit = 3 * seconds + 1 if "-m traintop" in cmdline(pid) else 2
            assert ticks <= limit, (f"{app.variant}: {pid} used {ticks} ticks in {seconds} s: "
                                    f"{cmdline(pid)}")


def status_line(app: App) -> str:
    return next((line for line in app.screen().splitlines() if "steps/s" in line), "")


def training(app: App) -> bool:
    line = status_line(app)
    return "running" in line and "step 0 " not in line


def assert_recording_whole(path: Path) -> None:
    """Every step from 1 on, and a final status that says it stopped."""
    recording = load(path)
    steps = [r.step for m in recording.messages if isinstance(m, Steps) for r in m.results]
    assert steps and steps == list(range(1, steps[-1] + 1)), path
    finals = [m for m in recording.messages if isinstance(m, Status)]
    assert finals and not finals[-1].running and finals[-1].step == steps[-1], path
    assert not recording.partial_tail, path


# ----- the phases ------------------------------------------------------------
def test_start_up_before_the_first_frame(tmp_path, apps):
    """Closed as soon as the trainer child is spawned (it imports torch)
    while the UI still imports Textual: nothing is drawn yet. A third app
    (`tty`) has its terminal gone as soon as its process exists, before
    Python has even read traintop: a tty already hung up is no tty to
    isatty(), and is still watched."""
    words = write_words(tmp_path / "words.txt")
    pair = open_both(apps, tmp_path, lambda v: f"--data {words} {LIVE}")
    early = App(tmp_path, f"--data {words} {LIVE}", "tty")
    apps.append(early)
    wait_until(early.processes, "the app's process", 30)
    close_all([early])
    wait_all(pair, App.trainer, "the trainer child to be spawned", 60)
    for app in pair:
        assert "? help" not in app.screen(), app.screen()   # no first frame yet
    close_all(pair)


def test_app_killed_outright_while_its_trainer_starts(tmp_path, apps):
    """No guard runs in a process killed with SIGKILL: its trainer child,
    still importing torch (its loop's own check is seconds away), sees its
    parent gone from a watching thread and leaves at once; the resource
    tracker follows once nobody shares it."""
    words = write_words(tmp_path / "words.txt")
    app = App(tmp_path, f"--data {words} {LIVE}", "tty")
    apps.append(app)
    trainer = wait_until(app.trainer, "the trainer child to be spawned", 60, app.screen)
    wait_until(lambda: "libtorch" in maps(trainer), "the trainer to load torch", 60)
    assert "? help" not in app.screen()   # still starting: the loop has not begun
    (ui,) = [p for p in app.processes() if "-m traintop" in cmdline(p)]
    os.kill(ui, signal.SIGKILL)
    app.assert_gone(time.monotonic() - DEADLINE + 1.0, "the app was killed")   # within 1 s


def test_training_with_a_recording(tmp_path, apps):
    """Beside the two variants, a third app (`tty`) whose trainer child does
    not answer (SIGSTOP: it takes no quit, and SIGTERM waits in a stopped
    process): the app waits for it only briefly, kills it, closes the
    recording whole, and is gone in time all the same."""
    words = write_words(tmp_path / "words.txt")
    pair = open_both(apps, tmp_path,
                     lambda v: f"--data {words} {LIVE} --record {tmp_path / v}.jsonl")
    stuck = App(tmp_path, f"--data {words} {LIVE} --record {tmp_path / 'stuck'}.jsonl", "tty")
    apps.append(stuck)
    wait_all(pair + [stuck], training, "training")
    os.kill(stuck.trainer(), signal.SIGSTOP)
    close_all(pair + [stuck])
    for name in VARIANTS + ("stuck",):
        assert_recording_whole(tmp_path / f"{name}.jsonl")


def test_paused(tmp_path, apps):
    words = write_words(tmp_path / "words.txt")
    pair = open_both(apps, tmp_path, lambda v: f"--data {words} {LIVE} --paused")
    wait_all(pair, lambda app: "paused" in status_line(app), "paused")
    wait_all(pair, lambda app: len(app.processes()) == 3, "the app, its trainer, the tracker", 10)
    assert_idle(pair)
    close_all(pair)


def test_in_the_middle_of_quitting(tmp_path, apps):
    """`q`, then the terminal closed at once: the app's own quit (closing
    the child and the recording, restoring the terminal) is under way."""
    words = write_words(tmp_path / "words.txt")
    pair = open_both(apps, tmp_path,
                     lambda v: f"--data {words} {LIVE} --record {tmp_path / v}.jsonl")
    wait_all(pair, training, "training")
    for app in pair:
        app.tmux.keys("q")
    time.sleep(0.05)
    close_all(pair, exit_codes=("0", "129"))   # 0 where the quit won the race
    for app in pair:
        assert_recording_whole(tmp_path / f"{app.variant}.jsonl")


def test_sweep(tmp_path, apps):
    words = write_words(tmp_path / "words.txt")
    pair = open_both(apps, tmp_path, lambda v: f"--data {words} {LIVE} --sweep gain=1,5/3")
    wait_all(pair, training, "the sweep training")
    close_all(pair)


def test_replay(tmp_path, apps):
    recording = tmp_path / "run.jsonl"
    shutil.copy(FIXTURE, recording)
    pair = open_both(apps, tmp_path, lambda v: f"replay {recording}")
    wait_all(pair, lambda app: "end of recording" in app.screen(), "the replay at its end", 60)
    time.sleep(0.5)   # its last panes drawn
    assert_idle(pair)
    close_all(pair)


def test_attach(tmp_path, apps):
    recording = tmp_path / "run.jsonl"
    shutil.copy(FIXTURE, recording)
    pair = open_both(apps, tmp_path, lambda v: f"attach {recording}")
    wait_all(pair, lambda app: "step 120" in app.screen(), "the followed run", 60)
    time.sleep(0.5)
    assert_idle(pair)
    close_all(pair)


def test_replay_with_stdin_at_its_end_quits(tmp_path, apps):
    """No terminal to read keys from (stdin /dev/null): Textual's input
    thread would spin on read() = 0; the app quits instead, says why, and
    puts the terminal back."""
    recording = tmp_path / "run.jsonl"
    shutil.copy(FIXTURE, recording)
    # `sleep`: a pane whose shell ends at once loses the app's last lines.
    app = App(tmp_path, f"replay {recording} < /dev/null", "tty", then="; sleep 10")
    apps.append(app)
    code = wait_until(lambda: app.exit_file.exists() and app.exit_file.read_text().strip(),
                      "the app to quit", 30, app.screen)
    assert code == "2"
    app.wait_for_screen("standard input ended", 5)
    screen = app.screen()
    assert "standard input ended" in screen and "end of recording" not in screen, screen
    assert not app.processes()
