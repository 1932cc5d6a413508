"""LiveSession: the trainer in a spawned child, driven through traintop.engine.feed.messages.

The commands' answers are the child's Runner's: tested on an in-process
runner (helpers.runner), the same Runner without the spawn. What only the
spawn shows (its build errors, close, a dead viewer) runs a real child."""

from __future__ import annotations

import dataclasses
import math
import os
import time

import pytest
from pathlib import Path

from traintop.data.dataset import load_dataset
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Command, Event, RunStarted, Status, Steps
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.engine.training.trainer import Trainer
from helpers.runner import InProcessSession
from tui_fakes import write_words

TINY = TrainConfig(n_hidden=16, steps=100_000, stats_every=10)


class Collector:
    """Polls a session and keeps every message, waiting with a deadline."""

    def __init__(self, session: LiveSession):
        self.session = session
        self.messages: list = []

    def wait_for(self, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.session.poll():
                self.messages.append(m)
                if predicate(m):
                    return m
            time.sleep(0.01)
        last = [repr(m)[:120] for m in self.messages[-3:]]
        raise AssertionError(f"no matching message in {timeout}s; last: {last}")

    def results(self):
        return [r for m in self.messages if isinstance(m, Steps) for r in m.results]


@pytest.fixture
def words(tmp_path):
    return write_words(tmp_path / "words.txt")


def open_session(words, tmp_path, spawn: bool = False, **kw) -> tuple[LiveSession, Collector]:
    """A session on `words`: the Runner in this process (one torch thread), or
    with `spawn` a real LiveSession child."""
    kw.setdefault("engine", "exact")  # as before "auto" became the default: no compile here
    spec = SessionSpec(config=kw.pop("config", TINY), data=str(words),
                       checkpoint_dir=str(tmp_path), **kw)
    session = LiveSession(spec) if spawn else InProcessSession(dataclasses.replace(spec, threads=1))
    session.start()
    return session, Collector(session)


def test_paused_steps_match_an_in_process_trainer(words, tmp_path):
    session, c = open_session(words, tmp_path, start_paused=True)
    try:
        started = c.wait_for(lambda m: isinstance(m, RunStarted))
        assert started.why is None and started.info.config["n_hidden"] == 16
        first = c.wait_for(lambda m: isinstance(m, Status))
        assert (first.step, first.running) == (0, False)
        for _ in range(5):
            session.send(Command("step"))
        c.wait_for(lambda m: isinstance(m, Status) and m.step == 5)
        session.send(Command("evaluate", {"splits": ["train", "val"]}))
        answer = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "evaluate")
    finally:
        session.close()
    assert not session.is_alive()

    trainer = Trainer(TINY, load_dataset(words, TINY.block_size, TINY.split_seed))
    expected = [trainer.step().loss for _ in range(5)]
    got = c.results()
    assert [r.step for r in got] == [1, 2, 3, 4, 5]
    assert [r.loss for r in got] == pytest.approx(expected, rel=1e-6)
    direct = trainer.evaluate(("train", "val"))
    assert answer.data["losses"] == pytest.approx(direct, rel=1e-6)
    assert answer.step == 5


def test_running_batches_steps_and_answers_every_command(words, tmp_path):
    session, c = open_session(words, tmp_path)
    try:
        c.wait_for(lambda m: isinstance(m, Steps) and m.results[-1].step >= 300)
        steps_messages = [m for m in c.messages if isinstance(m, Steps)]
        # Batched: far fewer messages than steps, consecutive steps inside.
        assert len(steps_messages) < len(c.results()) / 3
        assert [r.step for r in c.results()] == list(range(1, len(c.results()) + 1))

        session.send(Command("pause"))
        paused = c.wait_for(lambda m: isinstance(m, Status) and not m.running)
        c.messages.clear()
        session.send(Command("step"))
        c.wait_for(lambda m: isinstance(m, Status) and m.step == paused.step + 1)
        assert [r.step for r in c.results()] == [paused.step + 1]

        session.send(Command("scale_lr", {"factor": 2.0}))
        lr = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "lr")
        assert lr.data["lr"] == pytest.approx(2 * lr.data["old"])
        c.wait_for(lambda m: isinstance(m, Status) and m.lr == pytest.approx(lr.data["lr"]))

        session.send(Command("restart", {"gain": "3"}))
        again = c.wait_for(lambda m: isinstance(m, RunStarted))
        assert again.why == "restart: gain 3" and again.info.config["gain"] == "3"
        c.wait_for(lambda m: isinstance(m, Status) and m.step == 0 and not m.running)

        session.send(Command("sample", {"n": 10}))
        sample = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "sample")
        assert len(sample.data["samples"]) == 10

        session.send(Command("calibrate", {"apply": False}))
        cal = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "calibrate")
        assert len(cal.data["layers"]) == TINY.depth + 1   # every Linear, output included
        assert all(d >= 0 for d in cal.data["mean_max_diff"])

        session.send(Command("checkpoint"))
        ck = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "checkpoint")
        assert ck.data["path"] == str(tmp_path / "traintop-step0.ckpt")
        assert (tmp_path / "traintop-step0.ckpt").stat().st_size > 0

        session.send(Command("resume"))
        c.wait_for(lambda m: isinstance(m, Status) and m.running)
    finally:
        session.close()
    assert not session.is_alive()


