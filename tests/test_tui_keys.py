"""The app against a source the test controls: keys become the documented
commands, messages show at once in the status line and the panes."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from traintop.engine.feed.messages import Command, Event, RunStarted, Status
from traintop.tui import app as app_module
from traintop.engine.viewer import run_state as run_state_module
from traintop.tui.app import TraintopApp
from traintop.tui.keys import next_gain
from traintop.tui.help_screen import HelpScreen
from traintop.tui.status_line import status_text
from tui_fakes import FakeSource, async_test, recorded_run, run_word, until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def run_messages():
    return recorded_run()




def status_of(app) -> str:
    return str(app.status_line.content)


def started(messages):
    return next(m for m in messages if isinstance(m, RunStarted))


@async_test
async def test_status_line_has_the_documented_form(run_messages):
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.pause(0.1)
        final = run_messages[-1]
        assert status_of(app) == (f"step 400 · lr {final.lr:g} · gain 5/3 · BatchNorm on · "
                                  f"812 steps/s · paused")
        source.push(dataclasses.replace(final, running=True, steps_per_sec=1234.4))
        await until(pilot, lambda: run_word(status_of(app)) == "running")
        assert "1,234 steps/s" in status_of(app)
        source.push(dataclasses.replace(final, running=False, finished=True))
        await until(pilot, lambda: run_word(status_of(app)) == "finished")
        why = "non-finite activation at step 401 in layer 0 (Linear)"
        source.push(dataclasses.replace(final, running=False, stopped=why))
        await until(pilot, lambda: status_of(app).endswith(f"stopped: {why}"))
    assert source.started and source.closed


@async_test
async def test_every_key_sends_its_command(run_messages):
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.pause(0.1)
        expected = {
            "space": Command("resume"),   # the recorded run ends paused
            "n": Command("step"),
            "right_square_bracket": Command("scale_lr", {"factor": 2.0}),
            "left_square_bracket": Command("scale_lr", {"factor": 0.5}),
            "G": Command("restart", {"gain": "2"}),
            # (G's restart not answered yet: g goes on from the 2 it asked)
            "g": Command("restart", {"gain": "5/3"}),
            "b": Command("restart", {"batchnorm": False}),
            "f": Command("restart", {"fan_in": False}),
            "r": Command("restart"),
            "e": Command("evaluate", {"splits": ["train", "val"]}),
            "s": Command("sample", {"n": 10}),
            "c": Command("calibrate", {"apply": False}),
            "w": Command("checkpoint"),
        }
        for key, command in expected.items():
            source.commands.clear()
            await pilot.press(key)
            assert source.commands == [command], key
        # Space pauses a running run.
        source.push(dataclasses.replace(run_messages[-1], running=True))
        await until(pilot, lambda: run_word(status_of(app)) == "running")
        source.commands.clear()
        await pilot.press("space")
        assert source.commands == [Command("pause")]

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert app.return_code == 0 and source.closed


@async_test
async def test_answers_show_in_the_status_line_panes_and_markers(run_messages):
    info = started(run_messages).info
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        tick = app.state.history.tick
        assert tick == 400
        # The recorded lr change left a marker where it happened, in both plots.
        lr_marks = [m for m in app.state.history.markers if m.text.startswith("lr ")]
        assert [m.tick for m in lr_marks] == [200]
        app.redraw_all()
        assert any(m.tick == 200 for m in app.loss.markers)
        assert any(m.tick == 200 for m in app.ratio.markers)
        # Val loss points come from the evaluation.
        assert len(app.state.history.val_loss) == 1

        # Samples and calibration land in their panes.
        await pilot.press("4")
        await pilot.pause(0.2)
        names = next(m for m in run_messages if getattr(m, "kind", "") == "sample").data["samples"]
        assert str(app.samples.content).splitlines() == names
        assert app.calibration.border_title.startswith("BatchNorm: running vs exact · step 400")
        await pilot.press("1")

        # A restart with a new gain: marker, status line at once.
        config = {**info.config, "gain": "3"}
        source.push(RunStarted(dataclasses.replace(info, config=config), "restart: gain 3"),
                    Status(step=0, lr=0.1, running=True, finished=False, steps_per_sec=0.0))
        await until(pilot, lambda: "gain 3" in status_of(app))
        assert status_of(app).startswith("step 0 · lr 0.1 · gain 3 · BatchNorm on")
        assert app.state.history.markers[-1].tick == tick
        assert app.state.history.markers[-1].text == "restart: gain 3"

        config = {**config, "batchnorm": False, "fan_in": False}
        source.push(RunStarted(dataclasses.replace(info, config=config), "restart: batchnorm off"))
        await until(pilot, lambda: "BatchNorm off" in status_of(app))
        assert "fan-in off" in status_of(app)

        # A restart is a fresh run: the old run's samples are not shown as its own.
        await pilot.press("4")
        await until(pilot, lambda: str(app.samples.content) == "press s to sample 10 names")


@async_test
async def test_engine_errors_are_shown_and_the_app_lives_on(run_messages):
    source = FakeSource(run_messages[:1])
    app = TraintopApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        source.push(Event("error", 3, "evaluate: RuntimeError: boom"))
        await until(pilot, lambda: app.errors == 1)
        assert app.is_running
        assert "evaluate: RuntimeError: boom" in str(app.events.content)


@async_test
async def test_a_read_only_source_takes_no_commands(run_messages):
    source = FakeSource(run_messages, read_only=True)
    app = TraintopApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.pause(0.1)
        for key in ("space", "n", "right_square_bracket", "G", "b", "e", "w"):
            await pilot.press(key)
        assert source.commands == []
        assert status_of(app).endswith("paused · read-only")
        await pilot.press("q")
    assert source.closed


@async_test
async def test_hidden_tabs_are_not_redrawn(run_messages):
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.pause(1.3)   # past one slow redraw
        assert app.loss.redraws >= 1 and app.saturation.redraws >= 1
        assert app.activations.redraws == 0 and app.weights.redraws == 0
        await pilot.press("2")
        await until(pilot, lambda: app.activations.redraws >= 1)
        assert app.gradients.redraws >= 1


def test_gain_steps_through_the_lecture_gains():
    assert next_gain("5/3", 1) == "2" and next_gain("5/3", -1) == "1"
    assert next_gain("0.5", -1) is None and next_gain("3", 1) is None
    assert next_gain("1.5", 1) == "5/3" and next_gain("1.5", -1) == "1"


def test_status_text_before_the_run_starts():
    from traintop.engine.viewer.run_state import RunState

    assert status_text(RunState()) == "waiting for the run to start…"


@async_test
async def test_health_pane_shows_what_the_monitor_finds(run_messages, monkeypatch):
    class Finding:
        def __init__(self, rule, severity, where, message):
            self.rule, self.severity, self.where, self.message = rule, severity, where, message

    class Monitor:
        """Stands in for traintop.engine.health.monitor.HealthMonitor: counts what it is shown."""
        def __init__(self, info):
            self.seen = 0
            self.calibrations = []

        def observe(self, result):
            self.seen += 1

        def observe_many(self, results, ratios=None):   # a block of steps at once
            self.seen += len(results)

        def observe_calibration(self, cal):
            self.calibrations.append(cal)

        def findings(self):
            return [Finding("saturation", "warn", "layer 2", f"seen {self.seen} steps")]

        def new_findings(self):
            return []

    monkeypatch.setattr(run_state_module, "HealthMonitor", Monitor)
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("4")
        await pilot.pause(1.2)
        assert app.state.monitor.seen == 400
        assert len(app.state.monitor.calibrations) == 1
        assert app.state.monitor.calibrations[0].layers  # rebuilt from the event's data
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.health.content)
        assert " warn layer 2\n      seen 400 steps\n" in console.export_text()
        assert [f.message for f in app.state.findings()] == ["seen 400 steps"]


@async_test
async def test_the_real_health_rules():
    """A lecture-style broken init is diagnosed in the pane."""
    from traintop.engine.config import TrainConfig

    messages = recorded_run(TrainConfig(n_hidden=30, steps=1000, stats_every=20,
                                        batchnorm=False, gain="3"), steps=200)
    source = FakeSource(messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        findings = app.state.findings()
        assert findings, "a gain of 3 without BatchNorm saturates the Tanh layers"
        await pilot.press("4")
        await pilot.pause(1.2)
        console = Console(width=110, record=True, file=io.StringIO())
        console.print(app.health.content)
        assert findings[0].message[:40] in console.export_text().replace("\n", " ")


def test_the_lecture_last_layer_is_flagged_at_init():
    """Without BatchNorm the output layer, scaled by 0.1 at init, trains far faster."""
    from traintop.data.dataset import build_dataset
    from traintop.engine.config import TrainConfig
    from traintop.engine.training.threads import apply_threads
    from traintop.engine.training.trainer import Trainer
    from traintop.tui.weights_pane import outliers
    from tui_fakes import small_words

    apply_threads(1)
    trainer = Trainer(TrainConfig(n_hidden=30, batchnorm=False),
                      build_dataset(small_words(), 3, 42, source="small"))
    stats = trainer.step().stats
    ratios = [w.grad_data_ratio for w in stats.weights]
    assert outliers(ratios) == {len(ratios) - 1}
    assert stats.weights[-1].name == trainer.info().param_names[-2]  # last Linear weight


@pytest.mark.parametrize("wait", [60.0])   # longer than any test machine's hiccup
@async_test
async def test_no_plot_is_drawn_while_a_keys_answer_is_due(run_messages, monkeypatch, wait):
    """The frame that shows a key's answer carries no plot render (at 200x60
    one takes ~50 ms), so plots wait for the answer (or ANSWER_WAIT_SECONDS)."""
    monkeypatch.setattr(app_module, "ANSWER_WAIT_SECONDS", wait)
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("right_square_bracket")
        assert source.commands[-1].name == "scale_lr"
        before = app.loss.redraws
        for _ in range(4):
            app.loss.dirty = True
            app.loss.drawn_at = 0.0      # due on the clock, but an answer is due first
            app.redraw_tick()
        assert app.loss.redraws == before
        source.push(Event("lr", 400, "lr 0.2 (x2)"))
        await until(pilot, lambda: app._awaiting_until == 0.0, what="the answer")
        before = app.loss.redraws         # the app's own clock may have drawn since
        app.loss.dirty = True
        app.loss.drawn_at = 0.0
        app.redraw_tick()
        assert app.loss.redraws == before + 1


@async_test
async def test_an_unanswered_key_holds_the_plots_back_only_briefly(run_messages, monkeypatch):
    monkeypatch.setattr(app_module, "ANSWER_WAIT_SECONDS", 0.05)
    source = FakeSource(run_messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("right_square_bracket")     # FakeSource never answers
        await pilot.pause(0.1)
        before = app.loss.redraws
        app.loss.dirty = True
        app.loss.drawn_at = 0.0          # due on the clock
        app.redraw_tick()
        assert app.loss.redraws == before + 1
