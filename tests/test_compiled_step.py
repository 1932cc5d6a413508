"""The compiled engine (the fast step as one torch.compile'd graph) computes
what the exact engine does, and falls back to the fast engine where it cannot
compile. The tests here use one shape (n_hidden 40, depth 5), so the suite
compiles its graphs once (inductor's disk cache makes reruns quicker); the
stack without BatchNorm is the lecture's, whose graph test_lecture_reference
then finds compiled."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import traintop.engine.steps.compiled as compiled_step
from traintop.engine.steps import handover
from traintop.engine.config import TrainConfig
from traintop.engine.training.trainer import Trainer
from helpers import ROOT, traintop_here
from helpers.compare import assert_histograms_are_torchs, assert_snapshots_close, close

CONFIG = dict(n_hidden=40, steps=1000, stats_every=10)


def trainers(dataset, engine: str = "compiled", **knobs) -> tuple[Trainer, Trainer]:
    config = TrainConfig(**{**CONFIG, **knobs}).validated()
    return Trainer(config, dataset), Trainer(config, dataset, engine=engine)


def test_a_stack_without_batchnorm_compiles_to_the_same_figures(small_dataset):
    """Biases instead of BatchNorm: another graph, the same figures (every
    lecture case was checked this way once; CI compiles one more graph).
    First in the file and at the lecture's width: it is the graph of
    test_lecture_reference's compiled runs (--no-batchnorm --bias, 100 wide,
    27 tokens, batch 32), which then load it from inductor's cache."""
    exact, comp = trainers(small_dataset, batchnorm=False, bias=True, steps=3, n_hidden=100)
    for _ in range(3):
        e, c = exact.step(stats=True), comp.step(stats=True)
    assert comp.compiled.compiled is True
    assert_snapshots_close(c.stats, e.stats, 1e-3)
    assert_histograms_are_torchs(c.stats, comp.stack)


def test_compiled_steps_match_the_exact_engine(small_dataset):
    exact, comp = trainers(small_dataset)
    for step in range(1, 31):
        e, c = exact.step(), comp.step()
        assert c.step == e.step == step and c.nonfinite is None
        assert close(c.loss, e.loss, 1e-4)
        assert len(c.update_ratio_log10) == len(e.update_ratio_log10)
        assert all(abs(a - b) < 1e-3 for a, b in zip(c.update_ratio_log10, e.update_ratio_log10))
        assert (c.stats is None) == (e.stats is None) == (step not in (1, 10, 20, 30))
    assert comp.compiled.compiled is True and comp.compiled.error is None
    assert_snapshots_close(c.stats, e.stats, 1e-3)
    # the compiled graph bins every value, bincount counts them outside it:
    # still torch.histc's bins, of the tensors the layers hand the viewer
    assert_histograms_are_torchs(c.stats, comp.stack)
    for p, q in zip(comp.stack.params, exact.stack.params):
        assert torch.allclose(p, q.detach(), rtol=1e-4, atol=1e-5)
    for (_, a), (_, b) in zip(comp.stack.batchnorms(), exact.stack.batchnorms()):
        assert torch.allclose(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-5)
        assert torch.allclose(a.running_var, b.running_var, rtol=1e-4, atol=1e-5)
    ev_e, ev_c = exact.evaluate(("val",)), comp.evaluate(("val",))
    assert close(ev_c["val"], ev_e["val"], 1e-4)


def test_a_new_lr_and_a_restart_reuse_the_graph(small_dataset):
    _, comp = trainers(small_dataset)
    comp.step()
    comp.step()
    comp.set_lr(0.01)
    before = [p.clone() for p in comp.stack.params]
    result = comp.step()
    assert result.lr == 0.01
    # the update applied is lr * grad with the new lr (not the old 0.1)
    for p, b, g in zip(comp.stack.params, before, (p.grad for p in comp.stack.params)):
        assert torch.allclose(b - p, 0.01 * g, rtol=1e-3, atol=1e-6)  # float32 b - p
    comp.restart()
    fresh = Trainer(comp.config, small_dataset, engine="fast")
    losses = [comp.step().loss for _ in range(4)]
    assert all(close(a, fresh.step().loss, 1e-5) for a in losses)
    assert comp.compiled.compiled is True


