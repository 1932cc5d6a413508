"""What plotext draws of the layer panes: every saturation bar drawn carries its
own label and length (plotext merges bars packed one a row: at 80x24 the
lecture's 5 bars in 5 rows hid L8), the rest summed up in words that fit, a
diverged layer's share (NaN outputs are in no regime) never read as 0%, and
the gradient histograms of an LSTM (gates without a gradient) or a NaN run."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest

from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource, async_test, until
from tui_fixed_run import fixed_run


def drawn_bars(built: str) -> dict[str, int]:
    """label -> bar length in cells, of each labelled row of plotext's output."""
    rows = re.sub(r"\x1b\[[0-9;]*m", "", built).splitlines()
    return {m.group(1).strip(): len(m.group(2))
            for m in (re.match(r"\s*(\S.*?)┤([█#▉▊▋▌▍▎▏]*)", r) for r in rows) if m}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@async_test
async def test_every_bar_drawn_has_its_label_and_length(size):
    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.pause(0.2)
        app.redraw_all()
        await pilot.pause(0.2)
        pane = app.query_one("#saturation")
        bars = drawn_bars(pane._built)
        expected = {pane.label_text(bar): bar[2] for bar in pane.bars}
        assert set(bars) == set(expected), (bars, expected)
        layers = pane.state.stats.layers
        # every layer is a bar or counted in the note under the axis
        hidden = len(layers) - len(bars)
        text = re.sub(r"\x1b\[[0-9;]*m", "", pane._built)
        assert (hidden == 0) == (pane.rest is None)
        if hidden:
            assert f"{hidden} more" in text or f"+{hidden} (p)" in text
        # a longer bar for a larger share (plotext merged neighbours before)
        top = max(expected.values())
        for a in expected:
            for b in expected:
                if expected[a] - expected[b] > 0.15 * top:
                    assert bars[a] > bars[b], (a, b, bars, expected)


class _Plot:
    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.setdefault(name, []).append(a)


def test_a_diverged_layer_has_no_bar_and_the_note_says_so():
    from traintop.tui.saturation_pane import SaturationPane

    layer = lambda i, mean: SimpleNamespace(index=i, name=f"h.{i}.mlp.act", saturation_pct=0.0,
                                            dead=0, units=32, fam="gelu", label=f"h.{i}.act",
                                            mean=mean, std=abs(mean))
    stats = SimpleNamespace(step=300, layers=[layer(0, math.nan), layer(1, math.nan)])
    pane = SaturationPane(None)   # not mounted: its size is 0x0, the default width
    pane.canvas_rows, pane.label_width = lambda: 20, lambda share: 40
    pane.take(SimpleNamespace(stats=stats, findings=lambda: [], info=None))
    assert [math.isnan(pct) for _, _, pct, _ in pane.bars] == [True, True]
    plt = _Plot()
    pane.draw(plt, no_color=True)
    (labels, values), = [a[:2] for a in plt.calls["bar"]]
    assert values == [0.0, 0.0]
    (low, high), = plt.calls["xlim"]
    assert low == 0 and high == pytest.approx(1.15)   # a readable 0-1% axis, not 0-1e-9
    (note,), = plt.calls["xlabel"]
    assert "2 non-finite" in note


def test_a_healthy_layer_keeps_its_share():
    from traintop.tui.saturation_pane import share

    assert share(SimpleNamespace(mean=0.1, std=0.6, saturation_pct=12.5)) == 12.5
    assert math.isnan(share(SimpleNamespace(mean=math.inf, std=0.6, saturation_pct=0.0)))


# ----- the histogram panes on an LSTM (gates without a gradient) and a diverged run ----------

def _layer(i, name, grad_density):
    from traintop.engine.results import Histogram

    return SimpleNamespace(index=i, name=name, label=name, fam="tanh", mean=0.0, std=0.5,
                           saturation_pct=1.0, dead=0, units=8,
                           grad_mean=0.0 if math.isfinite(grad_density[0]) else math.nan,
                           grad_std=1e-3 if math.isfinite(grad_density[0]) else math.nan,
                           hist=Histogram(-1.0, 1.0, (0.5,) * 4),
                           grad_hist=Histogram(-1e-3, 1e-3, grad_density))


@pytest.mark.parametrize("densities, drawn, unlined", [
    # an LSTM's output and its recomputed gates (NaN: no gradient): the gates are not drawn
    ([(1.0, 2.0, 3.0, 1.0), (math.nan,) * 4, (math.nan,) * 4], ["rnn"], 0),
    # a diverged run: every gradient NaN, no layer drawn (a flat line on a made-up
    # axis read as a histogram), the words say why
    ([(math.nan,) * 4, (math.nan,) * 4], [], 2),
    # as watch() records an all-NaN layer: no count on a placeholder axis; the
    # finite layer drawn, the other counted under the plot
    ([(1.0, 2.0, 3.0, 1.0), (0.0,) * 4], ["rnn"], 1),
])
def test_a_gradient_pane_builds_with_layers_that_have_no_gradient(densities, drawn, unlined):
    import plotext as plt

    from traintop.tui.histogram_pane import HistogramPane

    names = ["rnn", "rnn.l0.input_gate", "rnn.l0.forget_gate"]
    layers = [_layer(i, n, d) for i, (n, d) in enumerate(zip(names, densities))]
    pane = HistogramPane(None, "gradient")   # not mounted: the default sizes
    pane.take(SimpleNamespace(stats=SimpleNamespace(step=300, layers=layers),
                              findings=lambda: [], info=None))
    assert [label.split()[0] for label, _, _ in pane.lines] == drawn
    plt.clf()
    plt.plotsize(58, 18)
    pane.draw(plt, no_color=True)
    out = plt.build()          # plotext raised IndexError on a labelled all-NaN series
    plt.clf()
    if drawn:
        assert drawn[0] in out
    else:
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", out).split())
        assert "Every value of all 2 layers was NaN or inf at step 300: no" in text
    assert len(pane.nonfinite) == unlined
    assert (f"{unlined} non-finite (no line)" in pane.border_subtitle) == bool(drawn and unlined)


