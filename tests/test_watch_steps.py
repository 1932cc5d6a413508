"""w.step's calls against the optimizer's steps (issue 23, item 5): the
gradient norm recorded per step and read back, a loss spike found, w.step in
the optimizer's closure and per micro-batch recorded as the optimizer's
steps with a misuse finding, a GradScaler run recorded unscaled with its
skipped step marked."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.commands import cli
from traintop.engine.feed.messages import Event, Steps
from traintop.engine.recording.decode import decode
from traintop.engine.recording.encode import encode
from traintop.engine.recording.opener import load


def model_of() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def batch(step: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(step)
    return torch.randn(32, 8, generator=g) * scale, torch.arange(32) % 3


def results(path):
    return [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]


def events(path, kind):
    return [m for m in load(path).messages if isinstance(m, Event) and m.kind == kind]


def health(capsys, path) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["replay", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["health"]


def log10_ratio(after: torch.Tensor, before: torch.Tensor) -> float:
    return math.log10(((after - before).std() / after.std()).item())


def test_grad_norm_is_recorded_per_step_and_clipping_that_cuts_most_steps_is_a_finding(
        tmp_path, capsys):
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "clip.jsonl"
    w = watch(model, path, optimizer=opt, every=10, max_grad_norm=0.05)
    norms = []
    for step in range(1, 41):
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        opt.step()
        # a tensor on some steps, a float on others: both recorded
        w.step(loss, grad_norm=norm if step % 2 else norm.item())
        norms.append(norm.item())
    w.close()
    got = results(path)
    assert [r.step for r in got] == list(range(1, 41))
    assert [r.grad_norm for r in got] == pytest.approx(norms, rel=1e-6)
    assert all(n > 0.05 for n in norms)       # every step clipped
    found = [f for f in health(capsys, path) if f["rule"] == "grad-norm"]
    assert len(found) == 1 and found[0]["severity"] == "warn"
    assert found[0]["value"] == 1.0 and "max_grad_norm 0.05" in found[0]["message"]


def test_a_recording_without_grad_norms_reads_nan_and_one_with_them_round_trips():
    from traintop.engine.results import StepResult
    plain = Steps(tuple(StepResult(s, 1.0 / s, 0.1, ()) for s in (1, 2, 3)))
    doc = encode(plain)
    assert "g" not in doc                      # as before: no column where none is known
    assert all(math.isnan(r.grad_norm) for r in decode(doc).results)
    normed = Steps(tuple(StepResult(s, 1.0 / s, 0.1, (), grad_norm=g)
                         for s, g in ((1, 2.5), (2, math.nan), (3, 0.25))))
    back = decode(json.loads(json.dumps(encode(normed))))
    assert [r.grad_norm for r in back.results][0::2] == [2.5, 0.25]
    assert math.isnan(back.results[1].grad_norm)
    assert back.results[1:].grad_norm is not None   # a slice keeps the column


def test_a_loss_spike_names_its_step(tmp_path, capsys):
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "spike.jsonl"
    w = watch(model, path, optimizer=opt, every=20)
    for step in range(1, 61):
        x, y = batch(step)
        # one bad step: its logits blown up (confidently wrong on most examples)
        loss = F.cross_entropy(model(x) * (40.0 if step == 45 else 1.0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()
    losses = {r.step: r.loss for r in results(path)}
    before = sorted(losses[s] for s in range(1, 45))[-1]
    assert losses[45] > 3 * before
    found = [f for f in health(capsys, path) if f["rule"] == "loss-spike"]
    assert len(found) == 1 and found[0]["step"] == 45 and found[0]["severity"] == "warn"
    assert "at step 45" in found[0]["message"]


def test_a_quiet_run_has_no_step_findings(tmp_path, capsys):
    model = model_of()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    path = tmp_path / "quiet.jsonl"
    w = watch(model, path, optimizer=opt, every=10, max_grad_norm=100.0)
    for step in range(1, 41):
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
        w.step(loss, grad_norm=norm)
    w.close()
    rules = {f["rule"] for f in health(capsys, path)}
    assert not rules & {"loss-spike", "grad-norm", "misuse"}


def test_w_step_inside_the_closure_is_recorded_as_the_optimizer_step(tmp_path, capsys):
    """Lightning's training_step runs inside optimizer.step(closure), before the
    backward: the call is recorded when the step ends, so step 1's update ratios
    and every measured step's activation gradients are that step's."""
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "closure.jsonl"
    w = watch(model, path, optimizer=opt, every=3)
    expected = {}
    for step in range(1, 8):
        x, y = batch(step)

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            w.step(loss)                       # the misuse: before backward and update
            loss.backward()
            return loss

        before = [p.detach().clone() for p in model.parameters()]
        loss = opt.step(closure)
        expected[step] = (loss.item(), [log10_ratio(p.detach(), b)
                                        for p, b in zip(model.parameters(), before)])
    w.close()
    got = results(path)
    assert [r.step for r in got] == list(range(1, 8))       # one per optimizer step
    assert [r.loss for r in got] == pytest.approx([expected[s][0] for s in range(1, 8)])
    measured = [r for r in got if r.stats]
    assert [r.step for r in measured] == [1, 3, 6]
    for r in measured:
        assert list(r.update_ratio_log10) == pytest.approx(expected[r.step][1], abs=1e-5)
        assert all(math.isfinite(l.grad_std) and l.grad_std > 0 for l in r.stats.layers)
        assert all(math.isfinite(x.grad_data_ratio) for x in r.stats.weights)
    (e,) = events(path, "misuse")
    assert e.data["kind"] == "closure" and e.step == 1
    (f,) = [f for f in health(capsys, path) if f["rule"] == "misuse"]
    assert f["where"] == "w.step in the optimizer's closure" and f["severity"] == "warn"


def test_w_step_per_micro_batch_folds_into_the_optimizer_steps(tmp_path, capsys):
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "accumulate.jsonl"
    w = watch(model, path, optimizer=opt, every=2)
    means, ratios = [], {}
    micro = []
    for k in range(20):                        # 4 micro-batches per optimizer step
        x, y = batch(k)
        loss = F.cross_entropy(model(x), y) / 4
        loss.backward()
        micro.append(loss.item())
        if k % 4 == 3:
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()
            ratios[len(means) + 1] = [log10_ratio(p.detach(), b)
                                      for p, b in zip(model.parameters(), before)]
            opt.zero_grad()
            means.append(sum(micro) / 4)
            micro = []
        w.step(loss)                           # the misuse: once per micro-batch
    w.close()
    got = results(path)
    assert [r.step for r in got] == [1, 2, 3, 4, 5]
    assert [r.loss for r in got] == pytest.approx(means, rel=1e-6)
    measured = [r for r in got if r.stats]
    assert [r.step for r in measured] == [1, 2, 4]
    for r in measured:
        assert list(r.update_ratio_log10) == pytest.approx(ratios[r.step], abs=1e-5)
    (e,) = events(path, "misuse")
    assert e.data["kind"] == "accumulation"
    (f,) = [f for f in health(capsys, path) if f["rule"] == "misuse"]
    assert f["where"] == "w.step per micro-batch"


def test_once_per_optimizer_step_is_no_misuse_and_step_1_has_its_ratios(tmp_path):
    model = model_of()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    path = tmp_path / "right.jsonl"
    w = watch(model, path, optimizer=opt, every=5)
    for step in range(1, 11):
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()
    first = results(path)[0]
    assert all(math.isfinite(v) for v in first.update_ratio_log10)
    assert not events(path, "misuse") and not events(path, "skipped")


def test_a_grad_scaler_run_is_recorded_unscaled_and_its_skipped_step_marked(tmp_path):
    """fp16 autocast on the CPU with a GradScaler: the activation gradients
    (taken in the backward of loss * scale) and the weights' gradients are
    recorded as the unscaled ones computed here; step 4's inf gradient makes
    the scaler skip optimizer.step: recorded as a skipped step, no ratios."""
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    path = tmp_path / "amp.jsonl"
    w = watch(model, path, optimizer=opt, every=3, scaler=scaler)
    seen = {}
    def keep(module, inputs, out):
        out.register_hook(lambda g: seen.__setitem__("act_grad", g.detach().float().clone()))

    model[1].register_forward_hook(keep)
    direct = {}
    for step in range(1, 8):
        x, y = batch(step)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        if step == 4:
            model[0].weight.grad[0, 0] = math.inf      # the scaler must skip this step
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        stepped = any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
        direct[step] = {"act": seen["act_grad"] / scale, "stepped": stepped,
                        "w0": model[0].weight.grad.detach().clone()}
        scaler.update()
        w.step(loss)
    w.close()
    assert [s for s, d in direct.items() if not d["stepped"]] == [4]
    got = {r.step: r for r in results(path)}
    assert sorted(got) == list(range(1, 8))
    (e,) = events(path, "skipped")
    assert e.step == 4 and e.data["scaler"]
    assert got[4].update_ratio_log10 == () and got[4].stats is None   # no update: no ratio
    measured = sorted(s for s, r in got.items() if r.stats)
    assert measured == [1, 3, 6]
    for s in measured:
        act = direct[s]["act"]
        (layer,) = [l for l in got[s].stats.layers if l.name == "1"]
        assert layer.grad_std == pytest.approx(act.std().item(), rel=1e-3)
        assert layer.grad_mean == pytest.approx(act.mean().item(), rel=1e-3, abs=1e-9)
        (w0,) = [x for x in got[s].stats.weights if x.name == "0.weight"]
        assert w0.grad_std == pytest.approx(direct[s]["w0"].std().item(), rel=1e-4)


def test_a_skipped_measured_step_measures_the_next(tmp_path):
    model = model_of()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    path = tmp_path / "skip3.jsonl"
    w = watch(model, path, optimizer=opt, every=3, scaler=scaler)
    for step in range(1, 6):
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        if step == 3:
            model[2].bias.grad[0] = math.nan
        scaler.step(opt)
        scaler.update()
        w.step(loss)
    w.close()
    got = results(path)
    assert [r.step for r in got if r.stats] == [1, 4]
    assert [e.step for e in events(path, "skipped")] == [3]
    assert not events(path, "non-finite")      # the scaler's inf is no divergence


def test_a_callback_after_a_closure_step_has_step_1s_ratios(tmp_path):
    """Lightning's loop: optimizer.step(closure) runs the forward and backward
    inside the step (after the optimizer's pre-hook), the callback calls w.step
    after it. Step 1's update ratios and grad:data were NaN: the copy before
    the update took only the parameters that had a gradient yet (none)."""
    model = model_of()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    path = tmp_path / "callback.jsonl"
    w = watch(model, path, optimizer=opt, every=5)
    expected = {}
    for step in range(1, 7):
        x, y = batch(step)

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        before = [p.detach().clone() for p in model.parameters()]
        loss = opt.step(closure)
        expected[step] = [log10_ratio(p.detach(), b) for p, b in zip(model.parameters(), before)]
        w.step(loss)                           # the callback, after the step
    w.close()
    measured = [r for r in results(path) if r.stats]
    assert [r.step for r in measured] == [1, 5]
    for r in measured:
        assert list(r.update_ratio_log10) == pytest.approx(expected[r.step], abs=1e-5)
        assert all(math.isfinite(x.grad_data_ratio) for x in r.stats.weights)
    assert not events(path, "misuse")
