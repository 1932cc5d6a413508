"""The app on the lecture's first network (--stage): tab 2's saturation map
of |h| > 0.99 (examples x units, dead units marked) with the h and
pre-activation histograms, drawn from a real step's values; hidden for the
deep stack; the keys that do not apply say so."""

from __future__ import annotations

import torch

from textual.widgets import TabbedContent

from traintop.data.dataset import build_dataset
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import RunStarted, Status, Steps
from traintop.engine.training.trainer import Trainer
from traintop.tui import keys
from traintop.tui.app import TraintopApp
from traintop.tui.saturation_map_pane import SaturationMapPane, braille
from tui_fakes import FakeSource, async_test, small_words, until


def one_step(stage: str, steps: int = 1):
    """`steps` real steps of `stage` (full diagnostics) and the last one's h, directly."""
    dataset = build_dataset(small_words(), 3, 42, source="small")
    trainer = Trainer(TrainConfig(stage=stage, stats_every=1), dataset, engine="fast")
    results = tuple(trainer.step() for _ in range(steps))
    result = results[-1]
    h = trainer.stack.layers[trainer.stack.tanh_positions()[0]].out.detach().clone()
    pre = trainer.stack.layers[trainer.stack.tanh_positions()[0] - 1].out.detach().clone()
    messages = [RunStarted(trainer.info(), None), Steps(results),
                Status(step=steps, lr=0.1, running=False, finished=False, steps_per_sec=0.0)]
    return messages, h, pre, result


async def show_activations(pilot, app) -> None:
    await until(pilot, lambda: not app.source.queue and app.state.status is not None,
                what="the run to load")
    await pilot.press(keys.tab_key("activations"))
    await until(pilot, lambda: app.query_one(TabbedContent).active == "activations",
                what="tab 2")
    await pilot.pause(0.2)


def test_the_figures_are_the_steps():
    messages, h, pre, result = one_step("original", 3)
    layer = result.stats.layers[0]
    white = h.abs() > 0.99
    # the original init saturates h: the lecture's mostly white image; at step 3
    # of this data one column is white on all 32 examples (a dead unit)
    assert white.float().mean() > 0.5 and int(white.all(0).sum()) == 1
    hist = torch.histogram(pre.float(), bins=100, density=True)
    assert torch.allclose(torch.tensor(layer.preact_hist.density, dtype=torch.float64),
                          hist.hist.double(), rtol=1e-4, atol=1e-6)
    assert abs(layer.preact_hist.lo - float(pre.min())) < 1e-5


@async_test
async def test_saturation_map_pane_shows_the_batch():
    messages, h, _, _ = one_step("original", 3)
    white = h.abs() > 0.99
    dead = [j for j in range(200) if bool(white[:, j].all())]
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(120, 40)) as pilot:
        await show_activations(pilot, app)
        pane = app.query_one(SaturationMapPane)
        await until(pilot, lambda: pane.display and pane.shown_layer is not None, what="the map")
        title = pane.border_title
        assert "32 examples x 200 units" in title and "step 3" in title
        assert f"white {white.float().mean().item():.1%}" in title
        assert f"dead {len(dead)} ▲" in title
        lines = str(pane.content).split("\n")
        # 8 braille rows of 4 examples, 2 units a character at this width
        rows, cells = braille(white.tolist(), pane.size.width - 4)
        assert lines[:8] == rows and all(len(r) == 100 for r in rows)
        marks = [c for c, ch in enumerate(lines[8]) if ch == "▲"]
        assert len(dead) == 1 and marks == [dead[0] // 2]
        # a dot a unit at this width: the first character is units 0, 1 of examples 0-3
        code = ord(lines[0][0]) - 0x2800
        assert bool(code & 0x01) == bool(white[0, 0]) and bool(code & 0x08) == bool(white[0, 1])
        assert bool(code & 0x40) == bool(white[3, 0]) and bool(code & 0x80) == bool(white[3, 1])
        assert lines[9].startswith("h       [-1.00, +1.00]")
        assert lines[10].startswith("pre-act")


@async_test
async def test_the_deep_stack_has_no_map():
    dataset = build_dataset(small_words(), 3, 42, source="small")
    trainer = Trainer(TrainConfig(n_hidden=30, stats_every=1), dataset, engine="fast")
    result = trainer.step()
    assert result.stats.layers[0].saturation_map == ()
    app = TraintopApp(FakeSource([RunStarted(trainer.info(), None), Steps((result,)),
                                  Status(step=1, lr=0.1, running=False, finished=False,
                                         steps_per_sec=0.0)]))
    async with app.run_test(size=(120, 40)) as pilot:
        await show_activations(pilot, app)
        assert not app.query_one(SaturationMapPane).display


@async_test
async def test_keys_that_do_not_apply_say_so():
    """gain, BatchNorm and fan-in are the stage's: the keys send no restart
    (the trainer would refuse it: test_stages.py) and say why."""
    messages, _, _, _ = one_step("kaiming")
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue and app.state.status is not None,
                    what="the run to load")
        for key, word in (("G", "gain"), ("g", "gain"), ("b", "batchnorm"), ("f", "fan-in")):
            await pilot.press(key)
            await pilot.pause(0.05)
            notices = [n.message for n in app._notifications]
            assert notices and notices[-1].startswith(f"{word}: not for --stage kaiming"), notices
        assert not [c for c in app.source.commands if c.name == "restart"]
        await pilot.press("r")
        await until(pilot, lambda: any(c.name == "restart" for c in app.source.commands),
                    what="r restarts")


@async_test
async def test_at_80x24_the_map_keeps_to_3_rows_and_the_histograms_keep_theirs():
    """At 80x24 the map's 8 rows squeezed tab 2's two histograms to a line of
    junk each: a short screen folds the examples to 3 braille rows (a dot white
    where most of its examples are)."""
    from traintop.tui.histogram_pane import HistogramPane
    from traintop.tui.saturation_map_pane import fold_rows

    messages, h, _, _ = one_step("original", 3)
    white = (h.abs() > 0.99).tolist()
    folded = fold_rows(white, 3)           # 32 examples: 3 a dot row, 11 dot rows
    assert len(folded) == 11
    assert folded[0] == [2 * sum(r[j] for r in white[0:3]) > 3 for j in range(200)]
    app = TraintopApp(FakeSource(messages))
    async with app.run_test(size=(80, 24)) as pilot:
        await show_activations(pilot, app)
        pane = app.query_one(SaturationMapPane)
        await until(pilot, lambda: pane.display and pane.shown_layer is not None, what="the map")
        await pilot.pause(0.2)
        lines = str(pane.content).split("\n")
        rows, _ = braille(white, pane.size.width - 4, 3)
        assert len(rows) == 3 and lines[:3] == rows
        for hist in app.query(HistogramPane):
            if hist.display:
                assert hist.size.height >= 4, (hist.id, hist.size)   # 1 row with 8 map rows


def test_the_status_line_names_the_stage_not_the_gain_it_implies():
    """fix-tanh reads as gain 0.2, fan-in off in the stack's terms: the line
    said `gain 1/5 · fan-in off`, knobs the user never turned."""
    from traintop.engine.viewer.run_state import RunState
    from traintop.tui.status_line import status_text

    messages, *_ = one_step("fix-tanh")
    state = RunState()
    for m in messages:
        state.apply(m)
    line = status_text(state)
    assert "stage fix-tanh" in line and "gain" not in line and "fan-in" not in line
    assert "BatchNorm off" in line