def test_a_diverged_run_does_not_set_the_shared_histogram_axis(monkeypatch):
    """A folder holding a run that went NaN: its gradient histograms count nothing
    (placeholder range -0.5..0.5), and the other runs keep their own scale (the
    lecture's gradients, ~1e-2 wide, were drawn as one spike on a -0.5..0.5 axis)."""
    from traintop.engine.results import Histogram
    from traintop.tui.sweep_plots import SweepHistogramPane

    def run(grad_hist):
        layer = SimpleNamespace(hist=Histogram(-1.0, 1.0, (0.5,) * 4), grad_hist=grad_hist)
        return SimpleNamespace(stats=SimpleNamespace(step=300, layers=[layer]))

    diverged = run(Histogram(-0.5, 0.5, (0.0,) * 4))
    healthy = run(Histogram(-0.014, 0.008, (10.0, 40.0, 30.0, 5.0)))
    sweep = SimpleNamespace(runs=[diverged, healthy], label=lambda k: ("gpt", "lecture")[k])
    monkeypatch.setattr(SweepHistogramPane, "app", SimpleNamespace(no_color=True))
    monkeypatch.setattr("traintop.tui.sweep_plots.legend", lambda *a: "")
    pane = SweepHistogramPane(None, "gradient")
    pane.take(sweep)
    assert pane.ranges == [(-0.014, 0.008)]


def test_a_killed_writer_is_not_called_live_in_the_overview():
    """attach DIR: a writer killed sends no message, so the findings (which print
    `(live)` beside each run) are marked for the text clock when the writers change."""
    from traintop.tui.app import TraintopApp
    from tui_fakes import FakeSource

    app = TraintopApp(FakeSource(fixed_run()))
    words = ["live", "finished"]
    app.source.follow, app.source.writers = True, lambda: list(words)
    app.mark_writers()
    assert "sweep_findings" in app._text_dirty
    app._text_dirty.clear()
    app.mark_writers()                 # nothing changed: nothing to redraw
    assert "sweep_findings" not in app._text_dirty
    words[0] = "quiet"                 # the writer was killed
    app.mark_writers()
    assert "sweep_findings" in app._text_dirty


def test_a_folder_of_different_models_labels_each_bar_with_its_own_layer(monkeypatch):
    """A folder of a tanh MLP and a ReLU ResNet: the bars are paired by position,
    each labelled with its own run's layer (the first run's name stood for all),
    and the lecture's 5% guide is drawn through the tanh bars only."""
    from traintop.tui.sweep_bars import SweepSaturation

    def layer(name, kind, pct):
        return SimpleNamespace(name=name, kind=kind, fam={"Tanh": "tanh", "ReLU": "relu"}[kind],
                               saturation_pct=pct)

    mlp = SimpleNamespace(stats=SimpleNamespace(layers=[layer("net.1", "Tanh", 1.0),
                                                        layer("net.3", "Tanh", 2.0)]))
    resnet = SimpleNamespace(stats=SimpleNamespace(layers=[layer("layer1.0.relu", "ReLU", 1.0),
                                                           layer("layer2.0.relu", "ReLU", 2.0)]))
    sweep = SimpleNamespace(runs=[mlp, resnet], models_differ=lambda: True)
    monkeypatch.setattr(SweepSaturation, "app", SimpleNamespace(no_color=True))
    rows = SweepSaturation(sweep).text().plain.splitlines()
    assert [r.split()[0] for r in rows[:4]] == ["net.1", "layer1.0.relu", "net.3",
                                                "layer2.0.relu"]
    guide = [("┊" in r) for r in rows[:4]]
    assert guide == [True, False, True, False]      # 1-2% bars stop short of the 5% guide
    assert rows[-1].startswith("┊ 5% guide (tanh, sigmoid)")
    # one model: the block's label once, the guide through every tanh bar
    sweep.models_differ, sweep.runs = (lambda: False), [mlp, mlp]
    rows = SweepSaturation(sweep).text().plain.splitlines()
    assert [r[:6].strip() for r in rows[:4]] == ["net.1", "", "net.3", ""]
    assert ["┊" in r for r in rows[:4]] == [True] * 4 and rows[-1].startswith("┊ 5% guide ·")
    # no colour: each run's bar drawn with its marker as text (it read `dotdotdot`)
    assert rows[2].split()[1].startswith("••") and rows[3].split()[0].startswith("xx")
