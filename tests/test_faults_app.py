"""The app with a real trainer child that gets killed: said within a second,
history kept, `r` starts a fresh child, `q` quits with nothing left behind;
and a recording whose disk fills: the run goes on, the notice stays."""

from __future__ import annotations

import os
import signal
import time

import pytest

from traintop.engine.config import TrainConfig
from traintop.engine.recording.recording_source import RecordingSource
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.engine.recording.opener import load
from traintop.tui.app import TraintopApp
from full_disk import small_disk  # noqa: F401 - a fixture
from tui_fakes import async_test, run_word, until, write_words
from helpers import TIMING

# An endless run on the fast engine: no background compile beside the test.
CONFIG = TrainConfig(n_hidden=16, steps=1_000_000, stats_every=20)


@TIMING   # the death said within a second
@async_test
async def test_killed_trainer_is_said_and_r_starts_a_fresh_one(tmp_path):
    words = write_words(tmp_path / "words.txt")
    session = LiveSession(SessionSpec(config=CONFIG, data=str(words), engine="fast"))
    app = TraintopApp(session)
    status = lambda: str(app.status_line.content)  # noqa: E731
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step > 50 and run_word(status()) == "running",
                    timeout=60, what="training")
        first = session.pid
        points = len(app.state.history.log10_loss)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        await until(pilot, lambda: "trainer died" in status(), timeout=5, what="the death")
        assert time.monotonic() - killed < 1.0
        assert status().startswith("trainer died: killed by signal 9 (out of memory?) · step ")
        assert status().endswith(" · 0 steps/s"), status()
        assert app.status_line.has_class("dead")
        assert len(app.state.history.log10_loss) >= points     # the loss pane keeps its line
        await pilot.press("space")                             # nothing to pause: said, no error
        await pilot.pause(0.2)
        assert "trainer died" in status() and app.errors == 0

        await pilot.press("r")
        await until(pilot, lambda: app.state.runs == 2 and run_word(status()) == "running",
                    timeout=60, what="a fresh trainer")
        assert session.pid != first and not app.status_line.has_class("dead")
        second = session.pid
        await pilot.press("q")
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@async_test
async def test_recording_on_a_full_disk_stops_with_a_notice_and_the_run_goes_on(tmp_path,
                                                                                small_disk):
    words = write_words(tmp_path / "words.txt")
    path = small_disk / "run.jsonl"
    source = RecordingSource(LiveSession(SessionSpec(config=CONFIG, data=str(words),
                                                     engine="fast")), path)
    app = TraintopApp(source)
    status = lambda: str(app.status_line.content)  # noqa: E731
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: source.failed is not None, timeout=120, what="a full disk")
        assert "No space left on device" in source.failed and str(path) in source.failed
        await until(pilot, lambda: status().endswith("running · not recording"), timeout=5,
                    what="the notice on the status line")
        step = app.state.step
        await until(pilot, lambda: app.state.step > step + 50, timeout=30, what="the run going on")
        await pilot.press("q")
    recording = load(path)                  # whole lines, readable, the run's start kept
    steps = [r.step for m in recording.messages if hasattr(m, "results") for r in m.results]
    assert steps and steps == list(range(1, len(steps) + 1))
