"""What watching costs between snapshots (issue 23, item 6): an unmeasured
step carries no forward hook of traintop's, a torch.compile'd model compiles
once with no graph break and is not recompiled by the measured steps (they
run eagerly), and its figures are the eager run's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.engine.feed.messages import Steps
from traintop.engine.recording.opener import load


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 10))


def batch(step: int):
    g = torch.Generator().manual_seed(step)
    return torch.randn(16, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def snapshots(path) -> dict:
    return {r.step: r.stats for m in load(path).messages if isinstance(m, Steps)
            for r in m.results if r.stats}


def test_an_unmeasured_step_runs_without_forward_hooks(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w = watch(model, tmp_path / "hooks.jsonl", optimizer=opt, every=4)
    hooked = []
    for step in range(1, 10):
        hooked.append(sum(len(m._forward_hooks) for m in model.modules()))
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()
    # Measured: steps 1, 4, 8 (ReLU and Tanh hooked); none on the others, none after close.
    assert hooked == [2, 0, 0, 2, 0, 0, 0, 2, 0]
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    assert sorted(snapshots(tmp_path / "hooks.jsonl")) == [1, 4, 8]


def test_a_compiled_model_compiles_once_without_graph_breaks(tmp_path):
    """backend="eager": dynamo's capture without inductor's code generation
    (the graph breaks and recompiles are dynamo's; this keeps the test quick)."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()

    def train(path, compiled: bool):
        model = mlp()
        called = torch.compile(model, backend="eager") if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        w = watch(called, path, optimizer=opt, every=5)
        frames = []
        for step in range(1, 13):
            x, y = batch(step)
            loss = F.cross_entropy(called(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
            frames.append(counters["frames"]["total"])
        w.close()
        return w, frames

    w, frames = train(tmp_path / "compiled.jsonl", compiled=True)
    # Step 1 is measured and runs eagerly; step 2 compiles the model once; the
    # measured steps 5 and 10 run eagerly again: no frame is compiled after step 2.
    assert frames == [0] + [1] * 11
    assert sum(counters["graph_break"].values()) == 0
    assert w.layer_names == {1: "1", 3: "3"}      # the model's names, not _orig_mod's
    train(tmp_path / "eager.jsonl", compiled=False)
    got, want = snapshots(tmp_path / "compiled.jsonl"), snapshots(tmp_path / "eager.jsonl")
    assert sorted(got) == sorted(want) == [1, 5, 10]
    for step in got:
        for a, b in zip(got[step].layers, want[step].layers):
            assert (a.name, a.kind) == (b.name, b.kind)
            assert a.std == pytest.approx(b.std, rel=1e-5)
            assert a.grad_std == pytest.approx(b.grad_std, rel=1e-4)
        assert all(math.isfinite(v) for v in got[step].update_ratio_log10)
    torch._dynamo.reset()


# ----- the measured step's cheaper ways give the same figures -----------------

def test_histograms_counted_together_are_histc_bit_for_bit():
    """figures.StepBatch (every CPU tensor of a step counted in one bincount,
    each offset by its own bins) against torch.histc tensor by tensor; one
    value, an empty range and non-finite values take their own ways (_hist).
    Its means and stds, computed in the same pass, against torch's."""
    import numpy as np

    from traintop.engine.steps.stats import BINS
    from traintop.engine.watch.figures import StepBatch, _hist
    g = torch.Generator().manual_seed(3)
    cases = [torch.randn(64, 128, generator=g).relu(), torch.randn(7, generator=g),
             torch.randn(300, generator=g) * 1e-7 + 3.0, torch.full((33,), 2.5),
             torch.tensor([1.0]), torch.linspace(-1, 1, 1001),
             torch.randint(-50, 51, (5000,), generator=g).float() / 7,
             torch.tensor([1.0, math.nan, 3.0, -2.0]), torch.tensor([math.inf, 0.5, 0.25]),
             torch.randn(500, generator=g) * 1e38]     # float32's bin overflows: histc's way
    cases += [torch.randn(int(n), generator=g) * float(s) for n, s in
              zip(torch.randint(1, 3000, (20,), generator=g), torch.logspace(-20, 20, 20))]
    batch = StepBatch()
    rows = [np.empty(BINS + 3, dtype=np.float32) for _ in cases]
    moments = np.empty((len(cases), 2))
    only = [torch.randn(100, generator=g) * 1e-3 + 7, torch.randn(1, generator=g)]
    alone = np.empty((len(only), 2))      # moments of tensors with no histogram, among them
    for k, (t, row) in enumerate(zip(cases, rows)):
        batch.add(t.numpy().reshape(-1).copy(), row, moments[k])
        if k < len(only):
            batch.add(only[k].numpy().copy(), None, alone[k])
    batch.run()
    assert not batch.jobs
    for t, row, (mean, std) in zip(cases, rows, moments.tolist()):
        (lo, hi, counts), bad = _hist(t)
        want = torch.cat([lo, hi, counts, bad.float().reshape(1)]).numpy()
        assert np.array_equal(row, want), t[:5]
        finite = t[torch.isfinite(t)]
        assert row[2:2 + BINS].tolist() == torch.histc(finite, bins=BINS, min=finite.min().item(),
                                                       max=finite.max().item()).tolist()
        if bool(torch.isfinite(t).all()):
            # (float32 squares would overflow or go subnormal: 1e-20 to 1e38 here)
            assert mean == pytest.approx(t.double().mean().item(), rel=1e-7, abs=1e-45)
            if t.numel() > 1:
                assert std == pytest.approx(t.double().std().item(), rel=1e-6, abs=1e-45)
            else:
                assert math.isnan(std)           # as Tensor.std of one value
        else:                                     # NaN or inf in it: NaN figures, as torch's
            assert math.isnan(std)
    assert alone[0].tolist() == pytest.approx([only[0].double().mean().item(),
                                               only[0].std().item()], rel=1e-6)
    assert math.isnan(alone[1][1])


def test_the_flat_ways_give_torchs_weight_figures_and_update_ratios(tmp_path):
    """The CPU's update ratios and weight figures (snapshot._flat_*, in the
    step's StepBatch), with an optimizer and without one (then the data's
    std is measured in the batch too), against torch's own on the tensors."""
    for with_optimizer in (True, False):
        torch.manual_seed(0)
        model = mlp()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        w = watch(model, tmp_path / f"{with_optimizer}.jsonl",
                  optimizer=opt if with_optimizer else None, every=1)
        assert w._flat is not None and w._flat_weights is not None
        for step in range(3):
            x, y = batch(step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            before = [p.detach().clone() for p in model.parameters()]
            grads = [p.grad.clone() for _, p in w.weights]
            opt.step()
            w.step(loss)
        w.close()
        snap = snapshots(tmp_path / f"{with_optimizer}.jsonl")[3]
        for ws, g, (_, p) in zip(snap.weights, grads, w.weights):
            assert ws.grad_mean == pytest.approx(g.double().mean().item(), rel=1e-6)
            assert ws.grad_std == pytest.approx(g.std().item(), rel=1e-6)
            assert ws.grad_data_ratio == pytest.approx((g.std() / p.std()).item(), rel=1e-6)
            assert (ws.nonfinite, ws.grad_nonfinite) == (0, 0)
        if with_optimizer:
            want = [((p.detach() - b).std() / p.detach().std()).log10().item()
                    for p, b in zip(model.parameters(), before)]
            assert list(snap.update_ratio_log10) == pytest.approx(want, abs=1e-5)
        else:
            assert all(math.isnan(u) for u in snap.update_ratio_log10)


def test_short_float_lists_pack_to_numpys_bytes():
    """packing._pack_few (the array module) against pack_floats' numpy way."""
    from traintop.engine.recording.packing import pack_floats, unpack_floats
    rng = np.random.default_rng(5)
    lists = [[1.0], [math.nan, math.inf, -math.inf, -0.0, 0.0], [1e300, 3.5e38, 1e-45],
             [None, 2.0]]
    lists += [(rng.standard_normal(3 * int(k)) * 10.0 ** rng.integers(-30, 30)).tolist()
              for k in rng.integers(1, 20, 30)]
    lists += [np.float32(rng.standard_normal(6)).astype(np.float64).tolist() for _ in range(5)]
    for values in lists:
        for columns in (1, 3):
            if len(values) % columns:
                continue
            packed = pack_floats(values, columns)
            assert packed == pack_floats(np.array(values, dtype=np.float64), columns)
            back = unpack_floats(packed, columns).ravel()
            want = np.array(values, dtype=np.float64)
            assert np.array_equal(back, want, equal_nan=True)


def test_a_recordings_histograms_are_the_counts_measured(tmp_path):
    """The snapshot's counts travel to the file as measured (carried, not
    searched back from the densities): read back, every density is the live
    one bit for bit and every histogram is stored as counts."""
    import json

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "counts.jsonl"
    w = watch(model, path, optimizer=opt, every=3)
    live = {}
    consume = w.recorder.consume

    def keep(message):
        if isinstance(message, Steps):
            live.update((r.step, r.stats) for r in message.results if r.stats)
        consume(message)
    w.recorder.consume = keep
    for step in range(1, 8):
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()
    got = snapshots(path)
    assert sorted(got) == sorted(live) == [1, 3, 6]
    for step, snap in got.items():
        hists = [h for l in snap.layers for h in (l.hist, l.grad_hist)] + [
            x.hist for x in snap.weights]
        want = [h for l in live[step].layers for h in (l.hist, l.grad_hist)] + [
            x.hist for x in live[step].weights]
        assert len(hists) == 7 and hists == want
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    packed = [h for d in lines if d.get("t") == "s" for x in d.get("x", {}).values()
              for h in x["hists"]]
    assert len(packed) == 21 and all(len(h) == 2 and h[1][0] == "v" for h in packed)


def test_bench_against_another_checkout_pairs_the_rounds(capsys, monkeypatch):
    """tools/bench_watch.py --against: another checkout's watch() (here this
    tree's own files, imported a second time) in the same rounds, each of
    this tree's variants paired with its twin; this tree's modules are
    put back after the other one is imported."""
    import runpy
    import sys
    from pathlib import Path

    import traintop.engine.watch.watcher as ours
    root = Path(__file__).resolve().parent.parent
    tool = runpy.run_path(str(root / "tools" / "bench_watch.py"))     # not as __main__
    theirs = tool["load_checkout"](root)
    assert theirs.__globals__["Watcher"] is not ours.Watcher      # a second import of the code
    assert sys.modules["traintop.engine.watch.watcher"] is ours     # ours back in place
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", ["bench_watch.py", "--no-compile", "--rounds", "2",
                                      "--steps", "2", "--against", str(root)])
    try:
        runpy.run_path(str(root / "tools" / "bench_watch.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for every in ("every=100000", "every=100", "every=10"):
        assert f"  {every} against " in out
        assert f"  {every}: this tree minus --against, paired rounds: median " in out
