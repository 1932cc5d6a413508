"""watch() on a torch.nn copy of the lecture's stack gives the engine's own figures."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop.data.dataset import load_dataset
from traintop import watch
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Steps
from traintop.engine.model.layers import BatchNorm1d, Linear
from traintop.engine.recording.opener import load
from traintop.engine.training.trainer import Trainer


class TorchLinear(nn.Module):
    def __init__(self, layer: Linear):
        super().__init__()
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())

    def forward(self, x):
        out = x @ self.weight
        return out if self.bias is None else out + self.bias


class TorchBatchNorm(nn.Module):
    """The lecture's BatchNorm (unbiased batch variance), as a module."""

    def __init__(self, layer: BatchNorm1d):
        super().__init__()
        self.gamma = nn.Parameter(layer.gamma.detach().clone())
        self.beta = nn.Parameter(layer.beta.detach().clone())
        self.register_buffer("running_mean", layer.running_mean.clone())
        self.register_buffer("running_var", layer.running_var.clone())

    def forward(self, x):
        xmean, xvar = x.mean(0, keepdim=True), x.var(0, keepdim=True)
        out = self.gamma * ((x - xmean) / torch.sqrt(xvar + 1e-5)) + self.beta
        with torch.no_grad():
            self.running_mean = (0.9 * self.running_mean + 0.1 * xmean).reshape(-1)
            self.running_var = (0.9 * self.running_var + 0.1 * xvar).reshape(-1)
        return out


class LectureNet(nn.Module):
    def __init__(self, stack):
        super().__init__()
        self.C = nn.Parameter(stack.C.detach().clone())
        self.layers = nn.ModuleList(
            TorchLinear(l) if isinstance(l, Linear) else
            TorchBatchNorm(l) if isinstance(l, BatchNorm1d) else nn.Tanh()
            for l in stack.layers)

    def forward(self, X):
        x = self.C[X].view(X.shape[0], -1)
        for layer in self.layers:
            x = layer(x)
        return x


def close(a: float, b: float, rel: float = 1e-5, abs_: float = 1e-10) -> bool:
    return a == pytest.approx(b, rel=rel, abs=abs_)


def test_watch_matches_the_engine_on_the_lecture_stack(tmp_path):
    config = TrainConfig(steps=21, stats_every=10, n_hidden=32, depth=3)
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    net = LectureNet(trainer.stack)
    gen = torch.Generator().set_state(trainer.generator.get_state())   # same batches
    opt = torch.optim.SGD(net.parameters(), lr=config.lr)
    path = tmp_path / "lecture.jsonl"
    w = watch(net, path, optimizer=opt, every=10)
    train = trainer.dataset.train
    engine_snaps = {}
    for _ in range(config.steps):
        r = trainer.step()
        if r.stats:
            engine_snaps[r.step] = r.stats
        ix = torch.randint(0, len(train), (config.batch_size,), generator=gen)
        loss = F.cross_entropy(net(train.X[ix]), train.Y[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()

    results = [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]
    assert [r.step for r in results] == list(range(1, 22))
    ours = {r.step: r.stats for r in results if r.stats}
    assert sorted(ours) == [1, 10, 20]                    # step 1 and every 10th
    for step, snap in ours.items():
        ref = engine_snaps[step]
        # Step 1 is bit for bit; then SGD's fused update (p - lr*g in one op) and the
        # engine's two-op one round differently, so later steps agree to ~1e-6.
        assert snap.loss == ref.loss if step == 1 else close(snap.loss, ref.loss)
        assert [(l.index, l.kind) for l in snap.layers] == [(l.index, l.kind) for l in ref.layers]
        for a, b in zip(snap.layers, ref.layers):
            for f in ("mean", "std", "saturation_pct", "grad_mean", "grad_std"):
                assert close(getattr(a, f), getattr(b, f)), (step, a.index, f)
            assert (a.dead, a.units) == (b.dead, b.units)
            assert close(a.hist.lo, b.hist.lo) and close(a.hist.hi, b.hist.hi)
            assert sum(abs(x - y) for x, y in zip(a.hist.density, b.hist.density)) < 1e-3
            assert close(a.grad_hist.lo, b.grad_hist.lo, abs_=1e-12)
        assert [w.shape for w in snap.weights] == [w.shape for w in ref.weights]
        for a, b in zip(snap.weights, ref.weights):
            for f in ("grad_mean", "grad_std", "grad_data_ratio"):
                assert close(getattr(a, f), getattr(b, f), rel=1e-4, abs_=1e-9), (step, a.name, f)
        # Ours is the parameter's real change; the engine's is lr * grad: equal up to rounding.
        assert len(snap.update_ratio_log10) == len(ref.update_ratio_log10)
        for a, b in zip(snap.update_ratio_log10, ref.update_ratio_log10):
            assert math.isfinite(a) and abs(a - b) < 2e-3, (step, a, b)
