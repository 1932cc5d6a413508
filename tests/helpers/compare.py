"""Figures of two engines side by side: close to a relative tolerance, and
histograms that are torch's own (tests/test_fast_step.py, test_compiled_step.py,
test_sweep_batched.py)."""

from __future__ import annotations

import math

import torch

from traintop.engine.steps.stats import BINS

REL = 1e-5


def close(a: float, b: float, rel: float = REL, scale: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel * scale + 1e-12)


def assert_hist_close(mine, theirs, rel: float) -> None:
    """Same range; same distribution up to values sitting on a bin edge, which
    a last-bit difference moves to the neighbouring bin (the CDFs agree)."""
    assert len(mine.density) == len(theirs.density) == BINS
    span = theirs.hi - theirs.lo
    assert abs(mine.lo - theirs.lo) <= rel * span and abs(mine.hi - theirs.hi) <= rel * span
    cdf_mine = torch.tensor(mine.density, dtype=torch.float64).cumsum(0) * span / BINS
    cdf_theirs = torch.tensor(theirs.density, dtype=torch.float64).cumsum(0) * span / BINS
    assert abs(cdf_theirs[-1].item() - 1) < 1e-6 and abs(cdf_mine[-1].item() - 1) < 1e-4
    assert (cdf_mine - cdf_theirs).abs().max().item() < 0.01


def assert_is_torch_histogram(hist, data: torch.Tensor) -> None:
    """The fast engine's batched binning is torch.histc's (what the exact engine
    counts with), bin for bin."""
    data = data.detach().float().cpu()
    lo, hi = data.min().item(), data.max().item()
    assert (hist.lo, hist.hi) == ((lo, hi) if lo < hi else (lo - 0.5, hi + 0.5))
    counts = torch.histc(data, bins=BINS).double()
    expected = counts / (data.numel() * (hist.hi - hist.lo) / BINS)
    assert torch.allclose(torch.tensor(hist.density, dtype=torch.float64), expected,
                          rtol=1e-12, atol=0)


def assert_histograms_are_torchs(stats, stack) -> None:
    """Every histogram of a snapshot is torch's, of the tensor the stack holds."""
    for s in stats.layers:
        assert_is_torch_histogram(s.hist, stack.layers[s.index].out)
        assert_is_torch_histogram(s.grad_hist, stack.layers[s.index].out.grad)
    params = dict(zip(stack.param_names, stack.params))
    for w in stats.weights:
        assert_is_torch_histogram(w.hist, params[w.name].grad)


def assert_snapshots_close(fast, exact, rel: float) -> None:
    assert fast.step == exact.step and fast.lr == exact.lr
    assert close(fast.loss, exact.loss, rel)
    assert [(l.index, l.kind, l.units) for l in fast.layers] == \
        [(l.index, l.kind, l.units) for l in exact.layers]
    for f, e in zip(fast.layers, exact.layers):
        assert close(f.std, e.std, rel) and close(f.mean, e.mean, rel, e.std)
        assert close(f.saturation_pct, e.saturation_pct, rel, 1.0)
        assert f.dead == e.dead
        assert close(f.grad_std, e.grad_std, rel)
        assert close(f.grad_mean, e.grad_mean, rel, e.grad_std)
        assert_hist_close(f.hist, e.hist, rel)
        assert_hist_close(f.grad_hist, e.grad_hist, rel)
    assert [(w.name, w.shape) for w in fast.weights] == [(w.name, w.shape) for w in exact.weights]
    for f, e in zip(fast.weights, exact.weights):
        assert close(f.grad_std, e.grad_std, rel)
        assert close(f.grad_mean, e.grad_mean, rel, e.grad_std)
        assert close(f.grad_data_ratio, e.grad_data_ratio, rel)
        assert_hist_close(f.hist, e.hist, rel)

