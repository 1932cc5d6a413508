"""The app on a sweep: the overview, a run in full, the pick/back keys, the
commands lr and restart keys send in each view, and snapshots of the overview
replayed from a recorded sweep.

Regenerate the snapshots after a deliberate change of the layout with
`python -m pytest tests/test_sweep_view_app.py --snapshot-update`.
"""

from __future__ import annotations

import dataclasses

import pytest

from traintop.engine.feed.messages import Command, Status
from traintop.engine.recording.replay_source import ReplaySource
from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource, async_test, until
from tui_recordings import record
from tui_sweep_runs import formula_sweep, trained_sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def trained():
    return trained_sweep(("gain=1,5/3,3",))[1]


def status_of(app) -> str:
    return str(app.status_line.content)


async def opened(pilot, app, runs: int) -> None:
    await until(pilot, lambda: app.sweep.is_sweep and len(app.sweep.runs) == runs
                and all(s.last is not None and s.last.step == 120 for s in app.sweep.runs),
                what="every run's steps")
    await pilot.pause(0.2)    # the overview's first layout
    app.redraw_all()
    await pilot.pause(0.1)


@async_test
async def test_the_overview_shows_every_run(trained):
    app = TraintopApp(FakeSource(trained))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 3)
        assert app.view is None and app.screen.has_class("-overview")
        assert app.sweep_loss.seen and app.sweep_saturation.seen
        assert app.sweep_gradients.seen and app.sweep_ratio.seen   # four panes at 120x40
        assert not app.loss.seen                                   # the tabs are hidden
        line = status_of(app)
        assert line.startswith("sweep of 3 runs (gain) · step 120 · lr 0.1 · 90 steps/s")
        # One series per run, each from its own run's history.
        assert len(app.sweep_loss.lines) == 3
        for k, (xs, ys) in enumerate(app.sweep_loss.lines):
            assert xs and xs[-1] <= 120
            assert len(app.sweep.runs[k].history.log10_loss.points()[0]) == 120
        # Legends name the swept values, in the border (never over the data).
        for pane in (app.sweep_loss, app.sweep_gradients, app.sweep_ratio):
            assert all(label in pane.border_title for label in ("gain=1", "gain=5/3",
                                                                     "gain=3"))
        # Saturation: per block, one bar per run, the run's own figure.
        text = app.sweep_saturation.text().plain
        figures = [f"{s.stats.layers[0].saturation_pct:5.1f}%" for s in app.sweep.runs]
        assert text.startswith("tanh 1 ") and all(f in text for f in figures)
        # Small multiples: one plot per run (tests/test_sweep_teach.py: their axes).
        assert [label for label, _, _ in app.sweep_gradients.plots] == \
            ["gain=1", "gain=5/3", "gain=3"]
        findings = str(app.sweep_findings.content)
        assert all(f"gain={g}:" in findings for g in ("1", "5/3", "3"))


@async_test
async def test_v_shows_a_run_in_full_and_o_goes_back(trained):
    app = TraintopApp(FakeSource(trained))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 3)
        await pilot.press("v")
        assert app.view == 0 and not app.screen.has_class("-overview")
        assert app.loss.state is app.sweep.runs[0] and app.state is app.sweep.runs[0]
        await pilot.press("v")
        assert app.view == 1
        for pane in (app.loss, app.ratio, app.saturation, app.gradients_first, app.weights):
            assert pane.state is app.sweep.runs[1]
        await pilot.pause(0.2)
        assert status_of(app).startswith("run 2/3 gain=5/3 · step 120 · lr 0.1 · gain 5/3")
        assert app.loss.seen and not app.sweep_loss.seen
        # Every tab of the run, as for a single run.
        await pilot.press("4")
        await pilot.pause(0.2)
        assert app.health.is_on_screen
        await pilot.press("o")
        assert app.view is None and app.screen.has_class("-overview")
        await pilot.press("V")              # back from the overview: the last run
        assert app.view == 2
        await pilot.press("escape")
        assert app.view is None
        await pilot.press("v", "v", "v", "v")   # past the last run: the overview again
        assert app.view is None


@async_test
async def test_lr_keys_act_on_every_run_in_the_overview_on_one_in_its_view(trained):
    source = FakeSource(trained)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 3)
        await pilot.press("right_square_bracket")
        await pilot.press("r")
        assert source.commands == [Command("scale_lr", {"factor": 2.0}),
                                   Command("restart", {})]
        source.commands.clear()
        await pilot.press("v", "v", "left_square_bracket", "r", "b", "g", "e")
        assert source.commands == [
            Command("scale_lr", {"factor": 0.5, "run": 1}),
            Command("restart", {"run": 1}),
            Command("restart", {"batchnorm": False, "run": 1}),
            Command("restart", {"gain": "1", "run": 1}),     # 5/3 down to 1: run 2's own gain
            Command("evaluate", {"splits": ["train", "val"], "run": 1})]
        source.commands.clear()
        await pilot.press("o", "g", "G")      # gain is swept: no run to choose in the overview
        assert source.commands == []
        await pilot.press("b")                # batchnorm is not: every run
        assert source.commands == [Command("restart", {"batchnorm": False})]


