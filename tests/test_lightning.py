"""TraintopCallback for PyTorch Lightning against watch() in a plain loop: the same
model, seed and batches under accumulation, clipping and fp16 mixed precision give
the same steps, losses, lrs, gradients (unscaled, clipped) and update ratios; and
under bf16-mixed, where Lightning runs the closure inside optimizer.step."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import skip_unless_installed
from traintop import watch
from traintop.callback_support import with_framework
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.opener import load

skip_unless_installed("lightning", reason="lightning is not installed "
                      "(pip install 'traintop[lightning]')")

ACCUMULATE, CLIP, BATCH, BATCHES, LR = 4, 0.3, 8, 26, 0.05   # 26 batches: 7 steps, the last of 2


def make_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        net[0].weight *= 3            # large gradients: clipping bites on every step
    return net


def data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(BATCHES * BATCH, 6, generator=g) * 3
    return X, torch.arange(BATCHES * BATCH) % 3


def schedule(step: int) -> float:      # a per-step schedule: the recorded lr must be the one in force
    return 0.8 ** step


def scaler():
    # Lightning refuses precision="16-mixed" on the CPU; its plugin with a CPU GradScaler
    # runs the same fp16 path (scale the loss, unscale before clipping, skip on inf).
    return torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)


@functools.cache
def pl():
    """Lightning and the classes built on it, imported by the first test that
    trains (see skip_unless_installed)."""
    import lightning.pytorch as L
    from lightning.pytorch.plugins.precision import MixedPrecision
    from traintop.lightning import TraintopCallback

    class Module(L.LightningModule):
        def __init__(self, fail_at: int | None = None):
            super().__init__()
            self.net = make_net()
            self.fail_at = fail_at

        def training_step(self, batch, batch_idx):
            if batch_idx == self.fail_at:
                raise RuntimeError("the user's bug")
            x, y = batch
            return F.cross_entropy(self.net(x).float(), y)

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


    class Spy(TraintopCallback):
        """The grad_norm each step hands to watch(): checked here, whether or not the
        recording carries it yet."""

        def on_fit_start(self, trainer, pl_module):
            super().on_fit_start(trainer, pl_module)
            self.kept_clip_norm = self._plugin is not None    # Lightning's clip hands its norm over
            self.norms, step = [], self.watcher.step

            def spied(loss=None, grad_norm=None):
                self.norms.append(float(grad_norm))
                step(loss, grad_norm=grad_norm)
            self.watcher.step = spied

    return SimpleNamespace(L=L, MixedPrecision=MixedPrecision, TraintopCallback=TraintopCallback,
                           Module=Module, Spy=Spy)


def fit(path, module=None, precision="16-mixed", clip=CLIP, **options):
    X, Y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=BATCH)
    L, MixedPrecision = pl().L, pl().MixedPrecision
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accumulate_grad_batches=ACCUMULATE,
                        gradient_clip_val=clip,
                        # 16-mixed: the plugin with a CPU GradScaler (see scaler());
                        # bf16-mixed: autocast only, and the closure runs inside optimizer.step
                        **({"plugins": [MixedPrecision("16-mixed", "cpu", scaler=scaler())]}
                           if precision == "16-mixed" else {"precision": precision}),
                        callbacks=[pl().Spy(path, **options)])
    module = module or pl().Module()
    trainer.fit(module, loader)
    return trainer, module


def plain_loop(path, every, precision="16-mixed", clip=CLIP):
    """The same training written by hand, recorded by watch()."""
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    fp16 = precision == "16-mixed"
    amp = scaler() if fp16 else torch.amp.GradScaler("cpu", enabled=False)   # disabled: a no-op
    # the clip threshold and the scaler, as the callback passes them (where watch() takes them)
    w = watch(net, path, optimizer=opt, every=every,
              **with_framework({}, max_grad_norm=clip, scaler=amp if fp16 else None))
    X, Y = data()
    batches = list(zip(X.split(BATCH), Y.split(BATCH)))
    expected = []
    for start in range(0, len(batches), ACCUMULATE):
        losses = []
        for x, y in batches[start:start + ACCUMULATE]:
            with torch.autocast("cpu", dtype=torch.float16 if fp16 else torch.bfloat16):
                loss = F.cross_entropy(net(x).float(), y)
            amp.scale(loss / ACCUMULATE).backward()   # Lightning divides by the setting
            losses.append(loss.detach())
        amp.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip if clip else math.inf)
        lr = opt.param_groups[0]["lr"]
        grads = [p.grad.clone() for p in net.parameters()]
        amp.step(opt)
        amp.update()
        mean = torch.stack(losses).mean()
        w.step(mean, grad_norm=norm)
        expected.append({"loss": mean.item(), "lr": lr, "norm": norm.item(), "grads": grads,
                         "scale": amp.get_scale()})
        opt.zero_grad(set_to_none=True)
        sched.step()
    w.close()
    return expected


def results(path):
    return [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_lightning_records_as_watch_in_a_plain_loop(tmp_path, precision):
    trainer, module = fit(tmp_path / "pl.jsonl", precision=precision, every=2)
    expected = plain_loop(tmp_path / "plain.jsonl", every=2, precision=precision)
    got, want = results(tmp_path / "pl.jsonl"), results(tmp_path / "plain.jsonl")

    # one step per optimizer step: 26 micro-batches of 4 are 7 steps, not 26
    assert trainer.global_step == len(expected) == 7
    assert [r.step for r in got] == list(range(1, 8))
    # the true loss (not divided by 4), the mean over the step's micro-batches
    assert [r.loss for r in got] == pytest.approx([e["loss"] for e in expected], rel=1e-5)
    assert [r.loss for r in got] == pytest.approx([r.loss for r in want], rel=1e-5)
    assert got[0].loss > 1.0    # a quarter of it would be below
    # the lr in force at each step, not the scheduler's next value
    assert [r.lr for r in got] == pytest.approx([LR * schedule(k) for k in range(7)], rel=1e-6)
    assert [r.step for r in got if r.stats] == [r.step for r in want if r.stats] == [1, 2, 4, 6]
    for g, w in zip(got, want):
        if not g.stats:
            continue
        e = expected[g.step - 1]
        weights = [p for p in e["grads"] if p.ndim == 2]
        for ws, ww, grad in zip(g.stats.weights, w.stats.weights, weights):
            # unscaled and clipped: what the optimizer used (the scale is 1024 or less)
            assert ws.grad_std == pytest.approx(grad.std().item(), rel=1e-4)
            assert ws.grad_std == pytest.approx(ww.grad_std, rel=1e-4)
        clipped = math.sqrt(sum(float(p.pow(2).sum()) for p in e["grads"]))
        assert clipped == pytest.approx(CLIP, rel=1e-3) and e["norm"] > 1.2 * CLIP
        assert g.update_ratio_log10 == pytest.approx(w.update_ratio_log10, abs=1e-4)
        assert [(l.name, l.kind) for l in g.stats.layers] == [("net.1", "Tanh"), ("net.3", "ReLU")]
        for lg, lw in zip(g.stats.layers, w.stats.layers):
            assert lg.mean == pytest.approx(lw.mean, rel=1e-3, abs=1e-4)
            assert lg.std == pytest.approx(lw.std, rel=1e-3)
            assert lg.saturation_pct == pytest.approx(lw.saturation_pct, abs=0.5)
    # grad_norm: the norm before clipping, clip_grad_norm_'s return value
    spy = next(c for c in trainer.callbacks if isinstance(c, pl().Spy))
    assert spy.norms == pytest.approx([e["norm"] for e in expected], rel=1e-4)
    assert spy.kept_clip_norm and spy._plugin is None      # taken from the clip, handed back
    if not math.isnan(getattr(want[0], "grad_norm", math.nan)):   # watch() records the norm before clipping
        assert [r.grad_norm for r in got] == pytest.approx([e["norm"] for e in expected], rel=1e-4)
        assert [r.grad_norm for r in got] == pytest.approx([r.grad_norm for r in want], rel=1e-4)
    messages = load(tmp_path / "pl.jsonl").messages
    assert isinstance(messages[-1], Status) and messages[-1].finished
    assert not module.net[1]._forward_hooks     # torn down: the hooks are gone


def test_without_clipping_grad_norm_is_the_gradients_norm(tmp_path):
    """No clip to take it from: the callback's own pass over the gradients."""
    trainer, _ = fit(tmp_path / "pl.jsonl", precision="bf16-mixed", clip=None, every=100)
    expected = plain_loop(tmp_path / "plain.jsonl", every=100, precision="bf16-mixed", clip=None)
    spy = next(c for c in trainer.callbacks if isinstance(c, pl().Spy))
    assert not spy.kept_clip_norm
    assert spy.norms == pytest.approx([e["norm"] for e in expected], rel=1e-4)
    assert [r.loss for r in results(tmp_path / "pl.jsonl")] == pytest.approx(
        [e["loss"] for e in expected], rel=1e-5)


