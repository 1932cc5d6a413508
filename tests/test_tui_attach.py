"""`traintop attach` in the app: it waits for the file, follows what the
writer adds, says when the writer goes quiet, and starts over with it."""

from __future__ import annotations

import dataclasses

import pytest

from traintop.commands import cli
from traintop.engine.feed.messages import RunStarted, Status, Steps
from traintop.engine.recording.follow_source import FollowSource
from traintop.engine.recording.recorder import Recorder
from traintop.tui.app import TraintopApp
from tui_fakes import until
from tui_fixed_run import fixed_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")




def status_of(app) -> str:
    return str(app.status_line.content)


def test_follows_a_writer_through_quiet_and_a_restart(tmp_path):
    import asyncio

    asyncio.run(follow(tmp_path))


async def follow(tmp_path):
    path = tmp_path / "run.jsonl"
    messages = fixed_run()
    start, batches = messages[0], [m for m in messages if isinstance(m, Steps)]
    source = FollowSource(path, quiet_after=0.5)
    app = TraintopApp(source, title="attach")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: status_of(app) == "attach · waiting for run.jsonl to appear",
                    what="waiting")

        writer = Recorder(path)
        for m in (start, *batches[:2]):
            writer.consume(m)
        writer.consume(Status(100, 0.1, running=True, finished=False, steps_per_sec=250.0))
        writer.flush()
        await until(pilot, lambda: app.state.step == 100, what="the first 100 steps")
        # (a health summary may follow: `· health: 1 warn (tab 4)`)
        assert status_of(app).startswith("attach · step 100 · lr 0.1 · gain 5/3 · BatchNorm on · "
                                         "250 steps/s · running · read-only")
        # Nothing more for longer than quiet_after: the status line says so.
        await until(pilot, lambda: "writer quiet for" in status_of(app), what="quiet")
        assert status_of(app).startswith("attach · step 100 · lr 0.1 · ")

        for m in batches[2:4]:
            writer.consume(m)
        writer.flush()
        await until(pilot, lambda: app.state.step == 200, what="more steps")
        assert "quiet" not in status_of(app) and "running · read-only" in status_of(app)   # (a health summary may follow)
        assert app.state.history.tick == 200

        # Steering keys do nothing to another process's run.
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(message)
        await pilot.press("space", "right_square_bracket")
        assert notes == ["read-only: this source takes no commands"] * 2

        # The writer starts over (same file, rewritten) with another gain:
        # the app forgets the old run and follows the new one from step 0.
        writer.close()
        restarted = RunStarted(dataclasses.replace(
            start.info, config={**start.info.config, "gain": "3"}))
        writer = Recorder(path)
        writer.consume(restarted)
        writer.consume(batches[0])
        writer.flush()
        await until(pilot, lambda: " · gain 3 · " in status_of(app), what="the restart")
        await until(pilot, lambda: app.state.step == 50, what="the new run's steps")
        assert app.state.runs == 1 and app.state.history.tick == 50
        assert app.state.history.markers == []
        assert any("started over" in text for _, text in app.state.events)
        assert status_of(app).startswith("attach · step 50 · lr 0.1 · gain 3 · ")
        writer.close()
        await pilot.press("q")
    assert app.return_code == 0


def test_corrupt_stream_fails_before_the_app(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    with Recorder(path) as writer:
        writer.consume(fixed_run(100)[0])
    with open(path, "ab") as f:
        f.write(b"[1, 2\n")
    assert cli.main(["attach", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"traintop: error: {path}:2: ")
