"""Issue 25, items 2-4 and two loose ends of item 9: the init in reach
(--paused in the README and the help; the first loss against the uniform
guess on the loss plot of every run), --init zeros said in the status line
and the ratio pane, `export --csv ''`, and ten `-` keys in one burst."""

from __future__ import annotations

import math

import pytest
from rich.text import Text

from traintop.commands import cli
from traintop.engine.feed.messages import RunStarted, Status, Steps
from traintop.engine.results import StepResult
from traintop.tui.app import TraintopApp
from traintop.tui.help_screen import help_text
from traintop.tui.status_line import status_text
from helpers import ROOT
from tui_fakes import FakeSource, async_test, until
from tui_fixed_run import CONFIG, fixed_run, result_at, run_info

UNIFORM = math.log(27)   # 3.2958...


def pane_text(app, name: str) -> str:
    pane = app.panes[name]
    pane.replot(force=True)
    return Text.from_ansi(pane._built).plain


async def settled(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: not app.source.queue and app.state.status is not None,
                what="every message applied")
    await pilot.pause(0.2)
    app.redraw_all()
    await pilot.pause(0.2)


# ----- the loss plot: the first loss against the uniform guess ------------------------------
@async_test
async def test_the_loss_plot_shows_the_first_loss_against_the_uniform_guess_on_every_run():
    messages = fixed_run()
    first = messages[1].results[0].loss
    app = TraintopApp(FakeSource(messages), title="traintop")
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot)
        text = pane_text(app, "loss")
        assert f"log10 loss · first {first:.4f} · uniform {UNIFORM:.4f}" in text
        assert f"uniform guess {UNIFORM:.4f}" in text        # the line's own words
        # a restart is a new run: its own first loss, the same guess
        info = run_info()
        again = [StepResult(s, 3.5 - 0.001 * s, 0.1, r.update_ratio_log10)
                 for s, r in ((s, result_at(s, info, 0.1)) for s in range(1, 21))]
        app.source.push(RunStarted(info, "restart: gain 3"), Steps(tuple(again)),
                        Status(step=20, lr=0.1, running=False, finished=False,
                               steps_per_sec=812.0))
        await until(pilot, lambda: app.state.first_loss == pytest.approx(3.499),
                    what="the restarted run's first step")
        await settled(pilot)
        text = pane_text(app, "loss")
        assert f"first 3.4990 · uniform {UNIFORM:.4f}" in text
        assert f"uniform guess {UNIFORM:.4f}" in text


@async_test
async def test_a_narrow_loss_plot_keeps_what_fits_of_its_title():
    app = TraintopApp(FakeSource(fixed_run()), title="traintop")
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        loss = app.panes["loss"]
        assert loss.title().startswith("log10 loss")
        assert len(loss.title()) <= loss.size.width - 4
        assert "uniform guess" in pane_text(app, "loss")


# ----- --init zeros ------------------------------------------------------------------------
def zeros_run(steps: int = 40) -> list:
    """A run of --init zeros: every 2-D weight 0 and staying 0, so every
    update:data ratio is 0/0 (NaN); the loss is the uniform guess's."""
    info = run_info(CONFIG.with_changes(init="zeros"))
    nan = tuple(math.nan for _ in info.param_names)
    results = tuple(StepResult(s, UNIFORM, 0.1, nan) for s in range(1, steps + 1))
    return [RunStarted(info, None), Steps(results),
            Status(step=steps, lr=0.1, running=False, finished=False, steps_per_sec=812.0)]


def test_status_line_says_init_zeros_instead_of_a_gain():
    from traintop.engine.viewer.run_state import RunState

    state = RunState()
    for m in zeros_run():
        state.apply(m)
    line = status_text(state)
    assert "init zeros" in line and "gain" not in line
    assert line.startswith("step 40 · lr 0.1 · init zeros · BatchNorm on")
    default = RunState()
    for m in fixed_run()[:3]:
        default.apply(m)
    assert "gain 5/3" in status_text(default) and "init zeros" not in status_text(default)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
@async_test
async def test_init_zeros_in_the_app_status_line_and_ratio_pane(size):
    source = FakeSource(zeros_run()[:1])
    app = TraintopApp(source, title="traintop")
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.state.info is not None, what="the run's start")
        await pilot.pause(0.2)
        app.redraw_all()
        assert "waiting for steps" in pane_text(app, "ratio")   # no step yet: true
        source.push(*zeros_run()[1:])
        await settled(pilot)
        assert "init zeros" in str(app.status_line.render())
        text = pane_text(app, "ratio")
        assert "waiting for steps" not in text
        assert "init zeros" in text and "none" in text
        assert app.panes["ratio"].empty_title() in text     # fitted: plotext kept it


# ----- --paused, said ----------------------------------------------------------------------
def test_paused_is_in_the_help_and_the_readme():
    help_ = help_text()
    assert "| `--paused` | start paused before step 1" in help_
    assert "init's" in help_
    assert "uniform guess" in help_     # the loss pane's paragraph says where it shows
    readme = (ROOT / "README.md").read_text()
    app_section = readme.split("## The app", 1)[1].split("\n## ", 1)[0]
    assert "`traintop --paused`" in app_section
    assert "uniform guess" in app_section


# ----- loose ends of item 9 ----------------------------------------------------------------
@pytest.mark.parametrize("option", ["--csv", "--tensorboard"])
def test_export_with_an_empty_path_says_the_path_is_empty(tmp_path, capsys, option):
    code = cli.main(["export", str(tmp_path / "run.jsonl"), option, ""])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"traintop: error: {option}: the path is empty") and err.count("\n") == 1


class FakeTimeline(FakeSource):
    """A replay-like source: it takes the timeline's commands and answers
    with a Status only when the test pushes one (as a replay's poll lags
    behind keys that arrive in one burst)."""

    accepts = frozenset({"pause", "resume", "step", "seek", "speed"})


def speeds(source) -> list[float]:
    return [c.args["steps_per_sec"] for c in source.commands if c.name == "speed"]


@async_test
async def test_ten_minus_keys_in_one_burst_halve_the_speed_ten_times():
    messages = fixed_run()
    messages[-1] = Status(step=400, lr=0.2, running=False, finished=False, steps_per_sec=1024.0)
    source = FakeTimeline(messages)
    app = TraintopApp(source, title="traintop")
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot)
        # the burst: ten keys before any Status answers the first
        await pilot.press(*["minus"] * 10)
        await until(pilot, lambda: len(speeds(source)) == 10, what="ten speed commands")
        assert speeds(source) == [1024.0 / 2 ** k for k in range(1, 11)]
        # the source's Status catches up: the next key goes on from it
        source.push(Status(step=400, lr=0.2, running=False, finished=False, steps_per_sec=1.0))
        await until(pilot, lambda: app.state.status.steps_per_sec == 1.0, what="the Status")
        await pilot.press("plus")
        await until(pilot, lambda: len(speeds(source)) == 11, what="one more")
        assert speeds(source)[-1] == 2.0
