"""A trainer child that dies or hangs is said at once; `r` starts a fresh one.

The ChildWatch bookkeeping on a fake clock; then the real child, killed with
SIGKILL, stopped with SIGSTOP and crashed by an exception in its loop.
"""

from __future__ import annotations

import os
import queue
import signal
import time

import pytest

from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Command, Event, RunStarted, Status, Steps
from traintop.engine.viewer.run_state import RunState
from traintop.engine.live.runner import Runner
from traintop.engine.live.session import ChildWatch, LiveSession, SessionSpec, death_text
from traintop.tui.status_line import run_state_word, status_text
from tui_fakes import write_words
from tui_fixed_run import result_at, run_info
from helpers import TIMING

TINY = TrainConfig(n_hidden=16, steps=1_000_000, stats_every=20)


def fixed_run(steps: int):
    """A run start and `steps` formula-made steps (no torch arithmetic)."""
    info = run_info()
    return [RunStarted(info, None), Steps(tuple(result_at(s, info, 0.1)
                                                for s in range(1, steps + 1)))], info


def status(step: int, running: bool = True, rate: float = 250.0) -> Status:
    return Status(step=step, lr=0.1, running=running, finished=False, steps_per_sec=rate)


# ----- the words -------------------------------------------------------------------
def test_death_text_names_the_signal_or_the_error():
    assert death_text(-9, None) == "trainer died: killed by signal 9 (out of memory?)"
    assert death_text(-15, None) == "trainer died: killed by signal 15 (SIGTERM)"
    assert death_text(1, "RuntimeError: boom") == "trainer died: RuntimeError: boom"
    assert death_text(3, None) == "trainer died: exited with code 3"


# ----- ChildWatch on a fake clock ------------------------------------------------------
def test_watch_says_silence_once_a_second_and_takes_it_back():
    watch = ChildWatch(started=0.0, hang_seconds=8, start_seconds=60)
    assert watch.check([status(0)], None, 0.5) == []
    assert watch.check([], None, 8.4) == []             # 7.9 s: not yet
    hung = watch.check([], None, 8.6)                   # 8.1 s of silence
    assert [e.text for e in hung] == ["trainer not responding for 8 s"]
    assert hung[0].kind == "trainer" and hung[0].data == {"state": "hung", "silent_s": 8}
    assert watch.check([], None, 9.0) == []             # still 8 whole seconds
    assert [e.text for e in watch.check([], None, 9.6)] == ["trainer not responding for 9 s"]
    back = watch.check([status(5)], None, 10.0)
    assert [(e.text, e.data["state"]) for e in back] == [
        ("trainer responding again after 10 s", "alive")]
    assert watch.check([], None, 12.0) == []


def test_watch_gives_a_starting_child_longer():
    watch = ChildWatch(started=0.0, hang_seconds=8, start_seconds=60)
    assert watch.check([], None, 30.0) == []            # importing torch, reading data
    assert [e.text for e in watch.check([], None, 61.0)] == ["trainer not responding for 61 s"]


def test_watch_reports_a_death_once_with_the_last_fatal_error():
    watch = ChildWatch(started=0.0)
    fatal = Event("error", 42, "RuntimeError: CUDA error", {"fatal": True})
    out = watch.check([status(41), fatal], 1, 1.0)
    assert [(e.step, e.text, e.data) for e in out] == [
        (41, "trainer died: RuntimeError: CUDA error", {"state": "died", "exitcode": 1})]
    assert watch.died and watch.check([], 1, 2.0) == []   # said once


# ----- what the status line says -------------------------------------------------------
def test_a_dead_trainer_is_never_shown_running():
    messages, _ = fixed_run(steps=30)
    state = RunState()
    for m in messages:
        state.apply(m)
    state.apply(status(30))
    assert run_state_word(state) == "running"
    changed = state.apply(Event("trainer", 30, "trainer died: killed by signal 9 (out of memory?)",
                                {"state": "died", "exitcode": -9, "signal": 9}))
    assert {"status", "events", "loss"} <= changed
    line = status_text(state)
    assert line.startswith("trainer died: killed by signal 9 (out of memory?) · step 30 · "), line
    assert line.endswith(" · 0 steps/s"), line
    assert state.status.running is False
    assert state.history.markers[-1].text.startswith("trainer died")
    assert len(state.history.log10_loss) == 30      # the panes keep the history
    # A fresh trainer: the word goes, the history stays.
    state.apply(RunStarted(state.info, "restart: a fresh trainer after the last one died"))
    state.apply(status(0))
    assert run_state_word(state) == "running" and len(state.history.log10_loss) == 30


