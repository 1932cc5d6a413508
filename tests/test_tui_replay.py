"""`traintop replay` in the app: keys move the timeline, the panes show the
snapshot at the cursor, moving back resets the run state, markers are kept."""

from __future__ import annotations


import pytest

from traintop.engine.feed.messages import Steps
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.recording.opener import load
from traintop.tui.app import TraintopApp
from tui_fakes import async_test, recorded_run, until
from tui_recordings import record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A real 400-step run (snapshots every 100) with an lr change after step
    200, an evaluation, samples and a calibration at the end."""
    return record(recorded_run(), tmp_path_factory.mktemp("replay") / "run.jsonl")




def status_of(app) -> str:
    return str(app.status_line.content)


def recorded_steps(path) -> dict:
    """Each recorded step's result by step number."""
    return {r.step: r for m in load(path).messages if isinstance(m, Steps)
            for r in m.results}


@async_test
async def test_keys_move_the_timeline_and_the_panes_follow(recording):
    source = ReplaySource(recording)
    app = TraintopApp(source, title="replay")
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.notify = lambda message, **kw: notes.append(message)
        # Opens at the end: the whole run, its markers, val point and samples.
        await until(pilot, lambda: app.state.step == 400, what="the end")
        speed, steps = source.speed, recorded_steps(recording)
        assert status_of(app) == (f"replay · snapshot 5/5 · step 400 · lr {steps[400].lr:g} · "
                                  "gain 5/3 · "
                                  f"BatchNorm on · end of recording · plays at {speed:,.4g} "
                                  "steps/s")
        assert [(m.tick, m.text) for m in app.state.history.markers] == [(200, "lr 0.1 -> 0.2")]
        assert len(app.state.history.val_loss) == 1 and len((app.state.samples or ())) == 10
        keys = {b.binding.key for b in app.screen.active_bindings.values() if b.node is app}
        assert {"left", "right", "home", "end", "plus", "minus"} <= keys

        await pilot.press("home")      # back to the first snapshot: a fresh state
        await until(pilot, lambda: app.state.step == 1, what="home")
        assert app.state.history.tick == 1 and app.state.runs == 1
        assert app.state.history.markers == [] and (app.state.samples or ()) == ()
        assert app.state.history.val_loss == [] and app.state.calibration is None
        assert status_of(app).startswith("replay · snapshot 1/5 · step 1 · lr 0.1 · ")
        await pilot.press("4")
        await pilot.pause(0.2)
        assert str(app.samples.content) == "press s to sample 10 names"

        await pilot.press("1")
        for snapshot, step in ((2, 100), (3, 200), (4, 300)):
            await pilot.press("right")
            await until(pilot, lambda: app.state.step == step, what=f"step {step}")
            assert status_of(app).startswith(f"replay · snapshot {snapshot}/5 · step {step:,} · "
                                             f"lr {steps[step].lr:g} · ")
            # The panes draw the snapshot at the cursor, not the run's last one.
            assert app.state.stats == steps[step].stats
            app.redraw_all()
            assert app.saturation.step == step
            assert app.saturation.bars == [(l.index, f"L{l.index}", l.saturation_pct, l.dead)
                                           for l in steps[step].stats.layers]
            assert app.loss.tick == step
        # Past step 200 the lr change is marked, in both plots.
        assert [m.tick for m in app.loss.markers] == [200]
        assert [m.tick for m in app.ratio.markers] == [200]
        # Recorded events (the lr change, the evaluation) show in place, as
        # markers and in the events pane: no toast over the status line.
        assert notes == []

        await pilot.press("left")       # back: rewind, replay up to step 200, no marker yet
        await until(pilot, lambda: app.state.step == 200, what="left")
        assert app.state.history.tick == 200 and app.state.history.markers == []
        assert app.state.stats == steps[200].stats and f" · lr {steps[200].lr:g} · " in status_of(app)

        # Keys that steer a live run say read-only and change nothing.
        for key in ("right_square_bracket", "G", "b", "r", "e"):
            notes.clear()
            await pilot.press(key)
            assert notes and notes[0].startswith("read-only"), key
        await pilot.pause(0.1)
        assert app.state.step == 200 and app.state.runs == 1

        # +/- change the speed; space plays from here and pauses.
        await pilot.press("plus")
        await until(pilot, lambda: source.speed == pytest.approx(2 * speed), what="faster")
        await pilot.press("minus", "minus")
        await until(pilot, lambda: source.speed == pytest.approx(speed / 2), what="slower")
        source.speed = 2000.0           # a quick play for the test
        await pilot.press("space")
        await until(pilot, lambda: "playing" in status_of(app) or app.state.step == 400,
                    what="play")
        await until(pilot, lambda: app.state.step == 400 and "end of recording" in status_of(app),
                    what="play to the end")
        assert [m.tick for m in app.state.history.markers] == [200]

        await pilot.press("end")        # already there: nothing changes
        await pilot.press("q")
    assert app.return_code == 0


@async_test
async def test_live_app_keeps_arrows_for_the_tabs():
    """Without a timeline the replay keys are not bound: ← and → still move
    between tabs, and the footer shows none of them."""
    from traintop.engine.feed.messages import RunStarted
    from tui_fakes import FakeSource

    messages = recorded_run(steps=100)
    source = FakeSource(messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        keys = {b.binding.key for b in app.screen.active_bindings.values() if b.node is app}
        assert not keys & {"left", "right", "home", "end", "plus", "minus"}
        await pilot.press("right")
        assert app.query_one("TabbedContent").active == "activations"
        assert source.commands == []
    assert isinstance(messages[0], RunStarted)


def test_corrupt_recording_fails_before_the_app(tmp_path, capsys):
    from traintop.commands import cli

    path = record(recorded_run(steps=60), tmp_path / "run.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    assert cli.main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"traintop: error: {path}:2: corrupt line (not JSON)\n"
    assert cli.main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.jsonl: no such file")
