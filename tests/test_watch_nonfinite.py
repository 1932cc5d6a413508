"""watch() never breaks the run it watches, and says where a NaN started.

Real models built here are trained in a plain loop under watch(); NaN and
inf are put into a weight, into the input and into a module in the middle
of a Sequential at steps no snapshot measures. The loop always runs to its
end, the recording keeps every step, and the `non-finite` event and finding
name the module by its path, the parameters by name and the step, with
counts equal to torch's own; a statistic that raises becomes a
`monitor-error` finding and one log line, not an exception.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import traintop.engine.watch.figures as figures_module
import traintop.engine.watch.snapshot as snapshot_module
import traintop.engine.watch.watcher as watch_module
from traintop import watch
from traintop.commands import cli
from traintop.engine.feed.messages import Event, Steps
from traintop.engine.recording.opener import load
from traintop.engine.viewer.run_state import RunState
from traintop.engine.watch import BINS, HIST_SAMPLE, _hist

STEPS = 30


class Log(nn.Module):
    """log(x) once switched on: NaN for x < 0 and -inf at 0, in the middle of a model."""

    def __init__(self):
        super().__init__()
        self.on = False

    def forward(self, x):
        return x.log() if self.on else x


class Model(nn.Module):
    """A user's MLP: its modules' paths read net.0, net.1, ..."""

    def __init__(self, middle: nn.Module | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32),
                                 middle if middle is not None else nn.Identity(), nn.ReLU(),
                                 nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)


def batch(step: int):
    g = torch.Generator().manual_seed(step)
    return torch.randn(64, 8, generator=g), torch.arange(64) % 3


def train(model, path, every=10, before=None, inputs=None, spy=None, float_loss=False,
          cpu_check=True):
    """The user's loop: `before(step)` runs before each forward (it breaks things),
    `spy(step)` after the backward, before the update (the test's own record)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    w = watch(model, path, optimizer=opt, every=every, check_every_step=cpu_check)
    w._host = cpu_check      # False: as on a GPU, no look between snapshots
    done = 0
    for step in range(1, STEPS + 1):
        if before is not None:
            before(step)
        x, y = inputs(step) if inputs is not None else batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if spy is not None:
            spy(step)
        opt.step()
        w.step(loss.item() if float_loss else loss)
        done += 1
    w.close()
    return w, done


def recorded(path):
    messages = load(path).messages
    steps = [r.step for m in messages if isinstance(m, Steps) for r in m.results]
    events = [m for m in messages if isinstance(m, Event)]
    return steps, events


def replay_json(capsys, path) -> dict:
    capsys.readouterr()
    assert cli.main(["replay", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def nonfinite(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


def the_event(events) -> Event:
    found = [e for e in events if e.kind == "non-finite"]
    assert len(found) == 1, [e.text for e in events]
    return found[0]


def test_nan_put_into_a_weight_between_snapshots(tmp_path, capsys, caplog):
    """The issue's crash: histc on a NaN range raised in the optimizer's hook at
    the next snapshot (step 20) and the recording stopped at step 10."""
    model = Model()
    seen = {}

    def poison(step):
        if step == 13:
            with torch.no_grad():
                model.net[2].weight[0, 0] = float("nan")

    model.net[2].register_forward_hook(
        lambda m, i, o: seen.__setitem__("out", o.detach().clone()) if "out" not in seen
        and nonfinite(o) else None)

    def spy(step):
        if step == 13:
            seen["params"] = {n: nonfinite(p) for n, p in model.named_parameters()}

    path = tmp_path / "nan.jsonl"
    with caplog.at_level(logging.WARNING, logger="traintop"):
        w, done = train(model, path, before=poison, spy=spy)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    e = the_event(events)
    d = e.data
    assert e.step == d["step"] == 13 and d["cause"] == "module"
    assert d["module"] == "net.2" and d["kind"] == "Linear" and d["where"] == "net.2 (Linear)"
    # The update of step 13 spreads NaN everywhere; the names are from before it.
    assert d["params"] == {n: c for n, c in seen["params"].items() if c} == {"net.2.weight": 1}
    assert d["params_before_update"] and d["reran"]
    assert d["count"] == nonfinite(seen["out"]) == 64 and d["numel"] == seen["out"].numel()
    assert set(d["spread"]) | {"net.2.weight"} == {n for n, _ in model.named_parameters()}
    assert e.text.startswith("net.2 (Linear): its output went non-finite first, at step 13")
    assert "net.2.weight (1)" in e.text
    # One log line for it, from the "traintop" logger.
    lines = [r for r in caplog.records if r.name == "traintop"]
    assert len(lines) == 1 and "net.2 (Linear)" in lines[0].getMessage()

    # The snapshots at steps 20 and 30 are whole: every tensor non-finite, counted.
    snaps = [r.stats for m in load(path).messages if isinstance(m, Steps)
             for r in m.results if r.stats]
    assert [s.step for s in snaps] == [1, 10, 20, 30]
    last = snaps[-1]
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            assert w.nonfinite_counts[name] == (nonfinite(p), nonfinite(p.grad)) \
                == (p.numel(), p.numel())
            (ws,) = [x for x in last.weights if x.name == name]
            assert (ws.nonfinite, ws.grad_nonfinite) == (p.numel(), p.numel())
    assert [(l.nonfinite, l.grad_nonfinite) for l in last.layers] == [(64 * 32, 64 * 32)] * 2
    for h in [l.hist for l in last.layers] + [x.hist for x in last.weights]:
        assert all(v == 0 for v in h.density)   # no finite value: an empty histogram

    # The app's state: the event marked on the loss plot, in the events, judged.
    state = RunState()
    for m in load(path).messages:
        state.apply(m)
    assert [m.text for m in state.history.markers] == ["NaN/inf net.2 (Linear)"]
    assert (13, e.text) in state.events
    assert [f.where for f in state.findings() if f.rule == "non-finite"] == ["net.2 (Linear)"]

    doc = replay_json(capsys, path)
    assert doc["steps"] == STEPS and doc["stopped"] is None
    (f,) = [f for f in doc["health"] if f["rule"] == "non-finite"]
    assert f["where"] == "net.2 (Linear)" and f["step"] == 13 and f["severity"] == "error"
    assert f["message"].startswith("net.2 (Linear)") and "net.2.weight" in f["message"]
    capsys.readouterr()
    assert cli.main(["attach", str(path), "--json", "--quiet", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["health"] == doc["health"]


@pytest.mark.parametrize("lasting", [True, False])
def test_inf_in_the_input(tmp_path, lasting):
    """An inf in one value of the data from step 7 on (lasting) or at step 7
    only: the input of net.0, or that step's batch."""
    model = Model()
    kept = {}

    def inputs(step):
        x, y = batch(step)
        if step == 7 or (lasting and step > 7):
            x[5, 2] = float("inf")
        return x, y

    def spy(step):
        if step == 7:
            kept.update({n: p.detach().clone() for n, p in model.named_parameters()})

    path = tmp_path / "inf.jsonl"
    _, done = train(model, path, inputs=inputs, spy=spy, every=5)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    d = the_event(events).data
    assert d["step"] == 7 and d["params"] == {} and d["params_before_update"]
    if lasting:
        x, _ = inputs(8)    # the traced forward's batch, run with step 7's parameters
        out = F.linear(x, kept["net.0.weight"], kept["net.0.bias"])
        assert d["cause"] == "input" and d["where"] == "the input of net.0 (Linear)"
        assert d["input_count"] == nonfinite(x) == 1
        assert d["count"] == nonfinite(out) == 32
    else:
        assert d["cause"] == "batch" and d["where"] == "the batch of step 7"
        assert d["module"] is None and d["live"]["module"] == "net.0"


def test_a_module_in_the_middle_outputs_nan(tmp_path, capsys):
    middle = Log()
    model = Model(middle)
    kept = {}

    def switch(step):
        middle.on = step >= 17

    def spy(step):
        if step == 17:
            kept.update({n: p.detach().clone() for n, p in model.named_parameters()})

    path = tmp_path / "mid.jsonl"
    _, done = train(model, path, before=switch, spy=spy)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    d = the_event(events).data
    assert (d["step"], d["cause"], d["module"], d["kind"]) == (17, "module", "net.3", "Log")
    assert d["params"] == {} and d["input_count"] == 0
    # Traced on step 18's batch with the parameters from before step 17's update.
    x, _ = batch(18)
    h = F.linear(torch.tanh(F.linear(x, kept["net.0.weight"], kept["net.0.bias"])),
                 kept["net.2.weight"], kept["net.2.bias"])
    assert d["count"] == nonfinite(h.log()) > 0 and d["numel"] == h.numel()
    doc = replay_json(capsys, path)
    (f,) = [f for f in doc["health"] if f["rule"] == "non-finite"]
    assert f["where"] == "net.3 (Log)" and f["step"] == 17
    assert "no parameter held a non-finite value" in f["message"]


def test_between_snapshots_without_a_look_the_loss_tells_the_step(tmp_path, monkeypatch):
    """On a GPU traintop does not look between snapshots (no host sync): the
    losses, read in one transfer at the next snapshot, give the step; by then
    the updates spread NaN into every parameter, and the event says so."""
    monkeypatch.setattr(watch_module, "PENDING_SECONDS", 1e9)   # read at snapshots only
    model = Model()

    def poison(step):
        if step == 13:
            with torch.no_grad():
                model.net[2].weight[0, 0] = float("nan")

    path = tmp_path / "late.jsonl"
    _, done = train(model, path, before=poison, cpu_check=False)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    e = the_event(events)
    d = e.data
    # Seen at the snapshot of step 20 (its gradients, before its update), the
    # losses read then say step 13.
    assert d["step"] == 13 and d["seen"] == "loss" and d["params_step"] == 20
    assert d["traced_step"] == 21 and not d["reran"]
    assert d["module"] == "net.0"       # where it is now: the updates spread it
    assert set(d["params"]) == {n for n, _ in model.named_parameters()}
    assert "before the update of step 20" in e.text


def test_a_float_loss_is_checked_at_once(tmp_path):
    model = Model()

    def poison(step):
        if step == 13:
            with torch.no_grad():
                model.net[2].weight[0, 0] = float("nan")

    path = tmp_path / "float.jsonl"
    _, done = train(model, path, before=poison, cpu_check=False, float_loss=True)
    assert done == STEPS
    d = the_event(recorded(path)[1]).data
    assert d["step"] == 13 and d["seen"] == "loss" and d["traced_step"] == 14


def test_a_statistic_that_raises_is_a_finding_not_an_exception(tmp_path, capsys, caplog,
                                                              monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(figures_module, "_share_and_dead", boom)   # in a forward hook
    monkeypatch.setattr(snapshot_module, "stds", boom)           # in the optimizer's hook
    # the CPU's ways of the same figures (numpy's, in few calls)
    monkeypatch.setattr(figures_module, "_share_and_dead_np", boom)
    monkeypatch.setattr(figures_module, "_moments_into", boom)   # StepBatch's, after the update
    model = Model()
    path = tmp_path / "boom.jsonl"
    with caplog.at_level(logging.WARNING, logger="traintop"):
        _, done = train(model, path)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    errors = {e.data["where"]: e for e in events if e.kind == "monitor-error"}
    assert set(errors) == {"activation statistics of net.1 (Tanh)",
                           "activation statistics of net.4 (ReLU)",
                           "the step's histograms, means and stds"}
    assert all(e.data["error"] == "RuntimeError: boom" for e in errors.values())
    # One log line each, not one per step.
    lines = [r.getMessage() for r in caplog.records if r.name == "traintop"]
    assert len(lines) == 3 and all("boom" in line for line in lines)
    # The snapshots are still written, the failed figures missing (NaN).
    snaps = [r.stats for m in load(path).messages if isinstance(m, Steps)
             for r in m.results if r.stats]
    assert [s.step for s in snaps] == [1, 10, 20, 30]
    assert all(math.isnan(l.mean) for s in snaps for l in s.layers)
    doc = replay_json(capsys, path)
    found = {f["where"]: f for f in doc["health"] if f["rule"] == "monitor-error"}
    assert set(found) == set(errors)
    assert all(f["severity"] == "warn" and "boom" in f["message"] for f in found.values())
    assert not [f for f in doc["health"] if f["rule"] == "non-finite"]


def test_a_failing_snapshot_still_writes_the_step(tmp_path, monkeypatch):
    def boom(self, *args):
        raise ValueError("no snapshot")

    monkeypatch.setattr(watch_module.Watcher, "_build", boom)
    model = Model()
    path = tmp_path / "snap.jsonl"
    _, done = train(model, path)
    assert done == STEPS
    steps, events = recorded(path)
    assert steps == list(range(1, STEPS + 1))
    assert [e.data["where"] for e in events if e.kind == "monitor-error"] == [
        "the step's statistics (snapshot)"]


@pytest.mark.parametrize("n", [1000, 3 * HIST_SAMPLE])
def test_histograms_count_the_finite_values_only(n):
    g = torch.Generator().manual_seed(n)
    t = torch.randn(n, generator=g)
    t[torch.randperm(n, generator=g)[:n // 10]] = float("nan")
    t[3], t[7] = float("inf"), float("-inf")
    (lo, hi, counts), bad = _hist(t)
    finite = t[torch.isfinite(t)]
    assert int(bad) == nonfinite(t)
    assert (lo.item(), hi.item()) == (finite.min().item(), finite.max().item())
    if n <= HIST_SAMPLE:   # exactly torch's own histogram of the finite values
        assert counts.tolist() == torch.histc(finite, bins=BINS).tolist()
    else:                  # a sample, scaled to the finite values
        assert counts.sum().item() == pytest.approx(finite.numel(), rel=0.02)
    (lo, hi, counts), bad = _hist(torch.full((50,), float("nan")))
    assert int(bad) == 50 and counts.sum().item() == 0 and math.isfinite(lo.item())


def test_a_gpt_names_the_module_by_its_path(tmp_path):
    """A nanoGPT-style model (tied embeddings, LayerNorm, attention, the loss
    returned by forward): a NaN in block 1's MLP weight between snapshots."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from real_models import GPT, GPTConfig, gpt_batch, gpt_optimizer

    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_embd=32, block_size=16)
    model = GPT(cfg)
    opt = gpt_optimizer(model)
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "gpt.jsonl"
    w = watch(model, path, optimizer=opt, every=10, check_every_step=True)
    fc = model.transformer.h[1].mlp.c_fc
    for step in range(1, 13):
        if step == 5:
            with torch.no_grad():
                fc.weight[0, 0] = float("nan")
        x, y = gpt_batch(g, cfg)
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
    w.close()
    steps, events = recorded(path)
    assert steps == list(range(1, 13))
    d = the_event(events).data
    assert (d["step"], d["cause"]) == (5, "module")
    assert (d["module"], d["kind"]) == ("transformer.h.1.mlp.c_fc", "Linear")
    assert d["params"] == {"transformer.h.1.mlp.c_fc.weight": 1}
    # Feature 0 of c_fc's output at every position of the batch.
    assert d["count"] == x.numel() and d["numel"] == x.numel() * 4 * cfg.n_embd


class SkipNonFinite(torch.optim.SGD):
    """A user's optimizer that skips a step whose gradients are not finite
    (as GradScaler does): the run stays finite after the NaN."""

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if all(bool(torch.isfinite(g).all()) for g in grads):
            super().step(closure)


class Poison(nn.Module):
    """NaN in the first example of the batch, when switched on."""

    def __init__(self):
        super().__init__()
        self.at = False

    def forward(self, x):
        if not self.at:
            return x
        scale = torch.ones_like(x)
        scale[0] = float("nan")
        return x * scale          # its gradient NaN there too


def test_the_trace_leaves_training_as_it_was(tmp_path):
    """The same run watched and not: every loss, parameter, BatchNorm buffer
    and the random stream (Dropout) equal, bit for bit, though the watcher
    traced a NaN and re-ran a forward with the parameters before the update."""

    seen = {}

    def run(path):
        torch.manual_seed(0)
        poison = Poison()
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                              poison, nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        opt = SkipNonFinite(model.parameters(), lr=0.05)
        w = watch(model, path, optimizer=opt, every=5, check_every_step=True) if path else None
        def keep(m, i, o):
            if o.requires_grad:    # (the watcher's rerun is a forward without grad)
                o.register_hook(lambda g: seen.__setitem__("relu_grad", g.clone()))

        model[2].register_forward_hook(keep)
        losses = []
        for step in range(1, 13):
            poison.at = step in (6, 10)      # 6 between snapshots, 10 measured
            x = torch.randn(16, 1, 8, 8)
            y = torch.arange(16) % 3
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if step == 10 and path:
                seen["weight_grads"] = {n: p.grad.clone() for n, p in model.named_parameters()
                                        if p.ndim >= 2}
                seen["relu_grad_10"] = seen["relu_grad"]
            opt.step()
            if w:
                w.step(loss)
            losses.append(loss.item())
        if w:
            w.close()
        return losses, model.state_dict(), torch.get_rng_state()

    path = tmp_path / "same.jsonl"
    watched, plain = run(path), run(None)
    assert watched[0] == pytest.approx(plain[0], nan_ok=True)
    assert math.isnan(watched[0][5]) and math.isnan(watched[0][9])
    for k, v in plain[1].items():
        assert torch.equal(watched[1][k], v), k
    assert torch.equal(watched[2], plain[2])
    d = the_event(recorded(path)[1]).data
    assert d["step"] == 6 and d["reran"] and d["spread"] == []
    # Step 10's snapshot: the non-finite values counted per tensor, as torch counts
    # them, and left out of the histograms (over the finite values, as torch's).
    (snap,) = [r.stats for m in load(path).messages if isinstance(m, Steps)
               for r in m.results if r.stats and r.step == 10]
    (relu,) = snap.layers
    g = seen["relu_grad_10"]
    assert relu.nonfinite == 0 and relu.grad_nonfinite == nonfinite(g)
    assert 0 < relu.grad_nonfinite < g.numel() / 4      # the first example's share at most
    hist, edges = torch.histogram(g[torch.isfinite(g)], bins=BINS, density=True)
    assert (relu.grad_hist.lo, relu.grad_hist.hi) == pytest.approx(
        (edges[0].item(), edges[-1].item()))
    assert relu.grad_hist.density == pytest.approx(hist.tolist(), rel=1e-4, abs=1e-6)
    for ws in snap.weights:
        assert ws.nonfinite == 0                  # the update was skipped
        assert ws.grad_nonfinite == nonfinite(seen["weight_grads"][ws.name]) > 0


def test_an_lstm_without_an_optimizer(tmp_path):
    """A 2-layer LSTM language model updated by hand (watch() has no optimizer
    to hook): the gradients are read as the backward leaves them, before the
    update; an inf in the second layer's recurrent weight names the LSTM."""
    import copy

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.rnn = nn.LSTM(16, 32, num_layers=2, batch_first=True)
            self.out = nn.Linear(32, 20)

        def forward(self, x):
            h, _ = self.rnn(self.emb(x))
            return {"logits": self.out(h)}     # a dict, as Hugging Face models return

    torch.manual_seed(0)
    model = LM()
    x, y = torch.randint(0, 20, (8, 12)), torch.randint(0, 20, (8, 12))
    path = tmp_path / "lstm.jsonl"
    w = watch(model, path, every=5, check_every_step=True)
    kept = None
    for step in range(1, 15):
        if step == 6:
            with torch.no_grad():
                model.rnn.weight_hh_l1[3, 3] = float("inf")
            kept = copy.deepcopy(model)
        loss = F.cross_entropy(model(x)["logits"].reshape(-1, 20), y.reshape(-1))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        w.step(loss)
    w.close()
    steps, events = recorded(path)
    assert steps == list(range(1, 15))
    d = the_event(events).data
    assert (d["step"], d["cause"], d["module"], d["kind"]) == (6, "module", "rnn", "LSTM")
    assert d["params"] == {"rnn.weight_hh_l1": 1} and d["reran"]
    out, (h, c) = kept.rnn(kept.emb(x))      # every tensor the module returns
    assert d["count"] == nonfinite(out) + nonfinite(h) + nonfinite(c) > 0
    assert d["numel"] == out.numel() + h.numel() + c.numel()


def test_an_odd_event_in_a_file_is_still_a_finding():
    """A viewer reads files it did not write: data it cannot read gives the event's text."""
    from traintop.engine.health.monitor import HealthMonitor
    from traintop.engine.results import RunInfo

    monitor = HealthMonitor(RunInfo({}, "", (), (), (), math.nan))
    monitor.observe_event(Event("non-finite", 4, "non-finite at step 4", {"where": "net.1"}))
    monitor.observe_event(Event("monitor-error", 5, "x failed", {"where": "x", "error": "E"}))
    assert [(f.rule, f.where, f.step) for f in monitor.findings()] == [
        ("non-finite", "net.1", 4), ("monitor-error", "x", 5)]
