"""End to end: keys -> the real trainer in its child process -> status line."""

from __future__ import annotations

import os

import pytest

from traintop.engine.config import TrainConfig
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.tui.app import TraintopApp
from tui_fakes import async_test, run_word, write_words, until




@async_test
async def test_every_key_steers_the_live_trainer(tmp_path):
    words = write_words(tmp_path / "words.txt")
    config = TrainConfig(n_hidden=16, steps=1_000_000, stats_every=20)
    session = LiveSession(SessionSpec(config=config, data=str(words), engine="exact",
                                      checkpoint_dir=str(tmp_path)))
    app = TraintopApp(session)
    status = lambda: str(app.status_line.content)  # noqa: E731
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step > 50 and run_word(status()) == "running",
                    timeout=60, what="training to start")   # the child imports torch first
        assert status().startswith("step ") and " · lr 0.1 · gain 5/3 · BatchNorm on · " in status()

        await pilot.press("space")
        await until(pilot, lambda: run_word(status()) == "paused", what="pause")
        await pilot.pause(0.3)
        paused_at = app.state.step
        await pilot.pause(0.3)
        assert app.state.step == paused_at   # paused means no steps

        await pilot.press("n")
        await until(pilot, lambda: app.state.step == paused_at + 1, what="one step")
        assert status().startswith(f"step {paused_at + 1:,} · ")
        await pilot.pause(0.3)
        assert app.state.step == paused_at + 1 and run_word(status()) == "paused"

        await pilot.press("right_square_bracket")
        await until(pilot, lambda: " · lr 0.2 · " in status(), what="lr x2")
        await pilot.press("left_square_bracket")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: " · lr 0.05 · " in status(), what="lr /4")
        lr_marks = [m for m in app.state.history.markers if m.text.startswith("lr ")]
        assert [m.text for m in lr_marks] == ["lr 0.1 -> 0.2", "lr 0.2 -> 0.1", "lr 0.1 -> 0.05"]

        await pilot.press("G")
        await until(pilot, lambda: " · gain 2 · " in status(), what="gain up")
        assert status().startswith("step 0 · lr 0.1 · gain 2 · ")  # restarted, schedule lr
        await pilot.press("g")
        await pilot.press("g")
        await until(pilot, lambda: " · gain 1 · " in status(), what="gain down twice")
        await pilot.press("b")
        await until(pilot, lambda: "BatchNorm off" in status(), what="BatchNorm off")
        await pilot.press("f")
        await until(pilot, lambda: "fan-in off" in status(), what="fan-in off")
        restarts = [m.text for m in app.state.history.markers if m.text.startswith("restart")]
        assert restarts == ["restart: gain 2", "restart: gain 5/3", "restart: gain 1",
                            "restart: batchnorm off", "restart: fan_in off"]

        await pilot.press("space")
        await until(pilot, lambda: run_word(status()) == "running" and app.state.step > 20,
                    what="resume")
        await pilot.press("r")
        await until(pilot, lambda: app.state.history.markers[-1].text == "restart",
                    what="restart")

        await pilot.press("e")
        await until(pilot, lambda: len(app.state.history.val_loss) == 1, what="evaluate")
        assert 0 < app.state.history.val_loss[0][1] < 10
        await pilot.press("s")
        await until(pilot, lambda: len((app.state.samples or ())) == 10, what="samples")
        await pilot.press("c")
        await until(pilot, lambda: app.state.calibration is not None, what="calibrate")
        assert app.state.calibration.data["layers"] == []   # BatchNorm is off now
        await pilot.press("w")
        await until(pilot, lambda: any(tmp_path.glob("traintop-step*.ckpt")), what="checkpoint")
        assert app.errors == 0

        await pilot.press("question_mark")
        await pilot.press("escape")
        pid = session.pid
        await pilot.press("q")
    assert not session.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
