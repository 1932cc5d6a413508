"""watch() on a small user model: figures against direct torch computations."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop.commands import cli

from traintop import watch
from traintop.engine.feed.messages import Event, Status, Steps
from traintop.engine.results import StepResult
from traintop.engine.recording.opener import load


def make_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 3))
    with torch.no_grad():
        model[2].weight *= 4    # push the tanh into saturation: figures worth checking
        model[4].weight *= 6
    return model


def saturated(kind: str, t: torch.Tensor) -> torch.Tensor:
    return {"ReLU": t <= 0, "Tanh": t.abs() > 0.97, "Sigmoid": (2 * t - 1).abs() > 0.97}[kind]


def test_watch_records_what_torch_computes(tmp_path):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    path = tmp_path / "user.jsonl"
    w = watch(model, path, optimizer=opt, every=3)
    outs: dict[int, torch.Tensor] = {}

    def keep(i):   # the test's own record of the activations
        def hook(module, inputs, out):
            if out.requires_grad:
                out.retain_grad()
                outs[i] = out
        return hook

    for i in (1, 3, 5):
        model[i].register_forward_hook(keep(i))
    X, Y = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3
    expected, losses = {}, []
    for step in range(1, 8):
        loss = F.cross_entropy(model(X), Y)
        opt.zero_grad()
        loss.backward()
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        w.step(loss)
        losses.append(loss.item())
        with torch.no_grad():
            model(X[:4])            # an eval forward without grad is not measured
        expected[step] = {
            "layers": {i: (outs[i].detach().clone(), outs[i].grad.clone()) for i in (1, 3, 5)},
            "weights": [(p.grad.clone(), p.detach().clone()) for p in model.parameters()
                        if p.ndim == 2],
            "update": [math.log10(((p.detach() - b).std() / p.detach().std()).item())
                       for p, b in zip(model.parameters(), before)],
        }
    # The forward hooks are there on measured steps only (step 8 is not one).
    assert not w.armed and len(model[1]._forward_hooks) == 1
    assert len(opt._optimizer_step_pre_hooks) == 1
    opt.step()
    w.close()
    assert len(model[1]._forward_hooks) == 1     # the watcher's hooks are gone, the test's stays
    assert len(opt._optimizer_step_pre_hooks) == 0

    messages = load(path).messages
    results = [r for m in messages if isinstance(m, Steps) for r in m.results]
    assert [r.step for r in results] == list(range(1, 8))
    assert [r.loss for r in results] == pytest.approx(losses, rel=1e-7)
    assert [r.step for r in results if r.stats] == [1, 3, 6]
    assert all(r.update_ratio_log10 == () for r in results if not r.stats)
    assert isinstance(messages[-1], Status) and messages[-1].finished

    for r in results:
        if not r.stats:
            continue
        snap, exp = r.stats, expected[r.step]
        assert snap.lr == 3e-3
        assert [(l.index, l.kind) for l in snap.layers] == [(1, "ReLU"), (3, "Tanh"),
                                                            (5, "Sigmoid")]
        for layer in snap.layers:
            t, g = exp["layers"][layer.index]
            sat = saturated(layer.kind, t)
            # means summed in float64 (torch's float32 sum loses digits on a
            # mean near zero: the Tanh's is 2e-4 of values near 1): the exact mean's
            assert layer.mean == pytest.approx(t.double().mean().item(), rel=1e-6, abs=1e-12)
            assert layer.std == pytest.approx(t.std().item(), rel=1e-6)
            assert layer.saturation_pct == pytest.approx(sat.float().mean().item() * 100)
            assert layer.dead == int(sat.all(dim=0).sum()) and layer.units == 32
            assert layer.grad_mean == pytest.approx(g.double().mean().item(), rel=1e-6,
                                                    abs=1e-15)
            assert layer.grad_std == pytest.approx(g.std().item(), rel=1e-6)
            hist, edges = torch.histogram(t, bins=100, density=True)
            assert layer.hist.lo == pytest.approx(edges[0].item())
            assert layer.hist.density == pytest.approx(hist.tolist(), rel=1e-5, abs=1e-6)
        tanh = snap.layers[1]
        assert tanh.saturation_pct > 1     # the test is not comparing zeros
        for ws, (g, p) in zip(snap.weights, exp["weights"]):
            assert ws.grad_std == pytest.approx(g.std().item(), rel=1e-6)
            assert ws.grad_data_ratio == pytest.approx((g.std() / p.std()).item(), rel=1e-6)
        assert [ws.name for ws in snap.weights] == ["0.weight", "2.weight", "4.weight",
                                                    "6.weight"]
        # Adam's real change, not lr * grad: the two differ by far here.
        assert snap.update_ratio_log10 == pytest.approx(exp["update"], abs=1e-5)


def test_replay_json_of_a_watched_model(tmp_path, capsys):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "w.jsonl.gz"
    X, Y = torch.randn(16, 8), torch.arange(16) % 3
    with watch(model, path, optimizer=opt, every=2) as w:
        for _ in range(5):
            loss = F.cross_entropy(model(X), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
        w.event("evaluate", "evaluate val 1.0", {"losses": {"val": 1.0}})
    capsys.readouterr()
    assert cli.main(["replay", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == 5 and doc["stats_step"] == 4
    assert [l["kind"] for l in doc["layers"]] == ["ReLU", "Tanh", "Sigmoid"]
    assert doc["eval"] == {"val": 1.0} and doc["expected_initial_loss"] is None
    # step 5 took no snapshot and measured no ratios: those of step 4, the
    # stats step, as recorded (they were {} before, a report without ratios)
    steps = [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]
    at_4 = next(r for r in steps if r.step == 4).update_ratio_log10
    assert not next(r for r in steps if r.step == 5).update_ratio_log10 and at_4
    assert doc["update_ratio_log10"] == {
        n: (r if math.isfinite(r) else None) for n, r in zip(dict(model.named_parameters()), at_4)}
    events = [m for m in load(path).messages if isinstance(m, Event)]
    assert events == [Event("evaluate", 5, "evaluate val 1.0", {"losses": {"val": 1.0}})]


def test_without_an_optimizer_and_bad_every(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="every"):
        watch(model, tmp_path / "x.jsonl", every=0)
    w = watch(model, tmp_path / "n.jsonl", every=1)
    loss = F.cross_entropy(model(torch.randn(4, 8)), torch.arange(4) % 3)
    loss.backward()
    w.step(loss.item())
    w.close()
    (r,) = [r for m in load(tmp_path / "n.jsonl").messages if isinstance(m, Steps)
            for r in m.results]
    assert r.stats is not None and all(math.isnan(x) for x in r.update_ratio_log10)
    assert r.stats.weights[0].grad_std == pytest.approx(model[0].weight.grad.std().item())


def test_cpu_histogram_is_torch_histc_bit_for_bit():
    """figures._histc_cpu (numpy's bincount of histc's own bin) against
    torch.histc itself: shapes a model gives (ReLU's zeros, a narrow range far
    from zero, ties on the edges, steps of equal values, one value, 1e30s)."""
    from traintop.engine.steps.stats import BINS
    from traintop.engine.watch.figures import _histc_cpu
    g = torch.Generator().manual_seed(0)
    cases = [torch.randn(8192, generator=g).relu(),
             torch.randn(4096, generator=g) * 1e-7 + 3.0,
             torch.randint(-50, 51, (5000,), generator=g).float() / 7,
             torch.rand(16384, generator=g) ** 9 * 1e30,
             torch.linspace(-1, 1, 1001), torch.full((33,), 2.5), torch.tensor([-0.0, 0.0]),
             torch.tensor([1.0, 2.0]), torch.randn(128, 10, generator=g)]
    cases += [torch.randn(int(n), generator=g) * float(s) for n, s in
              zip(torch.randint(1, 20000, (40,), generator=g),
                  torch.logspace(-20, 20, 40))]
    for t in cases:
        flat = t.reshape(-1).repeat(max(1, 4096 // t.numel()))   # numpy's way, not histc's
        lo, hi = flat.min().item(), flat.max().item()
        got = _histc_cpu(flat, lo, hi)
        want = torch.histc(flat, bins=BINS, min=lo, max=hi)
        assert got.dtype == want.dtype and torch.equal(got, want), (lo, hi, flat.numel())


def test_snapshot_densities_are_stats_histogram_bit_for_bit(tmp_path):
    """The snapshot packed straight from its flat layout (snapshot._build):
    its histograms, as the recording's line reads back and as the snapshot
    itself reads them, against stats._histogram's Python division bin by bin;
    whole counts (a zero-width range, a NaN one) and a sampled histogram's
    scaled ones, with the figures beside them in their places."""
    import numpy as np

    from traintop.engine.recording.encode import dumps, encode
    from traintop.engine.recording.snapshot_codec import unpack_snapshot
    from traintop.engine.steps.stats import BINS, _histogram
    from traintop.engine.watch.figures import ACT_WIDTH, GRAD_WIDTH, WEIGHT_WIDTH
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    w = watch(model, tmp_path / "d.jsonl", every=1)
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 900, (3, BINS), generator=g).double()
    counts[1] *= 1.5                    # a sampled histogram's: not whole
    counts[2] = 0.0
    act = [0.5, 0.25, 12.5, 1.0, -1.7, 2.3, *counts[0].tolist(), 0.0]
    grad = [1e-3, 2e-3, 0.25, 0.25, *counts[1].tolist(), 0.0]
    weight = [3e-3, 4e-3, 0.01, math.nan, math.nan, *counts[2].tolist(), 12.0, 0.0]
    update = [-3.0, -2.5]
    assert (len(act), len(grad), len(weight)) == (ACT_WIDTH, GRAD_WIDTH, WEIGHT_WIDTH)
    values = [float(np.float32(v)) for v in act + grad + weight + update]
    w._sizes[1] = (4, 8192)
    snap = w._build(7, 2.0, 0.1, np.array(values))
    line = json.loads(dumps(encode(Steps((StepResult(7, 2.0, 0.1, tuple(update), snap),)))))
    read = unpack_snapshot(line["x"]["0"])
    w.close()
    for s in (snap, read):
        (layer,), (weight_stats,) = s.layers, s.weights
        want = [(-1.7, 2.3, counts[0], 8192), (0.25, 0.25, counts[1], 8192),
                (math.nan, math.nan, counts[2], 12 - 12)]
        for got, (lo, hi, c, total) in zip((layer.hist, layer.grad_hist, weight_stats.hist),
                                           want):
            expect = _histogram(float(np.float32(lo)), float(np.float32(hi)), c.tolist(),
                                max(total, 1))
            assert np.array_equal(got.density, expect.density, equal_nan=True)
            assert (got.lo, got.hi) == (expect.lo, expect.hi) or math.isnan(got.lo)
        assert (layer.mean, layer.std, layer.saturation_pct, layer.dead, layer.units) == (
            0.5, 0.25, 12.5, 1, 4)
        assert (layer.grad_mean, layer.grad_std) == (float(np.float32(1e-3)),
                                                      float(np.float32(2e-3)))
        assert layer.absmax == float(np.float32(2.3)) and layer.nonfinite == 0.0
        assert (weight_stats.grad_data_ratio, weight_stats.grad_nonfinite) == (
            float(np.float32(0.01)), 12.0)
        assert s.update_ratio_log10 == (-3.0, -2.5)
    assert snap.layers == read.layers     # (a weight's NaN range never compares equal)
