"""The lecture's diagnostics, computed from tensors the step already holds.

All figures of a snapshot are gathered into one tensor and moved to the host
in one transfer: one sync per snapshot instead of one `.item()` per figure.
The reductions are the lecture's own (float32 mean, unbiased std, the
saturation share as a float32 mean), so the figures match its printout.
"""

from __future__ import annotations

import torch

from traintop.engine.results import Histogram, LayerStats, StatsSnapshot, WeightStats

SATURATION = 0.97   # |t| above this counts as saturated (the lecture's threshold)
BINS = 100          # torch.histogram's default, as the lecture plots


class FlatReader:
    """Reads consecutive runs off the flat list of a snapshot's one host transfer."""

    def __init__(self, values: list[float]):
        self.values, self.pos = values, 0

    def take(self, n: int) -> list[float]:
        out = self.values[self.pos:self.pos + n]
        self.pos += n
        return out


def update_ratios(params: list[torch.Tensor], lr: float) -> torch.Tensor:
    """log10((lr * grad).std() / data.std()) per parameter, as one (P,) tensor."""
    with torch.no_grad():
        return torch.stack([((lr * p.grad).std() / p.data.std()) for p in params]).log10()


def _hist_parts(t: torch.Tensor) -> list[torch.Tensor]:
    # min, max and histc over the data's own range, as torch.histogram does.
    return [t.min().reshape(1), t.max().reshape(1), torch.histc(t, bins=BINS)]


def _histogram(lo: float, hi: float, counts: list[float], total: int) -> Histogram:
    if hi == lo:  # torch widens a zero-width range by 0.5 on each side
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / len(counts)
    return Histogram(lo=lo, hi=hi, density=tuple(c / (total * width) for c in counts))


def snapshot(stack, step: int, loss: float, lr: float, ratios: torch.Tensor) -> StatsSnapshot:
    """Full diagnostics of the step just taken (its `.out` tensors and grads)."""
    positions = stack.tanh_positions()
    weights = [(n, p) for n, p in zip(stack.param_names, stack.params) if p.ndim == 2]
    parts: list[torch.Tensor] = []
    with torch.no_grad():
        for i in positions:
            t = stack.layers[i].out
            g = t.grad
            saturated = t.abs() > SATURATION
            parts.append(torch.stack([
                t.mean(), t.std(), saturated.float().mean() * 100,
                saturated.all(dim=0).sum().to(t.dtype), g.mean(), g.std(), t.abs().max(),
            ]))
            parts += _hist_parts(t) + _hist_parts(g)
        for _, p in weights:
            g = p.grad
            parts.append(torch.stack([g.mean(), g.std(), g.std() / p.std()]))
            parts += _hist_parts(g)
        parts.append(ratios.to(parts[0].dtype) if parts else ratios)
        flat = torch.cat(parts).tolist()  # the one host sync

    take = FlatReader(flat).take

    layers = []
    for i in positions:
        t = stack.layers[i].out
        mean, std, sat, dead, gmean, gstd, absmax = take(7)
        lo, hi = take(2)
        hist = _histogram(lo, hi, take(BINS), t.numel())
        glo, ghi = take(2)
        ghist = _histogram(glo, ghi, take(BINS), t.numel())
        layers.append(LayerStats(
            index=i, kind=stack.layers[i].kind, mean=mean, std=std, saturation_pct=sat,
            dead=int(dead), units=t.shape[1], grad_mean=gmean, grad_std=gstd,
            absmax=absmax, hist=hist, grad_hist=ghist,
        ))
    weight_stats = []
    for name, p in weights:
        gmean, gstd, ratio = take(3)
        lo, hi = take(2)
        weight_stats.append(WeightStats(
            name=name, shape=tuple(p.shape), grad_mean=gmean, grad_std=gstd,
            grad_data_ratio=ratio, hist=_histogram(lo, hi, take(BINS), p.numel()),
        ))
    update = tuple(take(len(stack.params)))
    return StatsSnapshot(step=step, loss=loss, lr=lr, layers=tuple(layers),
                         weights=tuple(weight_stats), update_ratio_log10=update)
