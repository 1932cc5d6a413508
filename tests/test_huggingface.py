"""TraintopCallback for the Hugging Face Trainer against watch() in a plain loop: a
tiny GPT-2 built from its config (no download, no tokenizer) under gradient
accumulation, max_grad_norm and bf16 gives the same steps, losses, lrs, gradients
(as the optimizer used them: clipped) and update ratios; grad_norm is the norm
before clipping."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from helpers import skip_unless_installed
from traintop import watch
from traintop.callback_support import with_framework
from traintop.engine.feed.messages import Status, Steps
from traintop.engine.recording.opener import load

skip_unless_installed("transformers", "accelerate", reason="transformers and accelerate are "
                      "not installed (pip install 'traintop[huggingface]')")

ACCUMULATE, CLIP, BATCH, EXAMPLES, T, LR = 2, 0.5, 4, 40, 12, 3e-3   # 5 optimizer steps


def make_model():
    torch.manual_seed(0)
    transformers = hf().transformers
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=T,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config)
    # transformers 5 finds no loss_type in the name GPT2LMHeadModel: the Trainer then
    # counts T, not T - 1, targets per row for num_items_in_batch and trains on
    # (T-1)/T of the mean loss. Named, it counts the shifted labels: the true mean.
    model.loss_type = "ForCausalLM"
    return model


def examples():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (EXAMPLES, T), generator=g)
    return [{"input_ids": row, "labels": row.clone()} for row in ids]


@functools.cache
def hf():
    """transformers and the callback built on it, imported by the first test
    that trains (see skip_unless_installed)."""
    import transformers
    from traintop.huggingface import TraintopCallback

    class Spy(TraintopCallback):
        """The grad_norm each step hands to watch(): checked here, whether or not the
        recording carries it yet."""

        def on_train_begin(self, *args, **kwargs):
            super().on_train_begin(*args, **kwargs)
            self.norms, step = [], self.watcher.step

            def spied(loss=None, grad_norm=None):
                self.norms.append(float(grad_norm))
                step(loss, grad_norm=grad_norm)
            self.watcher.step = spied

    return SimpleNamespace(transformers=transformers, Spy=Spy)


def train(tmp_path, path, **options):
    model = make_model()
    seen = []     # the batches the Trainer fed, in order: the plain loop replays them
    model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"].clone()) if m.training else None,
        with_kwargs=True)
    transformers = hf().transformers
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATE, max_grad_norm=CLIP, learning_rate=LR,
        num_train_epochs=1, lr_scheduler_type="linear", weight_decay=0.0, bf16=True,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=1000,
        disable_tqdm=True, dataloader_num_workers=0, seed=3)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=examples(),
                                   callbacks=[hf().Spy(path, **options)])
    trainer.train()
    return trainer, model, seen


def plain_loop(path, batches, steps, every):
    model = make_model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
    w = watch(model, path, optimizer=opt, every=every,
              **with_framework({}, max_grad_norm=CLIP))    # as the callback passes it
    expected = []
    for start in range(0, len(batches), ACCUMULATE):
        losses = []
        for ids in batches[start:start + ACCUMULATE]:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            (loss / ACCUMULATE).backward()
            losses.append(loss.detach().float())
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        grads = [p.grad.clone() for p in model.parameters()]
        lr = opt.param_groups[0]["lr"]
        opt.step()
        mean = torch.stack(losses).mean()
        w.step(mean, grad_norm=norm)
        expected.append({"loss": mean.item(), "lr": lr, "norm": norm.item(), "grads": grads})
        opt.zero_grad(set_to_none=True)
        sched.step()
    w.close()
    return expected


def results(path):
    return [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]


def test_trainer_records_as_watch_in_a_plain_loop(tmp_path):
    trainer, model, seen = train(tmp_path, tmp_path / "hf.jsonl", every=2)
    steps = trainer.state.global_step
    assert steps == 5 and len(seen) == 10
    expected = plain_loop(tmp_path / "plain.jsonl", seen, steps, every=2)
    got, want = results(tmp_path / "hf.jsonl"), results(tmp_path / "plain.jsonl")

    assert [r.step for r in got] == list(range(1, 6))      # 10 micro-batches, 5 steps
    # the true loss of each step, near ln 64 at the start: not halved by the accumulation
    assert 0.8 * math.log(64) < got[0].loss < 1.1 * math.log(64)
    assert [r.loss for r in got] == pytest.approx([e["loss"] for e in expected], rel=2e-3)
    assert [r.loss for r in got] == pytest.approx([r.loss for r in want], rel=2e-3)
    # the lr in force: the linear schedule's 3e-3 at step 1, not its next value
    assert [r.lr for r in got] == pytest.approx([LR * (1 - k / 5) for k in range(5)], rel=1e-6)
    assert [r.step for r in got if r.stats] == [r.step for r in want if r.stats] == [1, 2, 4]
    for g, w in zip(got, want):
        if not g.stats:
            continue
        e = expected[g.step - 1]
        assert e["norm"] > 1.5 * CLIP      # clipping bites: before and after differ
        for ws, ww in zip(g.stats.weights, w.stats.weights):
            assert ws.name == ww.name
            assert ws.grad_std == pytest.approx(ww.grad_std, rel=0.02)
        total = math.sqrt(sum(
            (ws.grad_std ** 2) for ws in g.stats.weights))   # the figures are the clipped ones
        assert total < CLIP
        assert g.update_ratio_log10 == pytest.approx(w.update_ratio_log10, abs=0.02)
        names = [l.name for l in g.stats.layers]
        assert names == [l.name for l in w.stats.layers] and any("act" in n for n in names)
        for lg, lw in zip(g.stats.layers, w.stats.layers):
            assert lg.std == pytest.approx(lw.std, rel=0.02)
    # grad_norm: the norm at the end of the step's last backward, clip_grad_norm_'s return
    spy = next(c for c in trainer.callback_handler.callbacks if isinstance(c, hf().Spy))
    assert spy.norms == pytest.approx([e["norm"] for e in expected], rel=0.02)
    if not math.isnan(getattr(want[0], "grad_norm", math.nan)):   # watch() records the norm before clipping
        assert [r.grad_norm for r in got] == pytest.approx([e["norm"] for e in expected], rel=0.02)
        assert [r.grad_norm for r in got] == pytest.approx([r.grad_norm for r in want], rel=0.02)
    messages = load(tmp_path / "hf.jsonl").messages
    assert isinstance(messages[-1], Status) and messages[-1].finished


def test_without_transformers_one_line_names_the_package():
    code = ("import sys\n"
            "sys.modules['transformers'] = None\n"
            "import traintop\n"
            "try:\n"
            "    import traintop.huggingface\n"
            "except ImportError as e:\n"
            "    print(e)\n"
            "assert 'torch' not in sys.modules   # it failed before loading anything heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("traintop.huggingface needs transformers: "
                                  "pip install 'traintop[huggingface]' (or pip install transformers)")


def test_a_run_that_raises_is_closed_at_exit(tmp_path):
    """The Trainer has no callback for an exception: the recording is closed whole
    when the interpreter exits (its steps written, a final status)."""
    path = tmp_path / "raised.jsonl"
    code = f"""
import types, torch
from torch import nn
from traintop.huggingface import TraintopCallback

class Out(dict):
    pass

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    def forward(self, x):
        return Out(loss=self.net(x).pow(2).mean())

torch.manual_seed(0)
model = Model()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
args = types.SimpleNamespace(world_size=1, average_tokens_across_devices=False, max_grad_norm=1.0)
cb = TraintopCallback({str(path)!r}, every=1)
cb.on_train_begin(args, None, None, model=model, optimizer=opt)
for step in range(3):
    model(torch.randn(16, 4))["loss"].backward()
    opt.step()
    cb.on_optimizer_step(args, None, None)
    opt.zero_grad()
raise RuntimeError("the user's bug")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "the user's bug" in out.stderr
    messages = load(path).messages
    assert [r.step for r in results(path)] == [1, 2, 3]
    assert all(math.isfinite(r.loss) and math.isfinite(r.grad_norm) for r in results(path)) \
        if hasattr(results(path)[0], "grad_norm") else True
    assert isinstance(messages[-1], Status) and messages[-1].finished
