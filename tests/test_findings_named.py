"""Findings in the model's terms (issue 23, item 4): every finding, pane mark and
CSV row of a watched model names the module path; depth rules only along a
chain of one module's layers; embeddings' grad:data judged as sparse; one
outlier threshold for the weights table and the grad-data-outlier rule.
Real models built here, trained a step under watch()."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.commands import cli
from traintop.engine.export.tables import write_csv
from traintop.engine.feed.messages import RunStarted, Steps
from traintop.engine.health.monitor import diagnose
from traintop.engine.health.rules import grad_data_outliers
from traintop.engine.recording.opener import load
from traintop.engine.results import Histogram, StatsSnapshot, WeightStats
from traintop.tui.health_marks import layer_marks
from traintop.tui.weights_pane import outlier_factors, outliers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
INDEX = re.compile(r"\blayers? \d")     # the old shapes: "layer 8 (Tanh)", "layers 11-41"


class Net(nn.Module):
    def __init__(self, gain: float, depth: int = 4, width: int = 32):
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(8, width), nn.Tanh()]
        for _ in range(depth - 1):
            mods += [nn.Linear(width, width), nn.Tanh()]
        self.net = nn.Sequential(*mods, nn.Linear(width, 3))
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    m.weight *= gain

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(d, 4 * d), act=nn.ReLU(),
                                      c_proj=nn.Linear(4 * d, d)))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        m = self.mlp
        return x + m.c_proj(m.act(m.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    """GPT-2 with ReLU (activation_function="relu"): transformer.h.N.mlp.act."""

    def __init__(self, vocab=29, d=16, layers=4, tied=True):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), h=nn.ModuleList([Block(d) for _ in range(layers)]),
            ln_f=nn.LayerNorm(d)))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def run(model, path, batch, loss_of, steps=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with watch(model, path, optimizer=opt, every=5) as w:
        for _ in range(steps):
            loss = loss_of(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    messages = load(path).messages
    info = next(m.info for m in messages if isinstance(m, RunStarted))
    snap = [r.stats for m in messages if isinstance(m, Steps) for r in m.results if r.stats][-1]
    return info, snap


def mlp_run(path, gain):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.arange(64) % 3
    return run(Net(gain), path, (x, y), lambda m, b: F.cross_entropy(m(b[0]), b[1]))


def gpt_run(path, tied=True, dead_block=1, vocab=29, batch=8):
    torch.manual_seed(0)
    model = GPT(vocab=vocab, tied=tied)
    with torch.no_grad():
        for k, block in enumerate(model.transformer.h):              # std shrinks block by block
            block.mlp.c_fc.weight *= 0.3 ** k
            block.mlp.c_fc.bias.zero_()
        model.transformer.h[dead_block].mlp.c_fc.bias[:6] = -50.0    # 6 units off everywhere
    idx = torch.randint(0, vocab, (batch, 12), generator=torch.Generator().manual_seed(1))
    return run(model, path, idx, lambda m, x: F.cross_entropy(m(x)[:, :-1].reshape(-1, vocab),
                                                              x[:, 1:].reshape(-1)))


def test_findings_of_an_mlp_name_its_modules(tmp_path, capsys):
    info, snap = mlp_run(tmp_path / "hot.jsonl", gain=6.0)
    found = diagnose(info, snap)
    sat = {f.where: f for f in found if f.rule == "tanh-saturation"}
    assert set(sat) == {"net.1 (Tanh)", "net.3 (Tanh)", "net.5 (Tanh)", "net.7 (Tanh)"}
    assert all(f.severity == "error" for f in sat.values())
    assert not [f for f in found if INDEX.search(f.where) or INDEX.search(f.message)]
    # replay --json carries the same
    capsys.readouterr()
    assert cli.main(["replay", str(tmp_path / "hot.jsonl"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {f["where"] for f in doc["health"] if f["rule"] == "tanh-saturation"} == set(sat)


def test_a_depth_trend_along_a_sequential_is_a_range_of_paths(tmp_path):
    info, snap = mlp_run(tmp_path / "cold.jsonl", gain=0.3)
    (shrink,) = [f for f in diagnose(info, snap) if f.rule == "activation-shrink"]
    assert shrink.where == "net.1..net.7"
    assert "at net.1 to" in shrink.message and "at net.7 (x" in shrink.message
    assert not INDEX.search(shrink.message)
    # the panes mark every layer of the range, by name
    names = {l.index: l.name for l in snap.layers}
    assert set(layer_marks([shrink], list(names), names)) == set(names)


def test_a_gpt_names_its_dead_relu_and_compares_no_blocks(tmp_path):
    info, snap = gpt_run(tmp_path / "gpt.jsonl")
    names = [l.name for l in snap.layers]
    assert names == [f"transformer.h.{k}.mlp.act" for k in range(4)]
    stds = [l.std for l in snap.layers]
    # the activations shrink block by block (x0.63 per block: across the blocks the
    # old rule, under x0.8, said "activation-shrink") ...
    assert (stds[3] / stds[0]) ** (1 / 3) < 0.8
    found = diagnose(info, snap)
    # ... but the blocks, with residual adds and LayerNorm between them, are no chain
    assert not [f for f in found if f.rule in ("activation-shrink", "activation-grow",
                                               "gradient-vanish", "gradient-explode")]
    (dead,) = [f for f in found if f.rule == "dead-neurons"]
    assert dead.where == "transformer.h.1.mlp.act (ReLU)"
    assert dead.message.startswith("6 of 64 units are zero")
    assert all(not INDEX.search(f.where) for f in found)
    k = names.index("transformer.h.1.mlp.act")
    assert layer_marks(found, list(range(len(names))),
                       {l.index: l.name for l in snap.layers}) == {snap.layers[k].index: "warn"}


def test_layers_csv_names_each_layer_and_keeps_its_index(tmp_path):
    path = tmp_path / "gpt.jsonl"
    _, snap = gpt_run(path)
    write_csv(path, tmp_path / "csv")
    with open(tmp_path / "csv" / "layers.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header[:4] == ["run", "step", "layer", "kind"] and header[-1] == "name"
    assert [(int(r[2]), r[-1], r[3]) for r in rows] == [(l.index, l.name, "ReLU")
                                                        for l in snap.layers]


def weight(name: str, ratio: float) -> WeightStats:
    return WeightStats(name=name, shape=(4, 4), grad_mean=0.0, grad_std=ratio,
                       grad_data_ratio=ratio, hist=Histogram(0.0, 1.0, (1.0,)))


def test_the_weights_table_flags_what_the_rule_judges():
    """One threshold: the rule's factor against the others' median, 10x either way."""
    ratios = {"a": 1.0, "b": 1.2, "c": 0.9, "d": 1.1, "e": 5.0, "f": 15.0, "g": 0.06}
    ws = [weight(n, r) for n, r in ratios.items()]
    snap = StatsSnapshot(step=3, loss=1.0, lr=0.1, layers=(), weights=tuple(ws),
                         update_ratio_log10=())
    rule = {f.where.split()[1] for f in grad_data_outliers(snap, lecture=False)}
    table = {ws[k].name for k in outliers(ws)}
    assert rule == table == {"f", "g"}                 # 5x: neither; 15x and 1/17x: both
    factors = outlier_factors(ws)
    assert factors[5] == pytest.approx(15.0 / 1.05) and factors[6] < 0.1


def test_an_embedding_is_judged_as_sparse(tmp_path):
    """An untied embedding's gradient touches only the batch's rows: a low grad:data
    by design, neither an outlier nor in the others' median; a tied one is dense."""
    _, tied = gpt_run(tmp_path / "tied.jsonl")
    # a vocabulary of 2,000, a batch of 24 tokens: about 1% of the rows move
    info, snap = gpt_run(tmp_path / "untied.jsonl", tied=False, vocab=2000, batch=2)
    assert info.config["sparse_params"] == ["transformer.wte.weight"]
    emb = next(w for w in snap.weights if w.name == "transformer.wte.weight")
    others = sorted(w.grad_data_ratio for w in snap.weights if w is not emb)
    assert emb.grad_data_ratio < others[len(others) // 2] / 10      # far below, yet:
    assert "transformer.wte.weight" in {f.where.split()[1] for f in
                                        grad_data_outliers(snap, lecture=False)}
    assert not [f for f in diagnose(info, snap) if "wte" in f.where]
    assert not {snap.weights[k].name for k in outliers(snap.weights, ["transformer.wte.weight"])} \
        & {"transformer.wte.weight"}
    tied_info = next(m.info for m in load(tmp_path / "tied.jsonl").messages
                     if isinstance(m, RunStarted))
    assert tied_info.config["sparse_params"] == []


def test_the_lectures_stack_keeps_its_positions():
    """The lecture's layers have no module path: its findings read as before."""
    from traintop.engine.health.rules import layer_where, span_where
    from traintop.engine.results import LayerStats

    h = Histogram(0.0, 1.0, (1.0,))
    l2, l14 = (LayerStats(index=i, kind="Tanh", mean=0.0, std=0.5, saturation_pct=50.0,
                          dead=0, units=10, grad_mean=0.0, grad_std=1.0, hist=h, grad_hist=h)
               for i in (2, 14))
    assert layer_where(l2) == "layer 2 (Tanh)" and span_where(l2, l14) == "layers 2-14"
    assert math.isclose(l2.saturation_pct, 50.0)


def test_an_lstms_saturated_forget_gate_is_shown_not_judged(tmp_path):
    torch.manual_seed(0)
    emb, rnn, head = nn.Embedding(13, 8), nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 13)
    with torch.no_grad():
        rnn.bias_ih_l0[16:32] = 8.0          # forget gates held near 1: long memory
    model = nn.ModuleDict(dict(emb=emb, rnn=rnn, head=head))
    idx = torch.randint(0, 13, (6, 10), generator=torch.Generator().manual_seed(1))
    info, snap = run(model, tmp_path / "lstm.jsonl", idx,
                     lambda m, x: F.cross_entropy(m["head"](m["rnn"](m["emb"](x))[0]).reshape(-1, 13),
                                                  x.reshape(-1)))
    forget = next(l for l in snap.layers if l.name == "rnn.l0.forget_gate")
    assert forget.saturation_pct > 90 and forget.fam == "sigmoid"
    assert not [f for f in diagnose(info, snap) if "gate" in f.where]


class _Plot:
    """A stand-in for plotext that records the calls a pane's draw makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append(name)


@pytest.mark.parametrize("families, guide", [(["tanh"], True), (["sigmoid", "tanh"], True),
                                             (["relu", "tanh"], False), (["gelu"], False)])
def test_the_five_percent_guide_only_where_every_family_saturates(families, guide):
    from traintop.tui.saturation_pane import SaturationPane

    pane = SaturationPane(None)   # not mounted: its size is 0x0, its title's room the default
    pane.step, pane.families, pane.marks, pane.rest, pane.which = 3, families, {}, None, "all"
    pane.bars = [(k, f"net.{k}", 10.0, 0) for k in range(len(families))]
    plt = _Plot()
    pane.draw(plt, no_color=True)
    assert ("vertical_line" in plt.calls) == guide
