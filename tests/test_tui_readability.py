"""Issue 23 item 7 and issue 25 items 4, 7, 8: the app readable at 80x24 with
real module names, notices that cover no pane's figures, j/k that scroll,
tab 2's panes at one step with the lecture's legend figures."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.replay_source import ReplaySource
from traintop.tui.app import TraintopApp
from traintop.tui.pick import short_labels
from real_models import GPT, GPTConfig
from tui_fakes import FakeSource, async_test, recorded_run, until
from tui_recordings import record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Gain 3 without BatchNorm saturates every Tanh layer: several health errors.
BROKEN = TrainConfig(n_hidden=30, steps=1000, stats_every=20, batchnorm=False, gain="3")


# ----- a ResNet of torchvision's shape, small ------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()            # called twice per forward, as torchvision's
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2),
                                    BasicBlock(2 * width, 2 * width))
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def resnet_recording(tmp_path_factory):
    torch.manual_seed(0)
    model = ResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path_factory.mktemp("resnet") / "resnet.jsonl"
    with watch(model, path, optimizer=opt, every=3) as w:
        for _ in range(6):
            x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return path


@pytest.fixture(scope="module")
def broken_recording(tmp_path_factory):
    return record(recorded_run(BROKEN, steps=100),
                  tmp_path_factory.mktemp("broken") / "broken.jsonl")


# ----- labels ------------------------------------------------------------------------
def test_labels_keep_the_block_and_the_leaf_of_real_module_paths():
    gpt = [n for n, p in GPT(GPTConfig(n_layer=6)).named_parameters() if p.ndim == 2]
    labels = dict(zip(gpt, short_labels(gpt, 12)))
    assert len(set(labels.values())) == len(gpt)
    for k in range(6):
        assert labels[f"transformer.h.{k}.attn.c_attn.weight"] == f"h.{k}…c_attn"
        assert labels[f"transformer.h.{k}.mlp.c_fc.weight"] == f"h.{k}.mlp.c_fc"
        # attn.c_proj and mlp.c_proj share their leaf: the middle stays, initialled
        assert labels[f"transformer.h.{k}.attn.c_proj.weight"] == f"h.{k}.a.c_proj"
        assert labels[f"transformer.h.{k}.mlp.c_proj.weight"] == f"h.{k}.m.c_proj"
    assert all(len(label) <= 12 for label in labels.values())

    resnet = [n for n, p in ResNet().named_parameters() if p.ndim == 4]
    for width in (12, 14, 18):
        labels = dict(zip(resnet, short_labels(resnet, width)))
        assert len(set(labels.values())) == len(resnet), width
        assert all(len(label) <= width for label in labels.values())
    labels = dict(zip(resnet, short_labels(resnet, 14)))
    # layer1.0 and layer2.0 told apart (before: `….0.conv1.wei…` for both)
    assert labels["layer1.0.conv1.weight"] == "layer1.0.conv1"
    assert labels["layer2.0.conv1.weight"] == "layer2.0.conv1"
    assert labels["layer2.0.downsample.0.weight"] == "downsample.0"   # the only one
    assert short_labels(resnet, 12)[resnet.index("layer2.1.conv2.weight")] == "l2.1.conv2"

    # The ReLU of every block: not `….relu` for each, the block says which.
    relus = ["relu"] + [f"layer{i}.{j}.relu" for i in (1, 2) for j in (0, 1)]
    assert short_labels(relus, 8) == ["relu", "layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    # the picked few all of a block's second half: still `layer1.1`, never `layer1`
    assert short_labels(["relu", "layer1.1.relu", "layer2.1.relu"], 8) == \
        ["relu", "layer1.1", "layer2.1"]
    # A middle elided where the names differ at both ends.
    names = [f"encoder.block.{k}.layer.{j}.DenseReluDense.wi" for k in range(3) for j in (0, 1)]
    names += [f"encoder.block.{k}.layer.{j}.DenseReluDense.wo" for k in range(3) for j in (0, 1)]
    labels = short_labels(names, 16)
    assert len(set(labels)) == len(names) and all(len(t) <= 16 for t in labels)


@async_test
async def test_a_resnet_reads_at_80x24(resnet_recording):
    """Every pane that prints module paths tells the ResNet's layers apart."""
    app = TraintopApp(ReplaySource(resnet_recording))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.step == 6, what="the end")
        await pilot.pause(0.3)
        app.redraw_all()
        bars = [label for _, label, _, _ in app.saturation.bars]
        names = [layer.name for layer in app.state.stats.layers]
        assert "layer1.0.relu" in names and "layer2.1.relu" in names
        assert len(set(bars)) == len(bars) == len(app.saturation.bars)
        assert not any(label.startswith("…") for label in bars), bars
        # each bar names its block: the module path's head and index
        for i, label, _, _ in app.saturation.bars:
            name = next(layer.name for layer in app.state.stats.layers if layer.index == i)
            assert name == label or name.startswith(label + "."), (name, label)
            assert name == "relu" or re.match(r"layer\d\.\d", label), label
        # two rows a bar (plotext merges bars packed closer): the layer1 blocks a `p` away
        await pilot.press("p")
        await pilot.pause(0.2)
        app.redraw_all()
        bars += [label for _, label, _, _ in app.saturation.bars]
        assert any(b.startswith("layer1.") for b in bars), bars

        await pilot.press("3")
        await until(pilot, lambda: app.weights.table.size.width > 0, what="tab 3")
        await pilot.pause(0.3)
        app.redraw_all()
        console = Console(width=app.weights.table.size.width, record=True,
                          file=io.StringIO())
        console.print(app.weights.table.content)
        rows = [line.split()[0] for line in console.export_text().splitlines()[1:]
                if line.strip()]
        assert len(rows) == len([w for w in app.state.stats.weights]), rows
        assert len(set(rows)) == len(rows), rows
        assert "layer1.0.conv1" in rows and "layer2.0.conv1" in rows, rows
        assert not any(row.startswith("…") for row in rows), rows


