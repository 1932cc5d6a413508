"""Every activation a model uses (issue 23, item 3): Hugging Face-style classes
recognised without transformers, a user's own by watch(activations=...), any
other stateless one by its curve; a module called several times in one forward
measured over all its calls; LSTM/GRU/RNN outputs; a model with none says so.
Real models built here; every figure against a direct torch computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.engine.activations import classify, recognise
from traintop.engine.feed.messages import RunStarted, Steps
from traintop.engine.recording.opener import load

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ----- models ------------------------------------------------------------------------
class NewGELUActivation(nn.Module):
    """Hugging Face transformers' GPT-2 activation (activations.py), copied: not
    a subclass of nn.GELU."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                           * (x + 0.044715 * torch.pow(x, 3.0))))


class MySwish(nn.Module):
    """A user's own SiLU under a name no table holds: found by its curve."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class ScaledTanh(nn.Module):
    """An activation with a parameter: never probed, named by the user."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return torch.tanh(self.scale * x)


class HFMLP(nn.Module):
    def __init__(self, d: int, act: nn.Module):
        super().__init__()
        self.c_fc, self.act, self.c_proj = nn.Linear(d, 4 * d), act, nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class HFBlock(nn.Module):
    def __init__(self, d: int, act):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = HFMLP(d, act())

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class HFGPT(nn.Module):
    """A GPT-2-shaped stack: transformer.h.N.mlp.act, tied embeddings."""

    def __init__(self, vocab=23, d=16, layers=2, act=NewGELUActivation):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), h=nn.ModuleList([HFBlock(d, act) for _ in range(layers)]),
            ln_f=nn.LayerNorm(d)))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: one ReLU (in place) called twice."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class SmallResNet(nn.Module):
    def __init__(self, c: int = 8, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(c))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.layer1(self.stem(x)).mean(dim=(2, 3)))


class LSTMLM(nn.Module):
    def __init__(self, vocab=19, d=12, hidden=24):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx):
        return self.head(self.rnn(self.emb(idx))[0])


# ----- helpers -----------------------------------------------------------------------
def snapshots(path):
    messages = load(path).messages
    info = next(m.info for m in messages if isinstance(m, RunStarted))
    snaps = [r.stats for m in messages if isinstance(m, Steps) for r in m.results if r.stats]
    return info, snaps


def units(t: torch.Tensor) -> torch.Tensor:
    """(observations, units), as watch() counts them."""
    if t.ndim >= 4:
        t = t.movedim(1, -1)
    return t.reshape(-1, t.shape[-1])


def capture(module, outs: list, grads: list, pick=lambda o: o):
    """The test's own record of every call's output and its gradient."""
    def hook(m, inputs, out):
        out = pick(out)
        if torch.is_grad_enabled() and out.requires_grad:
            outs.append((inputs[0].detach().clone(), out.detach().clone()))
            out.register_hook(lambda g: grads.append(g.detach().clone()))
    return module.register_forward_hook(hook)


def close(a: float, b: float, rel: float = 1e-5) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-7)


