"""The first screen and what it costs a terminal: the four panes together from
GRID_MIN up, a readable subset below it; plots repaint only the lines that
changed, on axes that hold still while a run grows; --refresh sets the clock.
(Bytes per second are measured by tools/measure_terminal.py, not here.)"""

from __future__ import annotations

import math
import time

import pytest

from traintop.commands.app import build_parser
from traintop.commands.cli import main as cli_main
from traintop.engine.feed.messages import Status
from traintop.tui.app import GRID_MIN, REFRESH_SECONDS, TraintopApp
from traintop.tui.plotting import axis_end, downsample, steady_range
from tui_fakes import FakeSource, async_test, until
from tui_fixed_run import fixed_run

FOUR = ("loss", "saturation", "grad-hist-first", "ratio")


def shown(app, pane_id: str) -> bool:
    w = app.query_one(f"#{pane_id}")
    return w.display and w.is_on_screen and w.size.width >= 20 and w.size.height >= 5


@pytest.mark.parametrize("size", [(120, 40), (200, 60), GRID_MIN])
@async_test
async def test_the_four_panes_share_the_first_screen(size):
    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.2)
        assert all(shown(app, p) for p in FOUR), [(p, app.query_one(f"#{p}").region)
                                                  for p in FOUR]
        app.redraw_all()
        await pilot.pause(0.1)
        assert app.gradients_first.redraws >= 1 and app.gradients_first.lines


@async_test
async def test_80x24_keeps_loss_saturation_and_ratios_and_tab_2_the_gradients():
    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.2)
        assert [shown(app, p) for p in FOUR] == [True, True, False, True]
        await pilot.press("2")
        await until(pilot, lambda: shown(app, "grad-hist"), what="tab 2")
        # and back up to the grid size: the first tab shows all four again
        await pilot.press("1")
        await pilot.resize_terminal(*GRID_MIN)
        await until(pilot, lambda: all(shown(app, p) for p in FOUR), what="the grid")


@async_test
async def test_a_redraw_repaints_only_the_lines_that_changed():
    messages = fixed_run()
    last = max(i for i, m in enumerate(messages) if type(m).__name__ == "Steps")
    app = TraintopApp(FakeSource(messages[:last]))   # hold back the run's last 50 steps
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.2)
        app.redraw_all()
        await pilot.pause(0.1)
        pane = app.loss
        before = pane._built.split("\n")
        asked = []
        original = pane.refresh
        pane.refresh = lambda *regions, **kw: (asked.append(regions), original(*regions, **kw))[1]
        drawn = pane.redraws
        app.source.push(messages[last])
        # the app's own clock draws them (a refresh later)
        await until(pilot, lambda: pane.redraws > drawn, what="the loss redrawn")
        after = pane._built.split("\n")
        changed = [y for y, (a, b) in enumerate(zip(before, after)) if a != b]
        assert len(before) == len(after) >= pane.size.height
        # 50 more steps of 400: new points, on the same axes (title, x-axis
        # and its labels unchanged), so part of the pane is not sent again
        assert changed and 0 not in changed and len(changed) < len(after) - 3
        assert not set(changed) & {len(after) - 1, len(after) - 2, len(after) - 3}
        regions = [r for call in asked for r in call]
        assert sorted(r.y for r in regions) == changed
        assert all(r.x == 0 and r.height == 1 and r.width == pane.size.width for r in regions)


def test_a_growing_series_keeps_its_drawn_points():
    xs = list(range(5000))
    ys = [math.sin(x / 300) for x in xs]
    for n in (3000, 3500, 4095):   # one group size (32 at 100 points): the same closed groups
        a, b = downsample(xs[:n], ys[:n], 100), downsample(xs[:n + 7], ys[:n + 7], 100)
        assert a[0][:-1] == b[0][:len(a[0]) - 1] and a[1][:-1] == b[1][:len(a[1]) - 1]
        assert len(a[0]) <= 100
    assert downsample(xs[:50], ys[:50], 100) == (xs[:50], ys[:50])


