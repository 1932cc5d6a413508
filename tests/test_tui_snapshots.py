"""Snapshots of the full layout fed with a fixed run made of formulas (never a
live one, and no torch arithmetic whose last bits may differ between CPUs).

Regenerate after a deliberate change of the layout with
`python -m pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource
from tui_fixed_run import fixed_first_step_without_batchnorm, fixed_run


@pytest.fixture(scope="module")
def run_messages():
    return fixed_run()


def fixed_app(messages) -> TraintopApp:
    return TraintopApp(FakeSource(messages), title="traintop")


def settle(tab: str | None = None):
    async def run_before(pilot) -> None:
        app = pilot.app
        # Every message applied (the fixed runs end on a Status) and drawn
        # before a key opens another view: a loaded machine may lag behind.
        while app.source.queue or app.state.status is None:
            await pilot.pause(0.05)
        # pause() with no delay: until every widget's queue is empty and the
        # app idles (fixed sleeps, 1 s a test, only guessed at that). Every
        # pane is redrawn at once on both sides of the key: under the help
        # screen none redraws, and the redraw clock may not have reached the
        # slower panes yet.
        await pilot.pause()
        app.redraw_all()
        await pilot.pause()
        if tab:
            await pilot.press(tab)
            await pilot.pause()
        app.redraw_all()
        app.clear_notifications()
        await pilot.pause()
    return run_before


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (200, 60)])
def test_training_tab(snap_compare, run_messages, size):
    assert snap_compare(fixed_app(run_messages), terminal_size=size, run_before=settle())


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
@pytest.mark.parametrize("tab", ["2", "3", "4"])
def test_other_tabs(snap_compare, run_messages, size, tab):
    assert snap_compare(fixed_app(run_messages), terminal_size=size, run_before=settle(tab))


def test_help_screen(snap_compare, run_messages):
    assert snap_compare(fixed_app(run_messages), terminal_size=(120, 40),
                        run_before=settle("question_mark"))


def test_no_color(snap_compare, run_messages, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = fixed_app(run_messages)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle())


@pytest.fixture(scope="module")
def first_step_without_batchnorm():
    return fixed_first_step_without_batchnorm()


def test_weights_outlier_stands_out(snap_compare, first_step_without_batchnorm):
    from traintop.tui.weights_pane import outliers

    stats = first_step_without_batchnorm[1].results[0].stats
    assert outliers([w.grad_data_ratio for w in stats.weights]) == {len(stats.weights) - 1}
    assert snap_compare(fixed_app(first_step_without_batchnorm), terminal_size=(120, 40),
                        run_before=settle("3"))
