"""The live child driving a sweep: every message names its run, a command
with "run" acts on that run alone, without it on every run; restarts keep
the sweep."""

from __future__ import annotations

import time

from traintop.engine.feed.messages import Command, Event, RunStarted, Status, Steps, Sweep
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.engine.viewer.sweep_state import SweepState
from traintop.engine.sweep.spec import parse_sweep
from tui_fakes import SMALL_CONFIG, write_words


def collect(session, state, until, timeout=60.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in session.poll():
            got.append(m)
            state.apply(m)
        if until(got):
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out; got {[type(m).__name__ for m in got][-20:]}")


def test_the_child_drives_a_sweep(tmp_path):
    config = SMALL_CONFIG.with_changes(steps=200, stats_every=50)
    runs = parse_sweep(["gain=1,5/3"], config)
    session = LiveSession(SessionSpec(config=config, data=str(write_words(tmp_path / "w.txt")),
                                      sweep=runs, start_paused=True, threads=1))
    state = SweepState()
    session.start()
    try:
        got = collect(session, state, lambda ms: sum(isinstance(m, Status) for m in ms) >= 2)
        assert got[0] == Sweep(("gain=1", "gain=5/3"), ("gain",))
        starts = [m for m in got if isinstance(m, RunStarted)]
        assert [(m.run, m.info.config["gain"]) for m in starts] == [(0, "1"), (1, "5/3")]

        session.send(Command("step"))                       # the sweep's step: every run
        got = collect(session, state, lambda ms: {m.run for m in ms if isinstance(m, Steps)}
                      == {0, 1})
        assert sorted((m.run, [r.step for r in m.results]) for m in got
                      if isinstance(m, Steps)) == [(0, [1]), (1, [1])]

        session.send(Command("set_lr", {"lr": 0.05, "run": 1}))   # one run
        got = collect(session, state, lambda ms: any(isinstance(m, Event) and m.kind == "lr"
                                                     for m in ms))
        assert [(m.run, m.data["lr"]) for m in got if isinstance(m, Event) and m.kind == "lr"] \
            == [(1, 0.05)]
        session.send(Command("scale_lr", {"factor": 2.0}))        # every run
        got = collect(session, state, lambda ms: sum(isinstance(m, Event) and m.kind == "lr"
                                                     for m in ms) == 2)
        assert sorted((m.run, m.data["lr"]) for m in got
                      if isinstance(m, Event) and m.kind == "lr") == [(0, 0.2), (1, 0.1)]

        session.send(Command("restart", {"gain": "3", "run": 0}))  # keeps the sweep
        got = collect(session, state, lambda ms: any(isinstance(m, RunStarted) for m in ms))
        (restart,) = [m for m in got if isinstance(m, RunStarted)]
        assert restart.run == 0 and restart.info.config["gain"] == "3"
        assert state.runs[1].info.config["gain"] == "5/3" and state.runs[1].step == 1

        session.send(Command("resume"))
        collect(session, state, lambda ms: all(s.status is not None and s.status.finished
                                               for s in state.runs))
        assert [s.steps for s in state.runs] == [200, 200]
        finished = [s.status for s in state.runs]
        assert [s.run for s in finished] == [0, 1]
        # The runs' Status carries the sweep's rate, the same for every run.
        assert finished[0].steps_per_sec == finished[1].steps_per_sec
        report = state.report()
        assert [r["config"]["gain"] for r in report["runs"]] == ["3", "5/3"]
    finally:
        session.close()