# ----- j / k ---------------------------------------------------------------------------
@async_test
async def test_j_and_k_scroll_the_health_findings_in_replay(broken_recording):
    app = TraintopApp(ReplaySource(broken_recording))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.step == 100, what="the end")
        await pilot.press("4")
        await until(pilot, lambda: "j/k scroll" in str(app.health.border_subtitle),
                    what="the findings")
        pane = app.health
        assert len(app.state.findings()) > 3
        await until(pilot, lambda: pane.max_scroll_y > 0, what="more findings than rows")
        assert pane.scroll_y == 0
        await pilot.press("j", "j")
        await until(pilot, lambda: pane.scroll_y == 2, what="j scrolled")
        await pilot.press("k")
        await until(pilot, lambda: pane.scroll_y == 1, what="k scrolled back")

        # Back on tab 1 (issue 25 item 9): the activation share keeps a title that fits.
        await pilot.press("1")
        await pilot.pause(0.3)
        app.redraw_all()
        await pilot.pause(0.1)
        title = app.saturation.title()
        assert title.startswith("% ") and title in app.saturation._built, title
        # The update:data plot: its title in the border, the guide's row labelled -3.0.
        plain = re.sub(r"\x1b\[[0-9;]*m", "", app.ratio._built).splitlines()
        guide = [line for line in plain if line.lstrip().startswith("-3.0")]
        assert len(guide) == 1 and guide[0].lstrip()[4] == "├" and guide[0].endswith("┤"), plain
        assert "guide -3" in str(app.ratio.border_subtitle)
        assert app.ratio.size.height < 12                  # 80x24: a short pane


# ----- notices -------------------------------------------------------------------------
def shown(app) -> list:
    """The toasts on screen (an older one stays mounted, hidden, till it expires)."""
    from textual.widgets._toast import Toast
    return [t for t in app.screen.query(Toast) if t.parent.display and t.region.area]