def test_a_silent_trainer_is_said_and_one_event_line_kept():
    messages, _ = fixed_run(steps=10)
    state = RunState()
    for m in messages + [status(10)]:
        state.apply(m)
    for n in (8, 9, 10):
        state.apply(Event("trainer", 10, f"trainer not responding for {n} s",
                          {"state": "hung", "silent_s": n}))
    assert run_state_word(state) == "trainer not responding for 10 s"
    assert status_text(state).endswith(" · 0 steps/s")      # its last rate is stale
    assert [t for _, t in state.events if "responding" in t] == ["trainer not responding for 8 s"]
    state.apply(Event("trainer", 10, "trainer responding again after 11 s", {"state": "alive"}))
    state.apply(status(11))
    assert run_state_word(state) == "running"


def test_a_failed_recording_stays_said():
    messages, _ = fixed_run(steps=5)
    state = RunState()
    for m in messages + [status(5)]:
        state.apply(m)
    state.apply(Event("error", 0, "recording stopped: run.jsonl: cannot write: No space left "
                      "on device; the recording ends at step 3", {"recording": "run.jsonl"}))
    assert run_state_word(state) == "running · not recording"
    state.apply(RunStarted(state.info, "restart"))   # a restart does not resume the recording
    state.apply(status(0))
    assert run_state_word(state) == "running · not recording"


# ----- the child's own fatal error -------------------------------------------------------
class _Broken:
    """A trainer whose third step raises, as a bug or a driver error would."""

    steps_done, lr, finished, stopped = 0, 0.1, False, None

    class config:
        steps = 100

    _info = None

    def info(self):
        if _Broken._info is None:
            _Broken._info = run_info()
        return _Broken._info

    def step(self):
        if self.steps_done == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")
        self.steps_done += 1
        return result_at(self.steps_done, self.info(), 0.1)


def test_runner_sends_the_last_line_of_a_fatal_error():
    commands, messages = queue.Queue(), queue.Queue()
    messages.close = messages.cancel_join_thread = lambda: None
    runner = Runner(_Broken(), SessionSpec(config=TINY), commands, messages, os.getppid())
    with pytest.raises(RuntimeError) as raised:
        runner.serve()
    runner.fatal(raised.value)
    out = []
    while not messages.empty():
        out.append(messages.get())
    fatal = [m for m in out if isinstance(m, Event) and m.data.get("fatal")]
    assert [(m.kind, m.step, m.text) for m in fatal] == [
        ("error", 2, "RuntimeError: CUDA error: an illegal memory access was encountered")]
    assert sum(len(m.results) for m in out if isinstance(m, Steps)) == 2   # sent before it


# ----- the real child -----------------------------------------------------------------------
def pump(session, state, until, timeout=60.0, what="") -> float:
    """Poll like the app does (20 times a second) until `until(state)`; returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in session.poll():
            state.apply(m)
        if until(state):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {run_state_word(state)}")


@TIMING   # a hang said after 2-3.5 s, a death within a second
def test_kill_stop_and_a_fresh_child(tmp_path):
    words = write_words(tmp_path / "words.txt")
    session = LiveSession(SessionSpec(config=TINY, data=str(words), engine="fast"),
                          hang_seconds=2.0)
    state = RunState()
    session.start()
    try:
        pump(session, state, lambda s: s.step > 50, what="training")
        first = session.pid

        os.kill(first, signal.SIGSTOP)          # hung: alive, silent
        stopped_at = time.monotonic()
        said = pump(session, state, lambda s: s.trainer_state == "hung", what="hang")
        assert 2.0 <= said - stopped_at < 3.5
        assert run_state_word(state).startswith("trainer not responding for ")
        os.kill(first, signal.SIGCONT)
        pump(session, state, lambda s: s.trainer_state is None, what="back")
        assert run_state_word(state) == "running"

        steps_before = len(state.history.log10_loss)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        said = pump(session, state, lambda s: s.trainer_state == "died", what="death")
        assert said - killed < 1.0               # within a second
        assert run_state_word(state) == "trainer died: killed by signal 9 (out of memory?)"
        assert len(state.history.log10_loss) >= steps_before

        session.send(Command("pause"))            # nothing to send it to: no error
        session.send(Command("restart", {"gain": "2"}))
        assert session.pid != first
        pump(session, state, lambda s: s.runs == 2 and s.step > 10, what="a fresh trainer")
        assert state.info.config["gain"] == "2"
        assert state.trainer_state is None and run_state_word(state) == "running"
        texts = [t for _, t in state.events]
        assert texts[-3:] == ["trainer died: killed by signal 9 (out of memory?)",
                              "starting a fresh trainer…",
                                "restart: a fresh trainer after the last one died"]
        second = session.pid
    finally:
        session.close()
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
