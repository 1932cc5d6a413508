"""The fast engine's update:data moments and snapshot figures, written for
torch.compile rather than for eager dispatch.

Eagerly, FastStep batches its work into few large operations (stacking every
layer output into one tensor, filling persistent buffers in place), because
each operation costs microseconds of dispatch. Inductor inverts that
trade-off: stacking and in-place writes into persistent buffers become extra
copy loops, and a concatenation of data-dependent pieces becomes one loop
that chooses its source per element. So here every reduction reads the
tensor the step already holds, functionally, and inductor fuses them into a
few loops over each tensor (traintop bench, lecture size, 1 thread: the
stats graph's own work ~100 us -> ~50 us, the moments ~34 us -> ~14 us).

The figures and their order are FastStep's (FastStep.snapshot_values,
FastStep.moments); tests/test_compiled_step.py checks them against the exact
engine and torch.histc.
"""

from __future__ import annotations

import torch

from .stats import BINS, SATURATION


def moments(fast, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad mean, grad std, data std) of every parameter, in parameter order,
    with `flat` the parameters after the update; the same sums as
    FastStep.moments (float32 for wide weights, float64 for the rest)."""
    parts = []
    wide = {sp[0] for sp in fast.wide_spans}
    for a, b, k, n in fast.spans:
        g, p = fast.flat_grad[a:b].view(k, n), flat[a:b].view(k, n)
        if a not in wide:
            g, p = g.double(), p.double()
        parts.append(torch.stack([g.sum(1), p.sum(1), (g * g).sum(1), (p * p).sum(1)]).double())
    sums = torch.cat(parts, 1)[:, fast.unlayout]
    return fast.moments_from_sums(sums)


def histogram_bins(values: torch.Tensor, lo: torch.Tensor, span: torch.Tensor,
                   offsets: torch.Tensor) -> torch.Tensor:
    """torch.histc's bin of every value of each row, ((x - lo) * bins / span)
    truncated into [0, bins), plus the row's offset, flattened to int32.
    NaN lands in bin 0: a diverged step's figures are dropped, but its index
    must stay inside the count."""
    v = ((values - lo[:, None]) * BINS / span[:, None]).floor()
    v = torch.where(v > 0, v, 0.0)
    v = torch.where(v < BINS - 1, v, float(BINS - 1))
    return (v + offsets[:, None]).to(torch.int32).view(-1)


def snapshot_values(fast, ratios: torch.Tensor, moment: tuple[torch.Tensor, ...],
                    outs: list[torch.Tensor], out_grads: list[torch.Tensor]):
    """FastStep.snapshot_values' (head, bin index, norms), from each hidden
    block's output and its gradient as the step produced them."""
    L, batch = len(outs), fast.batch
    segments = [t.reshape(1, -1) for t in outs] + [d.reshape(1, -1) for d in out_grads]
    n = segments[0].shape[1]
    s1 = torch.cat([x.double().sum(1) for x in segments])
    s2 = torch.cat([(x.double() * x.double()).sum(1) for x in segments])
    td_mean = s1 / n
    td_std = ((s2 - s1 * td_mean) / (n - 1)).clamp_min(0).sqrt()
    sat_pct = torch.cat([(t.abs() > SATURATION).to(t.dtype).mean(1) for t in segments[:L]]) * 100
    # a unit is dead when even its least saturated example is saturated
    dead = torch.stack([(t.abs().view(batch, -1).amin(0) > SATURATION).sum() for t in outs])
    absmax = torch.cat([t.abs().amax(1) for t in segments[:L]])
    blocks = segments + list(fast.weight_groups)
    lo = torch.cat([b.amin(1) for b in blocks])
    hi = torch.cat([b.amax(1) for b in blocks])
    same = lo == hi  # a zero-width range is widened by 0.5 each side, as torch does
    lo = torch.where(same, lo - 0.5, lo)
    hi = torch.where(same, hi + 0.5, hi)
    span = hi - lo
    bins, row = [], 0
    for b in blocks:
        k = b.shape[0]
        bins.append(histogram_bins(b, lo[row:row + k], span[row:row + k],
                                   fast.bin_offsets[row:row + k]))
        row += k
    return fast.snapshot_head(td_mean, td_std, sat_pct, dead, absmax, lo, hi, ratios, moment), \
        torch.cat(bins), fast.seg_sizes * ((hi.double() - lo.double()) / BINS)