def overlaps(a, b) -> bool:
    return a.overlaps(b) if a.area and b.area else False


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@async_test
async def test_a_notice_is_one_line_on_the_tab_bar_over_no_pane(size):
    from textual.widgets._toast import Toast

    app = TraintopApp(FakeSource(recorded_run()))
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: app.state.step == 400, what="the run")
        app.notify("evaluate: train 2.3456, val 2.4567, and a long tail of words that "
                   "would have wrapped over three rows of the loss plot before")
        app.notify("lr 0.1 -> 0.2")      # one at a time: the newer hides the older
        await until(pilot, lambda: shown(app), what="a toast")
        await pilot.pause(0.2)
        assert len(shown(app)) == 1
        toast = shown(app)[0]
        region = toast.region
        assert region.y == 0 and region.height == 1, region
        assert "lr 0.1 -> 0.2" in str(toast.render())
        tabs = [t.region for t in app.query("#tabs Tab")]
        assert region.x >= max(t.right for t in tabs)
        assert not overlaps(region, app.status_line.region)
        for name in app.panes:
            pane = app.panes[name]
            if pane.is_on_screen:
                assert not overlaps(region, pane.region), name
        # A long one is cut to the free end of the bar, never wrapped.
        app.notify("x" * 300, severity="error")
        await until(pilot, lambda: "xxx" in str(shown(app)[-1].render()), what="the long one")
        await pilot.pause(0.2)
        assert len(shown(app)) == 1
        toast = shown(app)[0]
        assert toast.region.height == 1 and toast.region.right <= size[0]
        assert toast.region.x >= max(t.right for t in tabs)


@async_test
async def test_health_errors_make_no_toast_and_a_status_summary():
    source = FakeSource(recorded_run(BROKEN, steps=100))
    app = TraintopApp(source)
    notes: list[tuple[str, dict]] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.notify = lambda message, **kw: notes.append((message, kw))
        await until(pilot, lambda: not source.queue)
        await until(pilot, lambda: app.status_line.has_class("alert"), what="the flash")
        findings = app.state.findings()
        errors = sum(f.severity == "error" for f in findings)
        warns = sum(f.severity == "warn" for f in findings)
        assert errors >= 2
        assert not [m for m, kw in notes if kw.get("title") == "health" or "saturation" in m]
        status = str(app.status_line.content)
        said = f"{errors} errors" + (f", {warns} warn" if warns else "")
        assert status.endswith(f"health: {said} (tab 4)"), status


# ----- tab 2 ---------------------------------------------------------------------------
@async_test
async def test_tab_2_shows_one_step_with_the_lectures_legend_figures():
    messages = recorded_run(TrainConfig(n_hidden=30, steps=1000, stats_every=20), steps=400)
    head = [m for m in messages if not isinstance(m, (Steps, Status))][:1]
    steps = [m for m in messages if isinstance(m, Steps)]
    source = FakeSource(head)
    app = TraintopApp(source, refresh=0.1)
    seen: set[tuple] = set()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.info is not None)
        await pilot.press("2")
        for k, block in enumerate(steps):
            last = block.results[-1]
            source.push(block, Status(step=last.step, lr=last.lr, running=True,
                                      finished=False, steps_per_sec=812.0))
            for _ in range(4):
                await pilot.pause(0.05)
                act, grad = app.activations, app.gradients
                if act.redraws and grad.redraws:
                    seen.add((act.step, grad.step))
        act, grad = app.activations, app.gradients
        assert len(seen) > 2 and all(a == g for a, g in seen), seen

        # The legends: the snapshot's own mean, std and share, per drawn layer.
        app.redraw_all()
        stats = app.state.stats
        by_label = {layer.label: layer for layer in stats.layers}
        assert act.step == grad.step == stats.step
        assert act.lines and grad.lines
        for label, _, _ in act.lines:
            name = label.split(" mean ")[0].lstrip("!")
            layer = by_label[name]
            assert f"mean {layer.mean:+.2f} std {layer.std:.2f} " \
                   f"sat {layer.saturation_pct:.1f}%" in label
        for label, _, _ in grad.lines:
            layer = by_label[label.split(" mean ")[0].lstrip("!")]
            assert f"mean {layer.grad_mean:+.1e} std {layer.grad_std:.1e}" in label
        # At 120x40 five layers' legends go in the border: their figures too, briefly.
        assert act.border_title and grad.border_title
        for label, _, _ in act.lines:
            layer = by_label[label.split(" mean ")[0].lstrip("!")]
            std = f"{layer.std:.2f}".removeprefix("0")
            assert f"{layer.label} μ" in act.border_title and f"σ{std} " in act.border_title
            assert f" {layer.saturation_pct:.0f}%" in act.border_title
        for label, _, _ in grad.lines:
            layer = by_label[label.split(" mean ")[0].lstrip("!")]
            assert f"{layer.label} μ" in grad.border_title
            mantissa, exponent = f"{layer.grad_std:.1e}".split("e")
            assert f"σ{mantissa}e{int(exponent)}" in grad.border_title


