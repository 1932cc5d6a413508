"""A sweep that teaches (issue 25): the overview shows each run's activation
histograms (the lecture's figure), each run's small plot on its own y scale,
layers labelled by block whatever BatchNorm does, a hint where a gain sweep
keeps BatchNorm on, a legend that holds every run's values at 80x24, and
distinct labels for two runs restarted to the same values. Real sweeps
(SweepTrainer, a few steps) and their real snapshots."""

from __future__ import annotations

import dataclasses
import re

import pytest

from traintop.engine.feed.messages import RunStarted
from traintop.engine.viewer.sweep_state import SweepState
from traintop.tui.app import TraintopApp
from traintop.tui.sweep_plots import BATCHNORM_HINTS
from tui_fakes import FakeSource, async_test, until
from tui_sweep_runs import SWEEP_CONFIG, formula_sweep, trained_sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NO_BN = SWEEP_CONFIG.with_changes(batchnorm=False)


@pytest.fixture(scope="module")
def gains_no_bn():
    """The lecture's gain comparison: gain 0.5 and 3 without BatchNorm."""
    return trained_sweep(("gain=0.5,3",), NO_BN)


@pytest.fixture(scope="module")
def bn_on_off():
    return trained_sweep(("batchnorm=on,off",))


async def opened(pilot, app, runs: int, size=None) -> None:
    await until(pilot, lambda: app.sweep.is_sweep and len(app.sweep.runs) == runs
                and all(s.last is not None and s.last.step == 120 for s in app.sweep.runs),
                what="every run's steps")
    for _ in range(2):        # the findings strip's height settles the panes' sizes
        await pilot.pause(0.2)
        app.redraw_all()
    await pilot.pause(0.1)


class RecordingPlot:
    """Stands in for plotext: what a pane's draw() asked it to draw, per subplot."""

    def __init__(self):
        self.subs: dict[tuple[int, int], RecordingPlot] = {}
        self.lines: list[tuple[list, list]] = []
        self.limits: dict[str, tuple] = {}
        self.titles: list[str] = []

    def subplots(self, rows, cols):
        self.grid = (rows, cols)

    def subplot(self, row, col):
        return self.subs.setdefault((row, col), RecordingPlot())

    def plot(self, xs, ys, **style):
        self.lines.append((list(xs), list(ys)))

    def title(self, text):
        self.titles.append(text)

    def xlim(self, lo, hi):
        self.limits["x"] = (lo, hi)

    def ylim(self, lo, hi):
        self.limits["y"] = (lo, hi)

    def xticks(self, ticks, labels=None):
        self.ticks = list(ticks)

    def __getattr__(self, name):       # lines, labels: not looked at here
        return lambda *args, **kwargs: None


