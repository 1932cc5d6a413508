"""watch() on real architectures, end to end: the lecture MLP, a nanoGPT-style
GPT of 6 and 12 blocks and a small CNN are trained a few steps under watch();
each recording's figures match torch, `replay --json` and `attach --json`
carry names, families and health, and the app opens it on every tab."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from real_models import GPT, GPTConfig, gpt_batch, record, small_cnn
from traintop import watch
from traintop.commands import cli
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.recording.opener import load
from traintop.engine.watch import HIST_SAMPLE
from traintop.tui.app import TraintopApp
from tui_fakes import async_test, until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
KINDS = {"mlp": ("mlp", 6), "gpt6": ("gpt", 6), "gpt12": ("gpt", 12), "cnn": ("cnn", 6)}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    return {name: record(kind, tmp / f"{name}.jsonl", steps=8, every=3, layers=layers)
            for name, (kind, layers) in KINDS.items()}


def report(capsys, *argv) -> dict:
    capsys.readouterr()
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(KINDS))
def test_replay_and_attach_json_of_each_model(recordings, capsys, name):
    path = str(recordings[name])
    doc = report(capsys, "replay", path, "--json")
    assert report(capsys, "attach", path, "--json", "--quiet", "1") == doc
    assert doc["steps"] == 8 and doc["stats_step"] == 6 and "health" in doc
    assert all(l["name"] for l in doc["layers"]) and "gain" not in doc["config"]
    fams = {l["family"] for l in doc["layers"]}
    if name.startswith("gpt"):
        blocks = KINDS[name][1]
        assert [l["name"] for l in doc["layers"]] == [f"transformer.h.{k}.mlp.gelu"
                                                       for k in range(blocks)]
        assert fams == {"gelu"} and {l["units"] for l in doc["layers"]} == {256}
        assert all(l["share"] == "% negative regime (x<0)" for l in doc["layers"])
        # GELU's negative regime is no saturation: about half, and never judged as such.
        assert all(40 < l["saturation_pct"] < 60 for l in doc["layers"])
        assert not [f for f in doc["health"] if f["rule"] in ("tanh-saturation",
                                                              "dead-neurons")]
    elif name == "cnn":
        assert [(l["name"], l["units"]) for l in doc["layers"]] == [("2", 8), ("6", 16)]
        assert fams == {"relu"}
    else:
        assert fams == {"tanh"} and len(doc["layers"]) == 5
    for f in doc["health"]:   # advice for a watched model names no lecture option
        assert "--gain" not in f["message"] and "--lr" not in f["message"]


def test_units_are_channels_and_positions_are_observations(tmp_path):
    """ReLU after a conv: share of zeros and dead channels over (N, H, W);
    GELU in a (B, T, C) model: dead only below -3 on every example and position."""
    torch.manual_seed(0)
    cnn = small_cnn()
    with torch.no_grad():
        cnn[1].bias[:3] = -50.0     # BatchNorm2d shifts 3 channels far below zero: dead
    opt = torch.optim.SGD(cnn.parameters(), lr=0.01)
    outs = {}
    cnn[2].register_forward_hook(lambda m, i, o: outs.__setitem__("relu", o.detach()))
    x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 10
    with watch(cnn, tmp_path / "c.jsonl", optimizer=opt, every=1) as w:
        loss = F.cross_entropy(cnn(x), y)
        loss.backward()
        opt.step()
        w.step(loss)
    t = outs["relu"]                                             # (N, C, H, W)
    layer = next(r for m in load(tmp_path / "c.jsonl").messages if isinstance(m, Steps)
                 for r in m.results if r.stats).stats.layers[0]
    per_channel = (t <= 0).permute(1, 0, 2, 3).reshape(8, -1)
    assert layer.units == 8 and layer.per_unit == 16 * 16 * 16
    assert layer.dead == int(per_channel.all(dim=1).sum()) == 3
    assert layer.saturation_pct == pytest.approx((t <= 0).float().mean().item() * 100)

    cfg = GPTConfig(n_layer=1)
    gpt = GPT(cfg)
    with torch.no_grad():
        gpt.transformer.h[0].mlp.c_fc.bias[:5] = -20.0   # 5 features deep in GELU's tail
        gpt.transformer.h[0].mlp.c_fc.bias[5:10] = -1.0  # negative, but not flat: alive
    ins = {}
    gpt.transformer.h[0].mlp.gelu.register_forward_hook(
        lambda m, i, o: ins.update(x=i[0].detach(), t=o.detach()))
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
    with watch(gpt, tmp_path / "g.jsonl", optimizer=opt, every=1) as w:
        loss = gpt(*gpt_batch(torch.Generator().manual_seed(0), cfg, batch=4))
        loss.backward()
        opt.step()
        w.step(loss)
    layer = next(r for m in load(tmp_path / "g.jsonl").messages if isinstance(m, Steps)
                 for r in m.results if r.stats).stats.layers[0]
    x = ins["x"].reshape(-1, 256)
    assert layer.units == 256 and layer.per_unit == 4 * cfg.block_size
    assert layer.dead == int((x < -3).all(dim=0).sum()) == 5
    assert layer.saturation_pct == pytest.approx((ins["t"] < 0).float().mean().item() * 100)
    # 32,768 values: the histogram's shape comes from a sample, its range is exact.
    t = ins["t"].reshape(-1)
    assert t.numel() > HIST_SAMPLE
    assert (layer.hist.lo, layer.hist.hi) == pytest.approx((t.min().item(), t.max().item()))
    width = (layer.hist.hi - layer.hist.lo) / len(layer.hist.density)
    assert sum(layer.hist.density) * width == pytest.approx(1.0, rel=1e-5)
    exact, _ = torch.histogram(t, bins=100, density=True)
    l1 = sum(abs(a - b) for a, b in zip(layer.hist.density, exact.tolist())) * width
    assert l1 < 0.1          # sampling noise only: the same distribution


def test_watch_writes_a_status_with_the_rate_while_running(tmp_path, monkeypatch):
    import traintop.engine.watch.watcher as watch_module
    clock = [100.0]
    monkeypatch.setattr(watch_module.time, "monotonic", lambda: clock[0])
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "s.jsonl"
    w = watch(model, path, optimizer=opt, every=5)
    x, y = torch.randn(8, 4), torch.arange(8) % 2
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
        clock[0] += 0.05             # 20 steps a second
    w.close()
    statuses = [m for m in load(path).messages if isinstance(m, Status)]
    running = [s for s in statuses if s.running]
    assert len(running) >= 3
    assert all(s.steps_per_sec == pytest.approx(20.0, rel=0.15) for s in running)
    assert all(b.step - a.step <= 11 for a, b in zip(running, running[1:]))   # ~0.5 s apart
    assert statuses[-1].finished and not statuses[-1].running and statuses[-1].step == 40


@pytest.mark.parametrize("name, size", [("mlp", (120, 40)), ("gpt6", (120, 40)),
                                        ("gpt12", (120, 40)), ("gpt12", (80, 24)),
                                        ("cnn", (80, 24))])
@async_test
async def test_each_recording_opens_on_every_tab(recordings, name, size):
    app = TraintopApp(ReplaySource(recordings[name]), title="replay")
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.state.step == 8, what="the end of the recording")
        status = str(app.status_line.content)
        assert "gain" not in status and "BatchNorm" not in status and "n/a" not in status
        for tab in ("training", "activations", "weights", "health"):
            app.action_tab(tab)
            await pilot.pause()     # the tab laid out: every queue empty, the app idle
            app.redraw_all()
            await pilot.pause()
            if tab == "weights":   # nothing collapses: the plot and the table both show
                assert app.weights.plot.size.height >= 8
                assert app.weights.scroller.size.height >= 3
        for pane in (app.loss, app.ratio, app.saturation, app.activations, app.gradients):
            assert pane.redraws > 0
        assert not app.samples.display and not app.calibration.display
        await pilot.press("p")                       # the next set of layers
        await pilot.pause()
        assert app.activations.page == 1
        assert app.errors == 0


@async_test
async def test_the_weights_table_scrolls_from_the_keyboard(recordings):
    app = TraintopApp(ReplaySource(recordings["gpt12"]), title="replay")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == 8, what="the end")
        await pilot.press("3")
        await until(pilot, lambda: app.weights.scroller.max_scroll_y > 0, what="a long table")
        await pilot.press("j", "j", "pagedown")
        await until(pilot, lambda: app.weights.scroller.scroll_y == 12, what="scrolled")
        await pilot.press("k")
        await until(pilot, lambda: app.weights.scroller.scroll_y == 11, what="back one row")


def test_report_text_of_a_watched_model_reads_na(recordings):
    from traintop.engine.viewer.run_state import RunState
    from traintop.engine.report import report_text
    state = RunState()
    for m in load(recordings["gpt6"]).messages:
        state.apply(m)
    text = report_text(state.report())
    assert "(uniform guess n/a)" in text and "transformer.h.5.mlp.gelu" in text
    assert "negative:" in text and not math.isnan(state.report()["last_loss"])