# ----- cosmetics -----------------------------------------------------------------------
def test_step_ticks_are_whole_steps():
    from traintop.tui.plotting import step_ticks

    class Plot:
        def xticks(self, ticks, labels):
            self.ticks, self.labels = ticks, labels

    plt = Plot()
    step_ticks(plt, 1250)
    assert plt.labels == ["0", "250", "500", "750", "1,000", "1,250"]
    for end in (10, 60, 125, 4000, 200_000):
        step_ticks(plt, end)
        assert all(isinstance(t, int) for t in plt.ticks) and plt.ticks[-1] <= end
        assert 3 <= len(plt.ticks) <= 6


def test_marker_texts_leave_the_legend_and_each_other_alone():
    from traintop.engine.training.history import Marker
    from traintop.tui.plotting import draw_markers

    class Plot:
        def __init__(self):
            self.texts = []

        def vertical_line(self, *a, **k):
            pass

        def text(self, text, x, y, **k):
            self.texts.append((text, x))

    markers = [Marker(5, "gain 5/3"), Marker(300, "lr 0.064 -> 0.128"),
               Marker(320, "lr 0.128 -> 0.256"),
               Marker(700, "lr 0.256 -> 0.0256 (decay at step 100,000)")]
    plt = Plot()
    # 100 columns over 1,000 steps; a legend of 16 columns at the top left
    draw_markers(plt, markers, 0, 1000, 1.0, cols=100, legend=16)
    texts = dict((x, t) for t, x in plt.texts)
    assert 5 not in texts                   # under the legend: no text
    assert 300 not in texts                 # 2 columns before the next: no text
    assert texts[320].startswith("lr 0.128") and len(texts[320]) <= 70 - 32 - 1
    assert texts[700] == "lr 0.256 -> 0.0256 (decay at step 100,000)"[:29] or \
        texts[700].endswith("…") or texts[700] == markers[-1].text
    assert len(texts[700]) > 18             # not cut at 18 where the room holds more


def test_a_narrow_status_line_keeps_the_health_summary_shorter():
    from traintop.tui.status_line import fit_status, health_summary

    class F:
        def __init__(self, severity):
            self.severity = severity

    summary = health_summary([[F("error"), F("warn"), F("info")], [F("error")]], "4")
    assert summary == "health: 2 errors, 1 warn (tab 4)"
    assert health_summary([[F("info")]]) == ""
    line = f"step 300 · lr 0.1 · gain 1 · BatchNorm on · 812 steps/s · running · {summary}"
    assert fit_status(line, 200) == line
    assert fit_status(line, 95) == ("step 300 · lr 0.1 · gain 1 · BatchNorm on · 812 steps/s · "
                                    "running · health: 2 errors, 1 warn")
    # then as the panes mark layers, before the gain or BatchNorm go
    assert fit_status(line, 78) == ("step 300 · lr 0.1 · gain 1 · BatchNorm on · 812 steps/s · "
                                    "running · !!2 !1")
    assert fit_status(line, 60) == "step 300 · lr 0.1 · 812 steps/s · running · !!2 !1"


def test_the_status_line_names_the_gain_as_the_markers_do():
    from traintop.engine.training.trainer import describe
    from traintop.tui.status_line import gain_text

    for gain in ("0.5", "1", "5/3", "2", "3"):
        assert gain_text(gain) == describe("gain", gain)
    assert gain_text("0.5") == "1/2"


def test_the_help_explains_the_marks_and_names_layers_for_the_app_it_is_in():
    from traintop.tui.help_screen import help_text

    lecture, watched = help_text(lecture=True), help_text(lecture=False)
    assert "`!` before a layer's or parameter's label" in lecture and "`!!`" in lecture
    assert "h.3.mlp.gelu" not in lecture and "`L2` is the first Tanh" in lecture
    assert "transformer.h.3.mlp.gelu" in watched