def test_engine_errors_become_events_and_the_child_keeps_serving(words, tmp_path):
    session, c = open_session(words, tmp_path, start_paused=True)
    try:
        c.wait_for(lambda m: isinstance(m, RunStarted))
        session.send(Command("restart", {"gain": "not-a-gain"}))
        error = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "error")
        assert "restart" in error.text and "--gain" in error.text
        session.send(Command("no-such-command"))
        c.wait_for(lambda m: isinstance(m, Event) and m.kind == "error"
                   and "no-such-command" in m.text)
        session.send(Command("step"))
        c.wait_for(lambda m: isinstance(m, Status) and m.step == 1)
    finally:
        session.close()
    assert not session.is_alive()


def test_bad_data_is_an_error_event_not_a_crash(tmp_path):
    session = LiveSession(SessionSpec(config=TINY, data=str(tmp_path / "missing.txt")))
    session.start()
    c = Collector(session)
    try:
        error = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "error")
        assert "missing.txt" in error.text
    finally:
        session.close()
    assert not session.is_alive()


def test_a_non_finite_loss_stops_the_run_and_says_why(words, tmp_path):
    config = TINY.with_changes(lr=1e38)   # the first update overflows float32
    session, c = open_session(words, tmp_path, config=config)
    try:
        stopped = c.wait_for(lambda m: isinstance(m, Event) and m.kind == "stopped")
        status = c.wait_for(lambda m: isinstance(m, Status) and m.stopped)
    finally:
        session.close()
    assert "non-finite" in stopped.text
    assert status.stopped in stopped.text and not status.running
    last = c.results()[-1]
    assert last.nonfinite is not None and last.step == stopped.step
    assert math.isnan(last.loss) and last.nonfinite.what == "activation"


def test_close_ends_a_busy_child(words, tmp_path):
    session, c = open_session(words, tmp_path, spawn=True)
    c.wait_for(lambda m: isinstance(m, Steps))
    pid = session.pid
    session.close()
    assert not session.is_alive()
    with pytest.raises(ProcessLookupError):

        os.kill(pid, 0)


def test_close_hands_back_the_steps_sent_after_the_last_poll(words, tmp_path):
    session, c = open_session(words, tmp_path, spawn=True)
    c.wait_for(lambda m: isinstance(m, Steps))
    polled = c.results()[-1].step
    time.sleep(0.5)                      # the child keeps stepping, unpolled
    rest = [r.step for m in session.close() if isinstance(m, Steps) for r in m.results]
    assert rest and rest == list(range(polled + 1, rest[-1] + 1))
    assert session.close() == []         # closing again is a no-op


def test_the_child_stops_when_its_viewer_dies(words, tmp_path):
    """A viewer killed without a quit (an SSH hangup) leaves no trainer behind."""
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from traintop.engine.config import TrainConfig\n"
        "from traintop.engine.live.session import LiveSession, SessionSpec\n"
        "if __name__ == '__main__':\n"
        f"    s = LiveSession(SessionSpec(TrainConfig(n_hidden=16), data={str(words)!r},\n"
        "                                engine='fast'))   # no background compile\n"
        "    s.start()\n"
        "    print(s.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    path = tmp_path / "viewer.py"
    path.write_text(script)
    viewer = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True)
    child = int(viewer.stdout.readline())
    time.sleep(1.0)
    viewer.send_signal(signal.SIGKILL)
    viewer.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not running(child):
            return
        time.sleep(0.1)
    state = process_state(child)
    os.kill(child, signal.SIGKILL)
    raise AssertionError(f"the trainer outlived its viewer (state {state})")


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie (a reparented zombie waits for init to reap it)."""
    return process_state(pid) not in (None, "Z")