def drawn(pane) -> list[RecordingPlot]:
    """Each run's small plot, in run order, as the pane draws it now."""
    plt = RecordingPlot()
    pane.draw(plt, no_color=False)
    rows, cols = plt.grid
    return [plt.subs[(k // cols + 1, k % cols + 1)] for k in range(len(plt.subs))]


def screen_rows(app) -> list[str]:
    """The terminal's rows as text (the app's own SVG screenshot, read back)."""
    import html

    svg = app.export_screenshot()
    rows: dict[int, list] = {}
    for x, line, text in re.findall(r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" '
                                    r'textLength="[\d.]+" clip-path="url\(#[^)]*-line-(\d+)\)">'
                                    r'(.*?)</text>', svg):
        rows.setdefault(int(line), []).append((float(x), html.unescape(text)))
    out = []
    for line in sorted(rows):
        text = ""
        for x, part in sorted(rows[line]):
            text = text.ljust(round(x / 12.2)) + part
        out.append(text.replace("\xa0", " "))
    return out


@async_test
async def test_each_run_has_its_activation_histograms_drawn(gains_no_bn):
    trainer, messages = gains_no_bn
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 2)
        pane = app.sweep_activations
        assert pane.seen and app.sweep_gradients.seen
        plots = drawn(pane)
        assert len(plots) == 2
        for k, sub in enumerate(plots):
            stats = app.sweep.runs[k].stats
            assert stats.step == 120
            # Every layer of run k, its own snapshot's densities and bin centres.
            assert sub.lines == [(list(l.hist.centers()), list(l.hist.density))
                                 for l in stats.layers]
            assert len(sub.lines) == 5            # the lecture's five Tanh layers
            assert sub.titles == [f"{app.sweep.label(k)} · step 120"]
            # The x axis ends on the bins' edges: tanh's -1..1.
            assert sub.limits["x"] == (-1.0, 1.0)
        # The snapshot is the trainer's own: run k's last snapshot, figure for figure.
        for k, t in enumerate(trainer.trainers):
            assert t.last_stats.step == 120
            assert [l.hist.density for l in t.last_stats.layers] == \
                [l.hist.density for l in app.sweep.runs[k].stats.layers]
        # Gain 3 without BatchNorm saturates (the lecture's spikes at -1 and 1),
        # gain 0.5 does not: the runs' plots differ where the lecture says.
        edge = [max(ys[0], ys[-1]) for run in plots for _, ys in run.lines[:1]]
        assert edge[1] > 5 * edge[0]
        assert "activations" in pane.border_subtitle
        assert app.sweep_loss.border_subtitle == ""     # the lecture's setting: no hint


@async_test
async def test_each_runs_small_plot_spans_its_own_range(gains_no_bn):
    _, messages = gains_no_bn
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 2)
        for pane, hist in ((app.sweep_gradients, "grad_hist"), (app.sweep_activations, "hist")):
            tops = []
            for k, sub in enumerate(drawn(pane)):
                top = max(y for l in app.sweep.runs[k].stats.layers
                          for y in getattr(l, hist).density)
                assert sub.limits["y"] == (0, pytest.approx(top * 1.05))
                # Every run's tallest bin reaches the top twentieth of its plot.
                assert max(y for _, ys in sub.lines for y in ys) / sub.limits["y"][1] > 0.9
                tops.append(top)
            assert max(tops) > 1.5 * min(tops)   # one shared axis would flatten a run
            assert "each run its own scale" in pane.border_subtitle


@async_test
async def test_layers_are_labelled_by_block_with_or_without_batchnorm(bn_on_off):
    _, messages = bn_on_off
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot, app, 2)
        on, off = (app.sweep.runs[k].stats.layers for k in range(2))
        # The module indices differ (Linear, BatchNorm, Tanh vs Linear, Tanh) ...
        assert [l.index for l in on] == [2, 5, 8, 11, 14]
        assert [l.index for l in off] == [1, 3, 5, 7, 9]
        # ... the bars name the block's Tanh, the same for both runs.
        text = app.sweep_saturation.text().plain
        rows = text.splitlines()
        labels = [row[:6] for row in rows if row.startswith("tanh ")]
        assert labels == ["tanh 1", "tanh 2", "tanh 3", "tanh 4", "tanh 5"]   # all 5 fit
        assert not re.search(r"\bL\d+\b", text)
        # The bars under `tanh j` are each run's own layer j figure.
        for j, row in enumerate(r for r in rows if r.startswith("tanh ")):
            first = rows.index(row)
            assert rows[first].endswith(f"{on[j].saturation_pct:5.1f}%")
            assert rows[first + 1].endswith(f"{off[j].saturation_pct:5.1f}%")
        # A sweep with BatchNorm swept needs no hint: it is the comparison.
        assert app.sweep_loss.border_subtitle == ""


@async_test
async def test_a_gain_sweep_with_batchnorm_on_suggests_the_lectures_setting():
    _, with_bn = trained_sweep(("gain=0.5,3",), SWEEP_CONFIG.with_changes(steps=40))
    app = TraintopApp(FakeSource(with_bn))
    async with app.run_test(size=(80, 24)) as pilot:     # the narrowest loss pane
        await until(pilot, lambda: len(app.sweep.runs) == 2 and all(
            s.step == 40 for s in app.sweep.runs), what="two runs")
        await pilot.pause(0.2)
        app.redraw_all()
        await pilot.pause(0.1)
        hint = app.sweep_loss.border_subtitle
        assert hint in BATCHNORM_HINTS and "--no-batchnorm" in hint
        assert any(hint in row for row in screen_rows(app))
    # Without BatchNorm (the lecture's setting) no hint:
    # test_each_run_has_its_activation_histograms_drawn.