def test_inf_weight_on_a_compiled_step_is_traced_to_its_layer(small_dataset):
    _, comp = trainers(small_dataset)
    comp.step()                      # step 1: stats, eager
    comp.step()                      # step 2: compiled
    with torch.no_grad():
        comp.stack.layers[3].weight[0, 0] = float("inf")
    kept = [p.clone() for p in comp.stack.params]
    result = comp.step()
    assert math.isnan(result.loss) and result.nonfinite.where == "layer 3 (Linear)"
    assert comp.steps_done == 2 and comp.finished
    for p, k in zip(comp.stack.params, kept):  # no update from the diverged step
        assert torch.equal(p, k)


def test_falls_back_to_the_fast_engine_when_compiling_fails(small_dataset, monkeypatch):
    def broken(stats):
        def fail(*args):
            raise RuntimeError("no C++ compiler\nsecond line")
        return fail

    monkeypatch.setattr(compiled_step, "_get_compiled", broken)
    fast, comp = trainers(small_dataset, engine="compiled")
    fast = Trainer(comp.config, small_dataset, engine="fast")
    for _ in range(12):
        f, c = fast.step(), comp.step()
        assert c.loss == f.loss and c.update_ratio_log10 == f.update_ratio_log10
    assert comp.compiled.compiled is False
    assert comp.compiled.error == "RuntimeError: no C++ compiler"


def test_no_compiler_is_found_before_tracing(small_dataset, monkeypatch):
    """inductor's compiler search, pointed nowhere: the engine falls back at its
    first compiled step with the reason, before dynamo traces anything (the
    failure used to come at the end of tracing and lowering, ~10 s in)."""
    import torch._dynamo.utils as dynamo_utils
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/g++",))
    monkeypatch.setattr(compiled_step, "_compiled", {})
    traced = dynamo_utils.counters["stats"]["calls_captured"]
    fast, comp = trainers(small_dataset, engine="compiled")
    fast = Trainer(comp.config, small_dataset, engine="fast")
    for _ in range(3):
        f, c = fast.step(), comp.step()
        assert c.loss == f.loss
    assert comp.compiled.compiled is False
    assert comp.compiled.error.startswith("InvalidCxxCompiler"), comp.compiled.error
    assert dynamo_utils.counters["stats"]["calls_captured"] == traced


def test_cli_without_a_compiler_runs_like_the_fast_engine(tmp_path, capsys, one_thread):
    """No C++ compiler (CXX points nowhere, an empty inductor cache): the run
    completes, prints no traceback, and reports the fast engine's figures
    (those of the same run on the fast engine, through the CLI's entry here)."""
    argv = ["run", "--steps", "6", "--n-hidden", "40", "--json", "--engine"]
    done = traintop_here(capsys, *argv, "fast")
    assert done.returncode == 0, done.stderr
    fast = json.loads(done.stdout)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "traintop", *argv, "compiled"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["last_loss"] == fast["last_loss"] and doc["steps"] == 6


def test_compiled_is_a_known_engine(small_dataset):
    assert {"compiled", "auto"} <= set(__import__("traintop.engine.config", fromlist=["ENGINES"]).ENGINES)
    with pytest.raises(Exception):
        Trainer(TrainConfig(n_hidden=8).validated(), small_dataset, engine="compile")


def test_nan_gradients_on_a_compiled_stats_step_are_traced(small_dataset):
    """A gain of 1e30 with BatchNorm keeps the loss finite but turns gradients
    NaN: the stats graph's histogram index must stay countable, and the step
    is traced to a parameter as the eager engines do."""
    _, comp = trainers(small_dataset, gain="1e30", steps=3)
    result = comp.run()
    assert comp.compiled.compiled is True
    assert result.step == 1 and result.stats is None
    assert result.nonfinite.what == "gradient" and result.nonfinite.where.startswith("parameter ")


def test_histogram_bins_are_histcs_and_keep_nan_inside_the_count():
    from traintop.engine.steps.graph_stats import histogram_bins

    g = torch.Generator().manual_seed(0)
    rows = torch.randn(3, 500, generator=g) * torch.tensor([[1.0], [0.01], [50.0]])
    lo, hi = rows.amin(1), rows.amax(1)
    index = histogram_bins(rows, lo, hi - lo, torch.tensor([0.0, 100.0, 200.0]))
    counts = torch.bincount(index, minlength=300).view(3, 100)
    for row, c, a, b in zip(rows, counts, lo.tolist(), hi.tolist()):
        assert torch.equal(c, torch.histc(row, bins=100, min=a, max=b).long())
    odd = torch.tensor([[float("nan"), float("inf"), -float("inf"), -1.0, 1.0]])
    bins = histogram_bins(odd, torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([100.0]))
    assert bins.tolist() == [100, 199, 100, 100, 199]