@async_test
async def test_the_key_line_fits_120_columns():
    app = TraintopApp(FakeSource(recorded_run()))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == 400)
        await pilot.pause(0.2)
        footer = app.screen.query_one("Footer")
        keys = [w for w in footer.query("FooterKey") if w.display]
        assert keys and max(k.region.right for k in keys) <= 120
        assert keys[-1].region.width > 0 and "pick" in str(keys[-1].render())


@async_test
async def test_the_calibration_pane_hides_without_batchnorm():
    messages = recorded_run(BROKEN, steps=100)
    calibrated = next(m for m in messages if getattr(m, "kind", "") == "calibrate")
    source = FakeSource([m for m in messages if m is not calibrated])
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("4")
        await pilot.pause(0.5)
        app.redraw_all()
        assert app.calibration.display is False
        assert app.health.region.height > 20       # the findings take the column
        # `c` pressed anyway: the pane says why it has nothing.
        source.push(calibrated)
        await until(pilot, lambda: app.calibration.display is True, what="the answer")
        assert "no BatchNorm layers in this run" in str(app.calibration.content)


@async_test
async def test_events_count_the_runs_steps_as_the_status_line_does():
    from traintop.engine.feed.messages import RunStarted

    messages = recorded_run()
    start = messages[0]
    again = RunStarted(start.info, "restart: gain 3")
    source = FakeSource([*messages, again])
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        assert app.state.history.tick == 400
        assert (0, "restart: gain 3") == app.state.events[-1]
        assert re.search(r"\bstep 0\b", str(app.status_line.content))


def test_the_activation_share_title_rule_is_plotexts():
    """title_fits says what plotext does: it drops a title that would pass
    the plot's right edge (the activation share picks a shorter one then)."""
    import plotext as plt

    from traintop.tui.saturation_pane import title_fits

    for width in (23, 25, 27, 40):
        for labels in (3, 6, 7, 11):
            for length in range(8, 30, 3):
                plt.clear_figure()
                plt.plotsize(width, 10)
                plt.title("%" * length)
                plt.bar(["x" * labels, "y" * labels], [1, 2], orientation="horizontal")
                assert ("%" * length in plt.build()) == title_fits(length, width, labels), \
                    (width, labels, length)
    plt.clear_figure()


@async_test
async def test_gain_keys_in_one_burst_each_go_on_from_the_last():
    """`g g` before the first restart answers: 5/3 -> 1 -> 1/2 asked, not 1 twice
    (the walk saw two `restart: gain 5/3` lines after G g g)."""
    source = FakeSource(recorded_run())
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("g", "g")
        await until(pilot, lambda: len(source.commands) == 2, what="two restarts")
        assert [c.args["gain"] for c in source.commands] == ["1", "0.5"]
        await pilot.press("G")
        await until(pilot, lambda: len(source.commands) == 3)
        assert source.commands[-1].args["gain"] == "1"


@async_test
async def test_tab_2_at_80x24_draws_the_layers_whose_figures_fit():
    source = FakeSource(recorded_run(BROKEN, steps=100))
    app = TraintopApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not source.queue)
        await pilot.press("2")
        await pilot.pause(0.5)
        app.redraw_all()
        stats = app.state.stats
        sets = []
        for pane in (app.activations, app.gradients):
            assert pane.step == stats.step
            drawn = [label.split(" mean ")[0].lstrip("!") for label, _, _ in pane.lines]
            sets.append(drawn)
            assert 2 <= len(drawn) < len(stats.layers)      # the rest: p pages them
            assert f"{len(drawn)} of {len(stats.layers)} drawn" in pane.border_subtitle
            title = pane.border_title
            assert len(re.sub(r"\[[^\]]*\]", "", title)) <= 80 - 6
            for name in drawn:
                layer = next(l for l in stats.layers if l.label == name)
                assert f"{name} μ" in title
                if pane is app.activations:
                    assert f" {layer.saturation_pct:.0f}%" in title
        assert sets[0] == sets[1]        # one set of layers in both panes