def two_key_sweep() -> list:
    """gain=1,5/3 x batchnorm=on,off as formulas: four runs of two-word labels."""
    from traintop.engine.feed.messages import Sweep

    messages = formula_sweep(200, ("1", "1", "5/3", "5/3"))
    labels = ("gain=1 batchnorm=on", "gain=1 batchnorm=off",
              "gain=5/3 batchnorm=on", "gain=5/3 batchnorm=off")
    out = []
    for m in messages:
        if isinstance(m, Sweep):
            m = Sweep(labels, ("gain", "batchnorm"))
        elif isinstance(m, RunStarted):
            config = {**m.info.config, "batchnorm": m.run % 2 == 0}
            m = dataclasses.replace(m, info=dataclasses.replace(m.info, config=config))
        out.append(m)
    return out


@async_test
async def test_the_legend_holds_every_runs_values_at_80x24():
    app = TraintopApp(FakeSource(two_key_sweep()))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: len(app.sweep.runs) == 4 and all(
            s.step == 200 for s in app.sweep.runs), what="four runs")
        for _ in range(2):
            await pilot.pause(0.2)
            app.redraw_all()
        await pilot.pause(0.1)
        top = screen_rows(app)[0]
        loss_border = top[:app.sweep_loss.size.width + 2]
        # Each run's values whole, in order, none cut into an ellipsis.
        found = re.findall(r"━\s?([^━─╮╭]+?)(?=\s+━|\s*─)", loss_border)
        assert [v.strip() for v in found] == ["1 on", "1 off", "5/3 on", "5/3 off"]
        assert "…" not in loss_border


@async_test
async def test_a_run_restarted_to_anothers_values_is_told_apart():
    trainer, messages = trained_sweep(("gain=1,5/3",), SWEEP_CONFIG.with_changes(steps=40))
    source = FakeSource(messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app.sweep.runs) == 2 and all(
            s.step == 40 for s in app.sweep.runs), what="two runs")
        assert [app.sweep.label(k) for k in range(2)] == ["gain=1", "gain=5/3"]
        # Run 2 restarted to gain 1 in its view (g), as the trainer child does it.
        why = trainer.restart(run=1, gain="1")[0]
        source.push(RunStarted(trainer.info(1), why, run=1))
        await until(pilot, lambda: app.sweep.runs[1].info.config["gain"] == "1",
                    what="the restart")
        labels = [app.sweep.label(k) for k in range(2)]
        assert labels == ["gain=1 (run 1)", "gain=1 (run 2)"]
        app.redraw_all()
        await pilot.pause(0.1)
        assert "gain=1 (run 1)" in app.sweep_activations.border_title
        assert "gain=1 (run 2)" in app.sweep_activations.border_title
        for pane in (app.sweep_loss, app.sweep_ratio):    # narrower: the values alone
            assert "━ 1#1[" in pane.border_title and "━ 1#2[" in pane.border_title
        assert "━ 1#1  ━ 1#2" in screen_rows(app)[0]
        findings = str(app.sweep_findings.content)
        assert "gain=1 (run 1):" in findings and "gain=1 (run 2):" in findings


def test_labels_stay_plain_while_the_values_differ():
    state = SweepState()
    for m in formula_sweep(60, ("1", "3")):
        state.apply(m)
    assert [state.label(k) for k in range(2)] == ["gain=1", "gain=3"]


@async_test
async def test_the_overviews_step_axes_tick_whole_steps():
    app = TraintopApp(FakeSource(formula_sweep(250, ("1", "3"))))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app.sweep.runs) == 2 and all(
            s.step == 250 for s in app.sweep.runs), what="two runs")
        app.redraw_all()
        for pane in (app.sweep_loss, app.sweep_ratio):
            plt = RecordingPlot()
            pane.draw(plt, no_color=False)
            # plotext's own quarters of 0..250 would say 62.5
            assert plt.ticks == [0, 50, 100, 150, 200, 250]