def test_auto_steps_at_once_then_switches_to_the_compiled_graph_without_a_jump(small_dataset):
    """The default engine: fast steps while a thread compiles on a twin, then
    the compiled graphs, with the exact engine's figures on either side of the
    switch; the switch compiles nothing more (the twin's graph is the run's)."""
    import torch._dynamo.utils as dynamo_utils

    exact, auto = trainers(small_dataset, engine="auto", steps=100_000)  # long enough to compile
    assert auto.engine_now in ("fast while compiling", "compiled")
    before = [p.clone() for p in auto.stack.params]
    for _ in range(3):          # not waiting: these run before (or as) the compile ends
        e, a = exact.step(), auto.step()
        assert close(a.loss, e.loss, 1e-4)
    assert auto.compiled.wait(600) and auto.engine_now == "compiled"
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    for step in range(4, 25):
        e, a = exact.step(), auto.step()
        assert close(a.loss, e.loss, 1e-4)
        assert all(abs(x - y) < 1e-3 for x, y in zip(a.update_ratio_log10, e.update_ratio_log10))
        if step == 20:    # a compiled stats step
            assert_snapshots_close(a.stats, e.stats, 1e-3)
    assert auto.compiled.compiled is True and auto.compiled.error is None
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs
    # the twin took the compiling calls: the run's parameters moved only by its steps
    assert not all(torch.equal(p, b) for p, b in zip(auto.stack.params, before))
    for p, q in zip(auto.stack.params, exact.stack.params):
        assert torch.allclose(p, q.detach(), rtol=1e-4, atol=1e-5)


def test_auto_stays_on_the_fast_engine_when_compiling_fails(small_dataset, monkeypatch,
                                                           tmp_path):
    def broken(stats):
        def fail(*args):
            raise RuntimeError("no C++ compiler\nsecond line")
        return fail

    monkeypatch.setattr(compiled_step, "_get_compiled", broken)   # a compile on a thread
    # the compile process (traintop.engine.steps.handover), with no package on disk
    monkeypatch.setattr(handover, "BUILD_COMMAND", [
        sys.executable, "-c",
        "import sys; sys.stderr.write('noise\\nRuntimeError: no C++ compiler\\n'); sys.exit(1)"])
    monkeypatch.setenv(handover.CACHE_ENV, str(tmp_path))
    config = TrainConfig(**{**CONFIG, "steps": 100_000}).validated()
    fast, auto = (Trainer(config, small_dataset, engine=e) for e in ("fast", "auto"))
    assert auto.compiled.wait(60)
    for _ in range(12):
        f, a = fast.step(), auto.step()
        assert a.loss == f.loss and a.update_ratio_log10 == f.update_ratio_log10
    assert auto.compiled.compiled is False and auto.engine_now == "fast"
    assert auto.compiled.error == "RuntimeError: no C++ compiler"


def test_auto_does_not_compile_for_a_short_run(small_dataset):
    from traintop.engine.training.trainer import AUTO_COMPILE_MIN_STEPS

    config = TrainConfig(**{**CONFIG, "steps": AUTO_COMPILE_MIN_STEPS - 1}).validated()
    auto = Trainer(config, small_dataset, engine="auto")
    assert auto.compiled is None and auto.engine_now == "fast"
    fast = Trainer(config, small_dataset, engine="fast")
    for _ in range(3):
        assert auto.step().loss == fast.step().loss


def test_auto_restart_while_compiling_compiles_for_the_new_run(small_dataset):
    """A restart (a key in the app) drops the old run's compile and starts
    the new run's; the new run still steps at once and ends up compiled."""
    config = TrainConfig(**{**CONFIG, "steps": 100_000}).validated()
    auto = Trainer(config, small_dataset, engine="auto")
    old = auto.compiled
    auto.step()
    auto.restart(gain="1")
    assert auto.compiled is not old and old._cancelled
    assert auto.steps_done == 0 and auto.step().step == 1
    assert auto.compiled.wait(600) and old.wait(600)
    fast = Trainer(auto.config, small_dataset, engine="fast")
    fast.step()
    for _ in range(3):
        assert close(auto.step().loss, fast.step().loss, 1e-4)
    assert auto.compiled.compiled is True and auto.engine_now == "compiled"
