"""Each run of a batched sweep equals its solo run.

The sweep's batched step (traintop.engine.steps.batched) against a Trainer of
the same config alone, on the fast engine and on the exact one: 1e-5
relative at step 1 (loss, every update:data ratio, every figure of the
snapshot), 1e-3 after 1,000 steps; the lecture's loop (tests/lecture_oracle.py)
per run; a run that diverges stops alone.
"""

from __future__ import annotations

import math

import pytest
import torch

from lecture_oracle import lecture_run
from helpers.compare import close

from traintop.engine.config import TrainConfig
from traintop.engine.steps.stats import BINS
from traintop.engine.sweep.group import BatchedGroup
from traintop.engine.sweep.spec import parse_sweep
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.trainer import Trainer

GAINS = ["gain=0.5,1,5/3,3"]


pytestmark = pytest.mark.usefixtures("one_thread")


def sweep_and_solos(dataset, items, engine="fast", **knobs):
    base = TrainConfig(n_hidden=40, steps=1000, **knobs).validated()
    runs = parse_sweep(items, base)
    sweep = SweepTrainer(runs, dataset, engine="fast")
    solos = [Trainer(run.config, dataset, engine=engine) for run in runs]
    return sweep, solos


def assert_hist_close(mine, theirs, rel: float) -> None:
    """Same range to `rel`; same distribution up to values on a bin edge,
    which a last-bit difference moves to the neighbouring bin (CDFs agree)."""
    span = theirs.hi - theirs.lo
    assert abs(mine.lo - theirs.lo) <= rel * span and abs(mine.hi - theirs.hi) <= rel * span

    def cdf(h):
        return torch.tensor(h.density, dtype=torch.float64).cumsum(0) * (h.hi - h.lo) / BINS

    a, b = cdf(mine), cdf(theirs)
    assert abs(a[-1].item() - 1) < 1e-6 and abs(b[-1].item() - 1) < 1e-6
    assert (a - b).abs().max().item() < 0.01


def assert_same_snapshot(mine, theirs, rel: float) -> None:
    assert mine.step == theirs.step and mine.lr == theirs.lr
    assert close(mine.loss, theirs.loss, rel)
    assert len(mine.layers) == len(theirs.layers) > 0
    for a, b in zip(mine.layers, theirs.layers):
        assert (a.index, a.kind, a.units, a.dead) == (b.index, b.kind, b.units, b.dead)
        assert close(a.std, b.std, rel) and close(a.mean, b.mean, rel, b.std)
        assert close(a.grad_std, b.grad_std, rel) and close(a.grad_mean, b.grad_mean, rel, b.grad_std)
        # a share of B*H values: one value on the 0.97 edge moves it by 1/(B*H)
        assert abs(a.saturation_pct - b.saturation_pct) <= 100 / (32 * a.units) + 1e-9
        assert_hist_close(a.hist, b.hist, rel)
        assert_hist_close(a.grad_hist, b.grad_hist, rel)
    assert [w.name for w in mine.weights] == [w.name for w in theirs.weights]
    for a, b in zip(mine.weights, theirs.weights):
        assert close(a.grad_std, b.grad_std, rel)
        assert close(a.grad_mean, b.grad_mean, rel, b.grad_std)
        assert close(a.grad_data_ratio, b.grad_data_ratio, rel)
        assert_hist_close(a.hist, b.hist, rel)
    assert_ratios_close(mine.update_ratio_log10, theirs.update_ratio_log10, rel)


def assert_ratios_close(mine, theirs, rel: float) -> None:
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs):
        # log10 of a ratio: rel on the ratio is ~rel/2.3 absolute on its log
        assert (a == b) or abs(a - b) <= rel, (a, b)


@pytest.mark.parametrize("engine", ["fast", "exact"])
@pytest.mark.parametrize("knobs", [dict(batchnorm=True), dict(batchnorm=False)],
                         ids=["bn", "no-bn"])
