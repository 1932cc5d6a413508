"""The batched step's plain step (no diagnostics) written for inductor.

traintop.engine.steps.batched is written for eager dispatch: one fused
native_batch_norm over a (B, R*H) layout and in-place writes into views of
the stacked buffers, because each eager operation costs microseconds. Traced
by inductor, that layout came out as scalar loops (a channel index R*H split
by division into run and unit defeats its vectoriser; ~440 us for each
layer's BatchNorm and tanh, where the work is 12,800 values) and every
attribute of the step object became a guard to check per call (~230 us).
So here the step is a pure function of tensors, on an (R, B, H) layout whose
innermost axis is contiguous: BatchNorm is spelled out (batch mean, biased
variance, the lecture's unbiased scaling folded into gamma and eps exactly as
the eager step folds it), backward by hand as in the fast engine, and the
structure (offsets, shapes, eps) is a hashable `Plan` fixed at trace time.

It computes what the eager batched step computes (to float32 rounding;
tests/test_sweep_batched.py compares them): each run's loss, its gradients
into its row of the gradient buffer, the SGD update (skipped for a run whose
loss is not finite), the running statistics, and the update:data moments
(summed as traintop.engine.steps.graph_stats sums them for one run).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .fast import WIDE


class BlockPlan(NamedTuple):
    W: int                 # offset of the weight in a run's row
    fan_in: int
    fan_out: int
    b: int | None          # offset of the bias, if any
    act: bool              # tanh after it
    gamma: int | None      # offsets of BatchNorm's gamma and beta, if any
    beta: int | None
    eps: float             # eps scaled as the fast engine scales it
    momentum: float


class Plan(NamedTuple):
    R: int
    total: int             # parameters in a run's row
    C: int                 # offset of the embedding table
    vocab: int
    n_embd: int
    bn_scale: float
    blocks: tuple[BlockPlan, ...]
    params: tuple[tuple[int, int, int], ...]   # (offset, numel, row length if wide, else 0)


def make_plan(step) -> Plan:
    """The Plan of a BatchedStep (traintop.engine.steps.batched)."""
    f0 = step.fasts[0]
    row = f0.flat
    item = row.element_size()

    def off(t: torch.Tensor | None) -> int | None:
        return None if t is None else (t.data_ptr() - row.data_ptr()) // item

    blocks = tuple(BlockPlan(off(blk.W), blk.W.shape[0], blk.W.shape[1], off(blk.b),
                             blk.act_pos is not None, off(blk.gamma), off(blk.beta), eps,
                             b.momentum)
                   for blk, b, eps in zip(f0.blocks, step.blocks, f0.eps))
    params = tuple((off(p), p.numel(), p.shape[1] if p.dim() == 2 and p.numel() >= WIDE else 0)
                   for p in f0.stack.params)
    return Plan(step.R, row.numel(), off(f0.stack.C), step.vocab, step.C.shape[2],
                step.bn_scale, blocks, params)


def _rows(flat: torch.Tensor, start: int, n: int) -> torch.Tensor:
    return flat[:, start:start + n]


def plain_step(plan: Plan, flat: torch.Tensor, flat_grad: torch.Tensor,
               running: list[torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor,
               lr: torch.Tensor):
    """One step of every run: ((R, 2) head of [loss, any NaN ratio], moments,
    ratios). `running`: each BatchNorm's (R*H,) running mean then running
    variance, updated in place; `lr` (R, 1) float64."""
    R, B = Yb.shape
    E = plan.n_embd
    C = _rows(flat, plan.C, plan.vocab * E).reshape(R * plan.vocab, E)
    rows = (Xb + (torch.arange(R, device=Xb.device) * plan.vocab).view(R, 1, 1)).reshape(-1)
    x = C[rows].view(R, B, -1)
    saved = []
    k = 0
    for blk in plan.blocks:
        W = _rows(flat, blk.W, blk.fan_in * blk.fan_out).view(R, blk.fan_in, blk.fan_out)
        h = torch.bmm(x, W)
        if blk.b is not None:
            h = h + _rows(flat, blk.b, blk.fan_out).view(R, 1, blk.fan_out)
        bn = None
        if blk.gamma is not None:
            H = blk.fan_out
            gs = _rows(flat, blk.gamma, H).view(R, 1, H) * plan.bn_scale
            beta = _rows(flat, blk.beta, H).view(R, 1, H)
            mean = h.mean(1, keepdim=True)
            diff = h - mean
            var = (diff * diff).mean(1, keepdim=True)          # biased, as the kernel's
            invstd = torch.rsqrt(var + blk.eps)
            xhat = diff * invstd
            h_out = xhat * gs + beta
            rm, rv = running[k], running[k + 1]
            m = blk.momentum
            rm.copy_(rm * (1 - m) + mean.view(-1) * m)
            rv.copy_(rv * (1 - m) + var.view(-1) * (m * B / (B - 1)))
            k += 2
            bn = (xhat, invstd, gs)
        else:
            h_out = h
        t = torch.tanh(h_out) if blk.act else h_out
        saved.append((x, bn, t))
        x = t
    logp = torch.log_softmax(x, 2)
    losses = -logp.gather(2, Yb.unsqueeze(2)).squeeze(2).mean(1)
    # d(mean cross-entropy)/d(logits) = (softmax - onehot) / batch
    onehot = torch.arange(logp.shape[2], device=Yb.device).view(1, 1, -1) == Yb.unsqueeze(2)
    d = (logp.exp() - onehot.to(logp.dtype)) * (1.0 / B)
    grads: dict[int, torch.Tensor] = {}
    for blk, (x, bn, t) in zip(reversed(plan.blocks), reversed(saved)):
        if blk.act:
            d = d * (1 - t * t)
        if bn is not None:
            xhat, invstd, gs = bn
            dbeta = d.sum(1, keepdim=True)
            dgs = (d * xhat).sum(1, keepdim=True)
            grads[blk.gamma] = (dgs * plan.bn_scale).view(R, -1)
            grads[blk.beta] = dbeta.view(R, -1)
            d = gs * invstd * (1.0 / B) * (d * B - dbeta - xhat * dgs)
        grads[blk.W] = torch.bmm(x.transpose(1, 2), d).view(R, -1)
        if blk.b is not None:
            grads[blk.b] = d.sum(1)
        d = torch.bmm(d, _rows(flat, blk.W, blk.fan_in * blk.fan_out)
                      .view(R, blk.fan_in, blk.fan_out).transpose(1, 2))
    gC = torch.zeros((R * plan.vocab, E), dtype=d.dtype, device=d.device)
    gC = gC.index_add(0, rows, d.reshape(-1, E))
    grads[plan.C] = gC.view(R, -1)
    new_grad = torch.cat([grads[o] for o in sorted(grads)], 1)
    flat_grad.copy_(new_grad)
    finite = torch.isfinite(losses).view(R, 1)
    new = torch.where(finite, flat - lr.to(flat.dtype) * new_grad, flat)
    flat.copy_(new)
    sums = []
    for o, n, row in plan.params:
        g, p = grads[o], _rows(new, o, n)
        if row:
            # float32 by rows, then the rows' sums: inductor sums a float32
            # reduction over more than 4,096 values through a slower cascade
            g, p = g.view(R, -1, row), p.view(R, -1, row)
            sums.append(torch.stack([g.sum(2).sum(1), p.sum(2).sum(1), (g * g).sum(2).sum(1),
                                     (p * p).sum(2).sum(1)]).double())
            continue
        g, p = g.double(), p.double()
        sums.append(torch.stack([g.sum(1), p.sum(1), (g * g).sum(1), (p * p).sum(1)]))
    sums = torch.stack(sums, 2)                                   # (4, R, P)
    numel = torch.tensor([n for _, n, _ in plan.params], dtype=torch.float64,
                         device=flat.device)
    mean = sums[:2] / numel
    var = (sums[2:] - sums[:2] * mean) / (numel - 1)
    std = var.clamp_min(0).sqrt()
    moments = (mean[0], std[0], std[1])
    ratios = (std[0] * lr / std[1]).log10()
    head = torch.cat([losses.double().view(-1, 1),
                      torch.isnan(ratios).any(1, keepdim=True).double()], 1)
    return head, moments, ratios