def train_one(model, path, batch, loss_of, **kw):
    """One measured step; returns the watcher."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = watch(model, path, optimizer=opt, every=5, **kw)
    loss = loss_of(model, batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    w.step(loss)
    w.close()
    return w


# ----- recognition ---------------------------------------------------------------------
def test_hf_gelu_of_a_gpt_block_is_measured_as_torch_computes_it(tmp_path):
    torch.manual_seed(0)
    model = HFGPT()
    with torch.no_grad():   # push part of block 0's MLP deep into GELU's flat tail: dead units
        model.transformer.h[0].mlp.c_fc.bias[:5] = -40.0
    acts = {k: ([], []) for k in range(2)}
    for k in range(2):
        capture(model.transformer.h[k].mlp.act, *acts[k])
    idx = torch.randint(0, 23, (4, 10), generator=torch.Generator().manual_seed(1))
    train_one(model, tmp_path / "hf.jsonl", idx,
              lambda m, x: F.cross_entropy(m(x)[:, :-1].reshape(-1, 23), x[:, 1:].reshape(-1)))
    info, (snap,) = snapshots(tmp_path / "hf.jsonl")
    assert [(l.name, l.kind, l.fam) for l in snap.layers] == [
        (f"transformer.h.{k}.mlp.act", "NewGELUActivation", "gelu") for k in range(2)]
    for k, l in enumerate(snap.layers):
        (x, t), = acts[k][0]
        (g,) = acts[k][1]
        assert l.units == 64 and l.per_unit == 40
        assert close(l.mean, t.mean().item()) and close(l.std, t.std().item())
        assert close(l.saturation_pct, 100.0 * (t < 0).float().mean().item())
        # dead: input below -3 (GELU's flat tail) on every example and position
        assert l.dead == int((units(x).amax(dim=0) < -3.0).sum()) == (5 if k == 0 else 0)
        assert close(l.grad_std, g.std().item()) and close(l.grad_mean, g.mean().item(), 1e-4)
    # The embedding is tied to the output layer: its gradient is dense, not sparse.
    assert info.config["sparse_params"] == []
    assert "no_activations" not in info.config


@pytest.mark.parametrize("name, family", [
    ("GELUActivation", "gelu"), ("FastGELUActivation", "gelu"), ("QuickGELUActivation", "gelu"),
    ("GELUTanh", "gelu"), ("PytorchGELUTanh", "gelu"), ("SiLUActivation", "gelu"),
    ("MishActivation", "gelu"), ("ReLUSquaredActivation", "relu"), ("NewGELUActivation", "gelu")])
def test_other_libraries_classes_by_name(name, family):
    cls = type(name, (nn.Module,), {"forward": lambda self, x: x})   # a curve of no family
    assert recognise(cls())[:1] == (family,) and recognise(cls())[2] == "name"


@pytest.mark.parametrize("f, family", [
    (lambda x: x * torch.sigmoid(x), "gelu"), (lambda x: x * torch.sigmoid(1.702 * x), "gelu"),
    (lambda x: F.gelu(x, approximate="tanh"), "gelu"), (F.mish, "gelu"), (F.elu, "gelu"),
    (lambda x: torch.relu(x) ** 2, "relu"), (F.relu, "relu"), (lambda x: F.leaky_relu(x, 0.2), "relu"),
    (torch.tanh, "tanh"), (torch.sigmoid, "sigmoid"), (F.softsign, None),   # softsign: ends 0.89
    (lambda x: x, None), (lambda x: 2 * x, None), (lambda x: x.abs(), None),
    (lambda x: F.dropout(x, 0.5), None)])
def test_the_curve_of_a_stateless_module(f, family):
    cls = type("Unnamed", (nn.Module,), {"forward": lambda self, x: f(x)})
    found = recognise(cls())
    assert (found[0] if found else None) == family
    if found:
        assert found[2] == "probe"


def test_the_probe_leaves_the_random_stream_alone():
    cls = type("Noisy", (nn.Module,), {"forward": lambda self, x: x + torch.rand_like(x)})
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    assert recognise(cls()) is None
    assert torch.equal(torch.rand(3), expected)


def test_the_dead_threshold_from_the_curve():
    x = torch.linspace(-8, 8, 161, dtype=torch.float64)
    assert classify(x, F.silu(x))[1] == pytest.approx(-6.3, abs=0.2)    # slope under 1%
    assert classify(x, F.gelu(x))[1] == pytest.approx(-3.0, abs=0.2)     # the table: -3


def test_a_users_own_class_by_name_or_class_and_none_to_skip(tmp_path):
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), ScaledTanh(), nn.Linear(16, 16), MySwish(),
                             nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))

    x, y = torch.randn(32, 6), torch.arange(32) % 3
    loss = lambda m, b: F.cross_entropy(m(b[0]), b[1])   # noqa: E731
    layers = {}
    for key, table in (("none", None), ("name", {"ScaledTanh": "tanh"}),
                       ("class", {ScaledTanh: "tanh", nn.ReLU: None})):
        train_one(model(), tmp_path / f"{key}.jsonl", (x, y), loss, activations=table)
        _, (snap,) = snapshots(tmp_path / f"{key}.jsonl")
        layers[key] = [(l.name, l.kind, l.fam) for l in snap.layers]
    swish, relu = ("3", "MySwish", "gelu"), ("5", "ReLU", "relu")
    assert layers["none"] == [swish, relu]         # the parameter's owner is never probed
    assert layers["name"] == [("1", "ScaledTanh", "tanh"), swish, relu]
    assert layers["class"] == [("1", "ScaledTanh", "tanh"), swish]
    # a class of the table covers its subclasses
    sub = type("ScaledTanh2", (ScaledTanh,), {})
    assert recognise(sub(), {ScaledTanh: "tanh"})[:1] == ("tanh",)
    assert recognise(sub(), {"ScaledTanh": "tanh"}) is None           # a name is exact
    with pytest.raises(ValueError, match="one of tanh, sigmoid, relu, gelu"):
        watch(model(), tmp_path / "bad.jsonl", activations={"ScaledTanh": "swish"})


# ----- a module called twice -----------------------------------------------------------
def test_a_relu_called_twice_is_measured_over_both_calls(tmp_path):
    torch.manual_seed(0)
    model = SmallResNet()
    with torch.no_grad():   # two channels off after bn1, on again after the residual add
        model.layer1[0].bn1.bias[:2] = -30.0
    outs, grads = [], []
    capture(model.layer1[0].relu, outs, grads)
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6) % 5
    train_one(model, tmp_path / "resnet.jsonl", (x, y), lambda m, b: F.cross_entropy(m(b[0]), b[1]))
    _, (snap,) = snapshots(tmp_path / "resnet.jsonl")
    (l,) = snap.layers
    assert (l.name, l.kind, l.fam) == ("layer1.0.relu", "ReLU", "relu")
    assert len(outs) == 2 and len(grads) == 2                # the test saw both calls
    t = torch.cat([units(o) for _, o in outs])               # (2 x N*H*W, C)
    g = torch.cat([gr.reshape(-1) for gr in grads])
    assert l.units == 8 and l.per_unit == t.shape[0] == 2 * 6 * 8 * 8
    assert close(l.mean, t.mean().item()) and close(l.std, t.std().item())
    assert close(l.saturation_pct, 100.0 * (t <= 0).float().mean().item())
    # dead: zero on every example and position of BOTH calls; the first call alone
    # has the two channels dead, the residual add brings them back
    first = units(outs[0][1])
    assert int((first.amax(dim=0) <= 0).sum()) == 2
    assert l.dead == int((t.amax(dim=0) <= 0).sum()) == 0
    assert close(l.grad_std, g.std().item()) and close(l.grad_mean, g.mean().item(), 1e-4)
    # the histogram spans both calls and holds all their values
    assert l.hist.lo == pytest.approx(t.min().item()) and l.hist.hi == pytest.approx(t.max().item())
    width = (l.hist.hi - l.hist.lo) / len(l.hist.density)
    assert sum(l.hist.density) * width == pytest.approx(1.0, rel=1e-4)
    assert l.grad_hist.lo == pytest.approx(g.min().item())


# ----- recurrent layers ---------------------------------------------------------------
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_a_recurrent_lm_records_its_output(tmp_path, cell):
    torch.manual_seed(0)
    model = LSTMLM()
    if cell != "LSTM":
        model.rnn = getattr(nn, cell)(12, 24, num_layers=2, batch_first=True)
    outs, grads = [], []
    capture(model.rnn, outs, grads, pick=lambda o: o[0])
    idx = torch.randint(0, 19, (5, 9), generator=torch.Generator().manual_seed(1))
    train_one(model, tmp_path / "lm.jsonl", idx,
              lambda m, x: F.cross_entropy(m(x)[:, :-1].reshape(-1, 19), x[:, 1:].reshape(-1)))
    info, (snap,) = snapshots(tmp_path / "lm.jsonl")
    l, *gates = snap.layers
    assert (l.name, l.kind, l.fam) == ("rnn", cell, "tanh")
    names = {"LSTM": ("input", "forget", "cell", "output"), "GRU": ("reset", "update", "new"),
             "RNN": ()}[cell]
    assert [g.name for g in gates] == [f"rnn.l{k}.{n}_gate" for k in range(2) for n in names]
    (_, h), = outs
    (g,) = grads
    t = units(h)
    assert l.units == 24 and l.per_unit == 45
    assert close(l.mean, t.mean().item()) and close(l.std, t.std().item())
    assert close(l.saturation_pct, 100.0 * (t.abs() > 0.97).float().mean().item())
    assert close(l.grad_std, g.std().item())
    assert info.config["sparse_params"] == ["emb.weight"]       # untied: only the batch's rows


def test_a_packed_sequence_and_a_relu_rnn(tmp_path):
    torch.manual_seed(0)
    rnn = nn.RNN(4, 6, nonlinearity="relu")
    head = nn.Linear(6, 2)
    model = nn.ModuleDict({"rnn": rnn, "head": head})
    seqs = [torch.randn(n, 4) for n in (5, 3, 2)]
    packed = nn.utils.rnn.pack_sequence(seqs)
    outs = []
    rnn.register_forward_hook(lambda m, i, o: outs.append(o[0].data.detach().clone()))

    def loss_of(m, p):
        return m["head"](m["rnn"](p)[0].data).pow(2).mean()

    train_one(model, tmp_path / "packed.jsonl", packed, loss_of)
    _, (snap,) = snapshots(tmp_path / "packed.jsonl")
    (l,) = snap.layers
    (t,) = outs
    assert (l.name, l.kind, l.fam) == ("rnn", "RNN", "relu")
    assert l.per_unit == 10 and close(l.mean, t.mean().item())
    assert close(l.saturation_pct, 100.0 * (t <= 0).float().mean().item())


# ----- none recognised -----------------------------------------------------------------
def test_a_model_with_no_activation_says_which_module_types_it_has(tmp_path):
    from traintop.tui.saturation_pane import no_activation_text

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(12, 8), nn.LayerNorm(8),
                          nn.Dropout(0.1), nn.Linear(8, 11))
    x = torch.randint(0, 11, (16, 3))
    train_one(model, tmp_path / "none.jsonl", x,
              lambda m, b: F.cross_entropy(m(b), b[:, 0]))
    info, (snap,) = snapshots(tmp_path / "none.jsonl")
    assert snap.layers == ()
    assert info.config["no_activations"] == "Embedding, Flatten, Linear, LayerNorm, Dropout"
    words = no_activation_text(SimpleNamespace(info=info))
    assert "no activation" in words[0] and "Embedding, Flatten, Linear, LayerNorm, Dropout" \
        in words[0] and "activations=" in words[0]
    assert no_activation_text(SimpleNamespace(info=None)) is None


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_the_gates_recomputed_on_a_measured_step(tmp_path, cell):
    """rnn.l0.input_gate ...: from torch's own hidden sequence (the RNN's output),
    the gates of every step computed here, against the recorded figures."""
    torch.manual_seed(0)
    model = LSTMLM()
    model.rnn = getattr(nn, cell)(12, 24, num_layers=1, batch_first=True)
    outs = []
    model.rnn.register_forward_hook(
        lambda m, i, o: outs.append((i[0].detach().clone(), o[0].detach().clone())))
    idx = torch.randint(0, 19, (5, 9), generator=torch.Generator().manual_seed(1))
    rnn = model.rnn
    weights = [p.detach().clone() for p in (rnn.weight_ih_l0, rnn.weight_hh_l0,
                                            rnn.bias_ih_l0, rnn.bias_hh_l0)]
    train_one(model, tmp_path / "gates.jsonl", idx,
              lambda m, x: F.cross_entropy(m(x)[:, :-1].reshape(-1, 19), x[:, 1:].reshape(-1)))
    _, (snap,) = snapshots(tmp_path / "gates.jsonl")
    (x, h), = outs                                            # (B, T, I), (B, T, H)
    w_ih, w_hh, b_ih, b_hh = weights
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)   # h_{t-1}
    gi, gh = F.linear(x, w_ih, b_ih), F.linear(prev, w_hh, b_hh)
    if cell == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        expected = {"input_gate": i.sigmoid(), "forget_gate": f.sigmoid(),
                    "cell_gate": g.tanh(), "output_gate": o.sigmoid()}
    else:
        (ir, iz, in_), (hr, hz, hn) = gi.chunk(3, dim=-1), gh.chunk(3, dim=-1)
        r = (ir + hr).sigmoid()
        expected = {"reset_gate": r, "update_gate": (iz + hz).sigmoid(),
                    "new_gate": (in_ + r * hn).tanh()}
    gates = {l.name.removeprefix("rnn.l0."): l for l in snap.layers if l.name != "rnn"}
    assert list(gates) == list(expected)
    for name, v in expected.items():
        l = gates[name]
        fam = "tanh" if name in ("cell_gate", "new_gate") else "sigmoid"
        assert l.fam == fam and l.kind == cell and l.units == 24 and l.per_unit == 45
        assert close(l.mean, v.mean().item(), 1e-4) and close(l.std, v.std().item(), 1e-4)
        a = v.abs() if fam == "tanh" else (2 * v - 1).abs()
        assert close(l.saturation_pct, 100.0 * (a > 0.97).float().mean().item())
        assert math.isnan(l.grad_std)                       # no gradient: recomputed