def test_step_1_equals_solo_runs(small_dataset, engine, knobs):
    sweep, solos = sweep_and_solos(small_dataset, GAINS, engine, **knobs)
    assert len(sweep.groups) == 1 and isinstance(sweep.groups[0][1], BatchedGroup)
    results = sweep.step()
    for mine, solo in zip(results, solos):
        theirs = solo.step()
        assert mine.stats is not None and theirs.stats is not None
        assert_same_snapshot(mine.stats, theirs.stats, 1e-5)
        assert_ratios_close(mine.update_ratio_log10, theirs.update_ratio_log10, 1e-5)
    # the four runs really differ (a gain sweep, not four copies)
    stds = [r.stats.layers[0].std for r in results]
    assert len({round(s, 4) for s in stds}) == 4 if not knobs["batchnorm"] else True
    grads = [r.stats.weights[1].grad_std for r in results]
    assert len({round(g, 6) for g in grads}) == 4


def test_1000_steps_equal_solo_runs(small_dataset):
    # two gains, not GAINS' four: a group of two is batched as one of four is,
    # in half the time (each run's step 1 is checked at four gains above)
    sweep, solos = sweep_and_solos(small_dataset, ["gain=1,5/3", "batchnorm=on,off"], "fast")
    assert [len(idx) for idx, _ in sweep.groups] == [2, 2]   # one group per shape
    lecture = next(k for k, run in enumerate(sweep.runs)
                   if run.config.gain == "5/3" and run.config.batchnorm)
    exact = Trainer(sweep.runs[lecture].config, small_dataset)
    while not sweep.finished:
        results = sweep.step()
    assert sweep.groups == []
    for mine, solo in zip(results, solos):
        solo.run()
        assert mine.step == 1000 == solo.steps_done
        assert_same_snapshot(mine.stats, solo.last_stats, 1e-3)
    exact.run()
    assert close(results[lecture].loss, exact.last.loss, 1e-3)
    assert_same_snapshot(results[lecture].stats, exact.last_stats, 1e-3)
    # each run's stack holds its live parameters: evaluate sees them
    for t, solo in zip(sweep.trainers, solos):
        assert close(t.evaluate(("val",))["val"], solo.evaluate(("val",))["val"], 1e-3)


def test_lecture_loop_per_run(small_dataset):
    """Every run's step-1 figures against the lecture's own loop (autograd)."""
    sweep, _ = sweep_and_solos(small_dataset, GAINS, bias=True, batchnorm=False)
    results = sweep.step()
    for run, mine in zip(sweep.runs, results):
        oracle = lecture_run(small_dataset.train.X, small_dataset.train.Y,
                             small_dataset.vocab.size, 1, batchnorm=False,
                             gain=run.config.gain_value, n_hidden=40)
        assert close(mine.loss, oracle["first_loss"], 1e-5)
        tanhs = oracle["outs"][1::2][:len(mine.stats.layers)]
        for layer, t in zip(mine.stats.layers, tanhs):
            assert close(layer.std, t.std().item(), 1e-5)
            assert close(layer.grad_std, t.grad.std().item(), 1e-5)
            sat = ((t.abs() > 0.97).float().mean() * 100).item()
            assert abs(layer.saturation_pct - sat) <= 100 / t.numel() + 1e-9
        assert_ratios_close(mine.update_ratio_log10, oracle["update"], 1e-5)


def test_a_diverging_run_stops_alone(small_dataset):
    """lr 1e30 blows one run up; it stops like a solo run, the others go on."""
    sweep, _ = sweep_and_solos(small_dataset, ["lr=0.1,1e30,0.05"])
    solo = Trainer(sweep.runs[1].config, small_dataset, engine="fast")
    for _ in range(20):
        sweep.step()
        solo.step() if solo.stopped is None else None
    stopped = sweep.trainers[1].stopped
    assert stopped is not None and stopped.step == solo.stopped.step
    assert stopped.message() == solo.stopped.message()
    assert [len(idx) for idx, _ in sweep.groups] == [2]
    before = sweep.trainers[0].steps_done
    results = sweep.step()
    assert results[1] is None and results[0].step == before + 1 and results[2].step == before + 1
    assert all(math.isfinite(r.loss) for r in (results[0], results[2]))