def test_an_exception_in_training_closes_the_recording(tmp_path):
    path = tmp_path / "fails.jsonl"
    with pytest.raises(RuntimeError, match="the user's bug"):
        fit(path, pl().Module(fail_at=9), every=1)     # after two optimizer steps
    messages = load(path).messages
    assert [r.step for r in results(path)] == [1, 2]
    assert isinstance(messages[-1], Status) and messages[-1].finished


def test_options_are_watch_options():
    TraintopCallback = pl().TraintopCallback
    with pytest.raises(TypeError, match="unknown option 'evry'"):
        TraintopCallback("x.jsonl", evry=10)
    cb = TraintopCallback("x.jsonl", every=5, writer_rank=None, meta={"trial": "a"})
    assert cb.options == {"every": 5, "writer_rank": None, "meta": {"trial": "a"}}


def test_without_lightning_one_line_names_the_package(tmp_path):
    """Importing traintop.lightning where lightning is not installed: an ImportError
    whose message says what to install (the frameworks hidden from the import)."""
    code = ("import sys\n"
            "for name in ('lightning', 'pytorch_lightning'):\n"
            "    sys.modules[name] = None\n"
            "import traintop\n"
            "assert 'torch' not in sys.modules\n"
            "try:\n"
            "    import traintop.lightning\n"
            "except ImportError as e:\n"
            "    print(e)\n"
            "assert 'torch' not in sys.modules   # it failed before loading anything heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("traintop.lightning needs lightning: "
                                  "pip install 'traintop[lightning]' (or pip install lightning)")