@async_test
async def test_a_single_run_has_no_sweep_keys():
    from tui_fixed_run import fixed_run

    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == 400, what="the run")
        await pilot.press("v", "o")
        assert app.view is None and not app.screen.has_class("-overview")
        assert not app.sweep.is_sweep and app.loss.seen
        assert app.check_action("view_run", (1,)) is False


# ----- snapshots: the overview replayed from a recorded sweep -----------------------
@pytest.fixture(scope="module")
def sweep_recording(tmp_path_factory):
    return record(formula_sweep(), tmp_path_factory.mktemp("sweep") / "sweep.jsonl")


def at_end(*keys: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: app.sweep.is_sweep and all(
            s.step == 300 and s.status is not None for s in app.sweep.runs), what="the end")
        await pilot.press(*keys)
        await pilot.pause(0.2)
        app.redraw_all()
        app.clear_notifications()
        await pilot.pause(0.1)
    return run_before


def test_sweep_overview_120x40(snap_compare, sweep_recording):
    app = TraintopApp(ReplaySource(sweep_recording, speed=100.0), title="replay")
    assert snap_compare(app, terminal_size=(120, 40), run_before=at_end())


def test_sweep_overview_80x24(snap_compare, sweep_recording):
    app = TraintopApp(ReplaySource(sweep_recording, speed=100.0), title="replay")
    assert snap_compare(app, terminal_size=(80, 24), run_before=at_end())


def test_sweep_run_in_full_120x40(snap_compare, sweep_recording):
    app = TraintopApp(ReplaySource(sweep_recording, speed=100.0), title="replay")
    assert snap_compare(app, terminal_size=(120, 40), run_before=at_end("v", "v"))


@async_test
async def test_many_runs_say_what_they_leave_out():
    # 16 runs (the most a sweep has): the formula's update ratios rise 0.2 a run,
    # so the last few runs' are far above the guide, an error.
    gains = tuple(f"{0.25 * (k + 1):g}" for k in range(16))
    app = TraintopApp(FakeSource(formula_sweep(200, gains)))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app.sweep.runs) == 16 and all(
            s.step == 200 for s in app.sweep.runs), what="sixteen runs")
        for _ in range(2):      # the findings strip's height settles the panes' sizes
            await pilot.pause(0.2)
            app.redraw_all()
        await pilot.pause(0.1)
        drawn = app.sweep_gradients.fits()
        assert drawn < 16
        assert app.sweep_gradients.border_subtitle == \
            f"gradients · {drawn} of 16 runs drawn · v shows each"
        lines = str(app.sweep_findings.content).splitlines()
        assert len(lines) == 8 and lines[-1].startswith("… 9 more runs")
        # The runs kept are the most severe ones (an error before a warning).
        from traintop.tui.sweep_view import worst_rank

        kept = [line.split(":")[0].removeprefix("━ ") for line in lines[:-1]]
        ranks = [worst_rank(s) for s in app.sweep.runs]
        kept_ranks = [ranks[app.sweep.labels.index(label)] for label in kept]
        left_ranks = [r for label, r in zip(app.sweep.labels, ranks) if label not in kept]
        assert len(left_ranks) == 9 and min(left_ranks) >= max(kept_ranks)
        assert kept_ranks.count(0) >= 1 and "ERROR" in lines[kept_ranks.index(0)]


@async_test
async def test_the_overview_marks_every_runs_lr_changes(trained):
    from traintop.engine.feed import events

    source = FakeSource(trained)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 3)
        assert app.sweep_loss.markers == []
        # An lr key in the overview: every run answers at its step 120.
        source.push(*(dataclasses.replace(events.lr_changed(120, 0.1, 0.2), run=k)
                      for k in range(3)))
        source.push(*(Status(step=120, lr=0.2, running=False, finished=True, steps_per_sec=0.0,
                             run=k) for k in range(3)))   # as the child says after a command
        await until(pilot, lambda: all(s.lr == 0.2 for s in app.sweep.runs), what="lr 0.2")
        app.redraw_all()
        assert [m.tick for m in app.sweep_loss.markers] == [120]     # one line, not three
        assert [m.tick for m in app.sweep_ratio.markers] == [120]
        assert "lr 0.2" in status_of(app)


def test_sweep_status_says_how_many_runs_stopped():
    from traintop.engine.viewer.sweep_state import SweepState
    from traintop.tui.sweep_view import sweep_status_text

    messages = formula_sweep(100, ("1", "3", "5"))
    state = SweepState()
    for m in messages:
        state.apply(m)
    assert sweep_status_text(state).endswith("· finished")
    state.apply(Status(step=100, lr=0.1, running=False, finished=False, steps_per_sec=0.0,
                       stopped="non-finite loss at step 100", run=2))
    assert sweep_status_text(state).endswith("· finished · 1 of 3 stopped")
    for run in (0, 1):
        state.apply(Status(step=100, lr=0.1, running=False, finished=False, steps_per_sec=0.0,
                           stopped="non-finite loss", run=run))
    assert sweep_status_text(state).endswith("· every run stopped")
    assert sweep_status_text(state, view=2).startswith("run 3/3 gain=5 · step 100")