def test_axis_end_and_steady_range_move_in_steps():
    assert [axis_end(t) for t in (1, 10, 11, 101, 124, 126, 999, 1001, 79_000, 200_000)] == \
        [10, 10, 12, 125, 125, 150, 1000, 1250, 80_000, 200_000]
    assert all(axis_end(t) >= t for t in range(1, 5000, 7))
    lo, hi = steady_range(0.3312, 0.5241)
    assert (round(lo, 6), round(hi, 6)) == (0.32, 0.54)
    assert steady_range(0.3305, 0.5239) == steady_range(0.3312, 0.5241)  # a new low, same axis
    assert steady_range(1.0, 1.0) == (0.95, 1.05)


def test_refresh_option(capsys):
    assert build_parser().parse_args([]).refresh == REFRESH_SECONDS
    assert build_parser().parse_args(["--refresh", "2.5"]).refresh == 2.5
    # through the CLI's entry, here: argparse's exit 2 before any screen opens
    # (test_tui_command spawns the same refusal as a process)
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit) as done:
            cli_main(["--refresh", bad])
        err = capsys.readouterr().err
        assert done.value.code == 2 and "--refresh" in err.splitlines()[-1]
        assert "Traceback" not in err


@async_test
async def test_refresh_sets_the_redraw_clock():
    # a running run: while steps stream in, the loss waits for its refresh
    # (paused, finished or a replay at its cursor, a change is drawn at once)
    running = Status(step=400, lr=0.02, running=True, finished=False, steps_per_sec=812.0)
    app = TraintopApp(FakeSource(fixed_run()[:-1] + [running]), refresh=3.0)
    assert app.refresh_s == 3.0
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.5)       # the first frame's redraws
        drawn = app.loss.redraws
        app.loss.dirty = True
        app.loss.drawn_at = time.monotonic()
        await pilot.pause(1.0)       # under one refresh: the loss waits
        assert app.loss.redraws == drawn
        await until(pilot, lambda: app.loss.redraws > drawn, what="the next refresh")


@async_test
async def test_a_catch_up_keeps_the_frame_then_draws_every_pane_at_once():
    """A replay on its way to its cursor keeps the panes it shows (no two panes
    at different steps); once there, one tick draws every changed pane."""
    app = TraintopApp(FakeSource(fixed_run()))          # ends paused
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.3)
        panes = [p for p in (app.loss, *app.slow_panes) if p.seen]
        assert len(panes) >= 4
        app.source.catching_up = True
        for p in panes:
            p.dirty = True
        drawn = [p.redraws for p in panes]
        app.redraw_tick()
        assert [p.redraws for p in panes] == drawn          # kept while catching up
        app.source.catching_up = False
        app.redraw_tick()
        assert [p.redraws for p in panes] == [d + 1 for d in drawn]   # all in one tick
        assert not any(p.dirty for p in panes)


def test_a_narrow_status_line_keeps_the_runs_state():
    from traintop.tui.status_line import fit_status
    line = ("replay · snapshot 23/301 · step 2,250 · lr 0.1 · gain 5/3 · BatchNorm on · "
            "paused · plays at 500 steps/s")
    assert fit_status(line, 200) == line
    assert fit_status(line, 78) == ("replay · snapshot 23/301 · step 2,250 · lr 0.1 · "
                                    "BatchNorm on · paused")
    assert fit_status(line, 60) == "replay · snapshot 23/301 · step 2,250 · lr 0.1 · paused"
    assert fit_status(line, 50) == "replay · step 2,250 · lr 0.1 · paused"
    live = "step 3,000 · lr 0.1 · gain 5/3 · BatchNorm on · 812 steps/s · running · read-only"
    assert fit_status(live, 50) == "step 3,000 · lr 0.1 · 812 steps/s · running"
    assert fit_status(live, 30) == "step 3,000 · lr 0.1 · running"