def test_live_values_and_running_buffers(small_dataset):
    """A run's stack reads the stacked buffers: its parameters move with the
    batched step and its BatchNorm running buffers are updated in place."""
    sweep, solos = sweep_and_solos(small_dataset, GAINS, batchnorm=True)
    for _ in range(5):
        sweep.step()
    for t, solo in zip(sweep.trainers, solos):
        solo.run(5)
        for a, b in zip(t.stack.params, solo.stack.params):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
        for (_, bn), (_, sbn) in zip(t.stack.batchnorms(), solo.stack.batchnorms()):
            assert torch.allclose(bn.running_var, sbn.running_var, rtol=1e-5)
            assert torch.allclose(bn.running_mean, sbn.running_mean, rtol=1e-5, atol=1e-7)
        assert t.sample(3) == solo.sample(3)


def test_the_last_run_of_a_group_steps_alone(small_dataset):
    """When its partner stops, a run goes on with its own FastStep (still on
    its row of the stacked buffers) and stays equal to its solo run."""
    sweep, _ = sweep_and_solos(small_dataset, ["lr=0.1,1e30"])
    solo = Trainer(sweep.runs[0].config, small_dataset, engine="fast")
    for _ in range(60):
        mine, theirs = sweep.step()[0], solo.step()
    assert sweep.trainers[1].stopped is not None
    assert [(idx, group) for idx, group in sweep.groups] == [([0], None)]
    assert close(mine.loss, theirs.loss, 1e-4)
    assert_ratios_close(mine.update_ratio_log10, theirs.update_ratio_log10, 1e-4)


def test_compiled_sweep_equals_fast_sweep(small_dataset):
    """The compiled batched step (plain steps) computes what the eager one does
    over 120 steps; a run that diverges in the graph stops alone there too.
    Both sweeps have two runs, so one graph serves both: a group that loses a
    run is a new shape, and the three-run sweep this was compiled a second
    graph (~25 s) that tested nothing the first did."""
    import torch._dynamo.utils as dynamo_utils

    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    base = TrainConfig(n_hidden=40, steps=120).validated()
    for lrs in ("lr=0.1,0.05", "lr=0.1,1e30"):
        runs = parse_sweep([lrs], base)
        compiled = SweepTrainer(runs, small_dataset, engine="compiled")
        fast = SweepTrainer(runs, small_dataset, engine="fast")
        while not fast.finished:
            a, b = compiled.step(), fast.step()
        for mine, theirs in zip(a, b):
            if theirs is None:
                assert mine is None
                continue
            assert close(mine.loss, theirs.loss, 1e-4)
            assert_ratios_close(mine.update_ratio_log10, theirs.update_ratio_log10, 1e-4)
            assert_same_snapshot(mine.stats, theirs.stats, 1e-4)
    assert not compiled.trainers[0].stopped and compiled.trainers[0].steps_done == 120
    assert compiled.trainers[1].stopped.message() == fast.trainers[1].stopped.message()
    # fresh trainers of the same shapes: the sweep's graph, not a second compile
    group = BatchedGroup([Trainer(r.config, small_dataset, engine="fast") for r in runs],
                         "compiled")
    group.step()   # step 1 has stats: eager
    group.step()
    assert group.compiled.compiled is True and group.engine_now == "compiled"
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs + 1


def test_auto_sweep_compiles_in_the_background(small_dataset):
    """The default engine steps a long sweep eagerly while its batched graph
    compiles on a thread, then through the graph, computing what the fast
    sweep computes."""
    from traintop.commands.bench_sweep import GAINS

    # the bench's sweep (test_bench then finds this package compiled)
    base = TrainConfig(n_hidden=40, steps=20_000).validated()
    runs = parse_sweep([GAINS], base)
    auto = SweepTrainer(runs, small_dataset, engine="auto")
    fast = SweepTrainer(runs, small_dataset, engine="fast")
    (_, group), = auto.groups
    # a graph compiled on a thread (already done where this process compiled
    # these shapes before), never by the first step
    assert group.compiled is not None and group.compiled._ready is not None
    a, b = auto.step(), fast.step()
    assert group.compiled.wait(600)
    for _ in range(150):
        a, b = auto.step(), fast.step()
    assert auto.engine_now == "compiled" and group.compiled.compiled is True
    for mine, theirs in zip(a, b):
        assert close(mine.loss, theirs.loss, 1e-4)
        assert_ratios_close(mine.update_ratio_log10, theirs.update_ratio_log10, 1e-4)
