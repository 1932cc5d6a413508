"""ReplaySource: a recorded run delivered up to a cursor on its snapshot timeline."""

from __future__ import annotations

import pytest

from traintop.commands import cli
from traintop.engine.feed.messages import Command, Event, RunStarted, Status, Steps
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.viewer.run_state import RunState
from traintop.commands.replay import summary


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "run.jsonl"
    code = cli.main(["run", "--steps", "250", "--stats-every", "100", "--n-hidden", "12",
                     "--depth", "2", "--eval", "val", "--json", "--record", str(path)])
    assert code == 0
    return path


def drain(source) -> list:
    """Everything the source has to deliver now (the whole file read first)."""
    assert source.wait_loaded(30)
    out = []
    while batch := source.poll(limit=7):
        out += batch
    return out


def steps_of(messages) -> list[int]:
    return [r.step for m in messages if isinstance(m, Steps) for r in m.results]


def test_opens_at_the_end_with_the_whole_run(recording):
    source = ReplaySource(recording)
    assert source.snapshot_steps == [1, 100, 200, 250]
    messages = drain(source)
    assert isinstance(messages[0], RunStarted)
    assert steps_of(messages) == list(range(1, 251))
    assert any(isinstance(m, Event) and m.kind == "evaluate" for m in messages)
    assert messages[-1] == Status(250, 0.1, False, True, source.speed)
    state = RunState(meta=source.meta)
    for m in messages:
        state.apply(m)
    # A viewer folding the replay ends where the run ended.
    summary_doc = summary(str(recording))
    doc = state.report()
    assert {k: doc[k] for k in ("steps", "last_loss", "layers", "weights")} == \
        {k: summary_doc[k] for k in ("steps", "last_loss", "layers", "weights")}


def test_cursor_steps_through_snapshots_and_rewinds(recording):
    source = ReplaySource(recording, at_end=False)
    first = drain(source)
    assert steps_of(first) == [1] and source.cursor == 0
    source.next()
    assert steps_of(drain(source)) == list(range(2, 101)) and source.cursor == 1
    source.send(Command("step", {"n": 1}))
    assert steps_of(drain(source)) == list(range(101, 201))
    source.previous()
    back = drain(source)
    assert back[0].kind == "rewind" and isinstance(back[1], RunStarted)
    assert steps_of(back) == list(range(1, 101)) and source.step == 100
    source.end()
    rest = drain(source)
    assert steps_of(rest) == list(range(101, 251)) and rest[-1].finished
    source.previous()             # from the very end: back onto the last snapshot
    assert source.step == 250 and source.cursor == 3
    source.send(Command("seek", {"index": "home"}))
    home = drain(source)
    assert home[0].kind == "rewind" and steps_of(home) == [1]


def test_play_advances_with_the_clock(recording):
    now = [0.0]
    source = ReplaySource(recording, at_end=False, clock=lambda: now[0])
    drain(source)
    source.play(speed=50.0)             # steps per second
    now[0] = 1.0
    got = drain(source)
    # 1 + 50 steps played: the grains of ten steps up to 50 (51 waits for 60)
    assert steps_of(got) == list(range(2, 51)) and got[-1].running
    now[0] = 100.0
    got = drain(source)
    assert steps_of(got) == list(range(51, 251))
    assert not source.playing and got[-1].finished and not got[-1].running
    with pytest.raises(Exception, match="speed"):
        source.play(speed=0)


def test_the_speed_reads_as_steps_never_in_exponent_form():
    from traintop.engine.recording.replay_source import _speed
    assert _speed(13_107.2) == "13,107" and _speed(104_857.6) == "104,858"
    assert _speed(6_666.7) == "6,667" and _speed(83.333) == "83.33" and _speed(1.0) == "1"
