"""What watching costs between snapshots (issue 23, item 6): an unmeasured
step carries no forward hook of traintop's, a torch.compile'd model compiles
once with no graph break and is not recompiled by the measured steps (they
run eagerly), and its figures are the eager run's."""

from __future__ import annotations

import math

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
