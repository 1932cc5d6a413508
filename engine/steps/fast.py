"""The fast engine: the lecture's stack, forward and backward written out by hand.

The exact engine (traintop.engine.training.trainer with autograd) follows the lecture op for
op, so it reproduces the lecture's figures bit for bit; but the stack is so
small that a step is bound by per-operation overhead, and the lecture's
BatchNorm alone costs ~14 autograd nodes a layer. This engine computes the
same mathematics with far fewer operations:

- BatchNorm uses torch's fused native_batch_norm (one kernel forward, one
  backward). Torch normalises with the biased batch variance, the lecture
  with the unbiased one; for a batch of n the two agree exactly when gamma is
  scaled by sqrt((n-1)/n) and eps by (n-1)/n, so that is what is passed
  (mathematically the lecture's layer; the last bits differ).
- All parameters live in one flat buffer and all gradients in another (the
  stack's tensors become views into them), so the SGD update is one add_,
  gradients are written in place and never zeroed.
- Parameters of one shape sit side by side, so the per-parameter stds of
  the update:data ratio are one reduction per shape group.
- Full diagnostics are batched: all block outputs (and their gradients) in
  one tensor, every histogram from one bincount, one host transfer.

Results are the exact engine's to ~1e-6 relative after one step; rounding
differences then grow slowly with training (see tests/test_fast_step.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from traintop.engine.model.layers import BatchNorm1d, Linear
from traintop.engine.results import Histogram, LayerStats, StatsSnapshot, WeightStats
from .stats import BINS, SATURATION, FlatReader

_aten = torch.ops.aten
_native_bn_backward = _aten.native_batch_norm_backward.default
_tanh_backward = _aten.tanh_backward.default
WIDE = 4096  # elements; weights this big get float32 moments (see FastStep.moments)


@dataclass
class _Block:
    """One Linear, its optional BatchNorm and Tanh, as positions and tensors."""

    lin_pos: int
    bn_pos: int | None
    act_pos: int | None
    out_pos: int          # the layer whose output the diagnostics measure
    W: torch.Tensor
    b: torch.Tensor | None
    gW: torch.Tensor
    gb: torch.Tensor | None
    gamma: torch.Tensor | None = None
    beta: torch.Tensor | None = None
    ggamma: torch.Tensor | None = None
    gbeta: torch.Tensor | None = None
    gs: torch.Tensor | None = None   # gamma * sqrt((n-1)/n), refreshed every forward


class FastStep:
    """Forward, backward, update and diagnostics of one step, without autograd.

    Built on a freshly made Stack: it moves the stack's parameters into one
    flat buffer and rebinds the layers to views of it, so everything that
    reads the stack (inference, checkpoints, the trainer) sees the same
    tensors this engine updates.
    """

    def __init__(self, stack, batch_size: int, device: torch.device,
                 storage: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`storage`: (parameters, gradients), two flat buffers of the stack's
        size to live in instead of fresh ones (a sweep's batched step hands
        each run a row of its stacked buffers, traintop.engine.steps.batched)."""
        self.stack = stack
        self._storage = storage
        self.device = device
        self.batch = batch_size
        n = batch_size
        # The lecture's unbiased-variance BatchNorm as torch's biased one.
        self.bn_scale = math.sqrt((n - 1) / n) if n > 1 else 1.0
        self._minus_one = torch.full((batch_size, 1), -1.0, device=device)
        self._make_flat()
        self._make_blocks()
        self._make_stats_layout()

    # ----- layout --------------------------------------------------------------
    def _make_flat(self) -> None:
        stack = self.stack
        params = [p.detach() for p in stack.params]
        shapes = [tuple(p.shape) for p in params]
        # Parameters of equal shape sit side by side, so one reduction serves
        # a group. Order: wide weights (see moments), other 2-D ones, then
        # 1-D ones with BatchNorm gammas before betas, so that all gammas of a
        # width are scaled by one operation; otherwise parameter order.
        is_beta = [n.endswith(".beta") for n in stack.param_names]
        order: dict[tuple, list[int]] = {}

        def wide(i: int) -> bool:
            return len(shapes[i]) == 2 and params[i].numel() >= WIDE

        for i in sorted(range(len(shapes)),
                        key=lambda i: (not wide(i), len(shapes[i]) != 2, is_beta[i], i)):
            order.setdefault(shapes[i], []).append(i)
        total = sum(p.numel() for p in params)
        kw = dict(dtype=params[0].dtype, device=self.device)
        if self._storage is not None:
            self.flat, self.flat_grad = self._storage
            assert self.flat.numel() == total and self.flat_grad.numel() == total
            self.flat_grad.zero_()
        else:
            self.flat = torch.empty(total, **kw)
            self.flat_grad = torch.zeros(total, **kw)
        views: list = [None] * len(params)
        grads: list = [None] * len(params)
        self.groups: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = []
        self.spans: list[tuple[int, int, int, int]] = []  # (start, end, members, numel)
        self.layout: list[int] = []       # parameter index at each layout slot
        off = 0
        for shape, members in order.items():
            size = params[members[0]].numel()
            start = off
            for i in members:
                views[i] = self.flat[off:off + size].view(shape)
                views[i].copy_(params[i])
                grads[i] = self.flat_grad[off:off + size].view(shape)
                off += size
            span = slice(start, off)
            self.groups.append((self.flat[span].view(len(members), size),
                                self.flat_grad[span].view(len(members), size), members))
            self.spans.append((start, off, len(members), size))
            self.layout += members
        # Per-row std in torch is ~20x slower than a sum, so the moments come
        # from sums: float32 sums of x and |x|^2 (read once, vectorised) for
        # wide weight matrices, whose mean is small next to their spread; one
        # float64 pass over everything else (BatchNorm gamma sits near 1 with
        # a tiny spread, where a one-pass float32 variance would cancel).
        self.wide_spans = [sp for sp, (_, _, m) in zip(self.spans, self.groups) if wide(m[0])]
        self.narrow_spans = [sp for sp, (_, _, m) in zip(self.spans, self.groups)
                             if not wide(m[0])]
        self.narrow_start = self.narrow_spans[0][0] if self.narrow_spans else total
        n_wide = sum(k for _, _, k, _ in self.wide_spans)
        self.wide_sums = torch.empty((4, n_wide), dtype=self.flat.dtype, device=self.device)
        self.moment_buf = torch.empty((4, total - self.narrow_start), dtype=torch.float64,
                                      device=self.device)
        self.numel = torch.tensor([p.numel() for p in params], dtype=torch.float64,
                                  device=self.device)
        # slot of each parameter in the grouped order, to put figures back in order
        self.unlayout = torch.tensor([self.layout.index(i) for i in range(len(params))],
                                     device=self.device)
        self.weight_params = [i for i, s in enumerate(shapes) if len(s) == 2]
        self.grads = grads
        # Rebind the stack to the views: C, then each layer's own attributes.
        stack.C = views[0]
        k = 1
        for layer in stack.layers:
            for name in layer.parameter_names():
                setattr(layer, name, views[k])
                k += 1
        stack._collect()
        for p, g in zip(stack.params, grads):
            p.grad = g  # what the trainer's gradient culprit search reads

    def _make_blocks(self) -> None:
        stack = self.stack
        grad_of = {id(p): g for p, g in zip(stack.params, self.grads)}
        self.gC = grad_of[id(stack.C)]
        blocks: list[_Block] = []
        for pos, layer in enumerate(stack.layers):
            if isinstance(layer, Linear):
                blocks.append(_Block(pos, None, None, pos, layer.weight, layer.bias,
                                     grad_of[id(layer.weight)],
                                     None if layer.bias is None else grad_of[id(layer.bias)]))
            elif isinstance(layer, BatchNorm1d):
                blk = blocks[-1]
                blk.bn_pos = blk.out_pos = pos
                blk.gamma, blk.beta = layer.gamma, layer.beta
                blk.ggamma, blk.gbeta = grad_of[id(layer.gamma)], grad_of[id(layer.beta)]
            else:  # Tanh
                blocks[-1].act_pos = blocks[-1].out_pos = pos
        self.blocks = blocks
        self.hidden = blocks[:-1]      # the blocks the diagnostics measure
        # gamma * sqrt((n-1)/n) of every BatchNorm, one multiply per run of
        # adjacent gammas, into persistent views the forward hands to torch
        gammas = [blk for blk in blocks if blk.gamma is not None]
        self.gamma_runs = []
        if gammas:
            self.scaled_gammas = torch.empty(sum(b.gamma.numel() for b in gammas),
                                             dtype=self.flat.dtype, device=self.device)
            off = 0
            base = self.flat.data_ptr()
            item = self.flat.element_size()
            for blk in gammas:
                n = blk.gamma.numel()
                start = (blk.gamma.data_ptr() - base) // item
                blk.gs = self.scaled_gammas[off:off + n]
                run = self.gamma_runs[-1] if self.gamma_runs else None
                if run is not None and run[1] == start and run[3] == off:
                    self.gamma_runs[-1] = (run[0], start + n, run[2], off + n)
                else:
                    self.gamma_runs.append((start, start + n, off, off + n))
                off += n
            self.gamma_runs = [(self.flat[a:b], self.scaled_gammas[c:d])
                               for a, b, c, d in self.gamma_runs]
        self.eps: list[float] = []
        for blk in blocks:
            if blk.bn_pos is not None:
                eps = stack.layers[blk.bn_pos].eps
                self.eps.append(eps * self.bn_scale ** 2)
            else:
                self.eps.append(0.0)

    def _make_stats_layout(self) -> None:
        """Histogram segments: each block output, each gradient of one, each
        weight gradient; one bincount counts them all."""
        L = len(self.hidden)
        per_layer = [self.batch * blk.W.shape[1] for blk in self.hidden]
        sizes = per_layer + per_layer      # block outputs, then their gradients
        params = self.stack.params
        weight_slots = [i for i in self.layout if i in self.weight_params]
        sizes += [params[i].numel() for i in weight_slots]
        self.weight_slots = weight_slots   # weight parameter index per segment
        self.weight_index = torch.tensor(weight_slots, device=self.device)
        self.n_layers = L
        self.weight_groups = [g for _, g, members in self.groups
                              if len(params[members[0]].shape) == 2]
        self.seg_sizes = torch.tensor(sizes, dtype=torch.float64, device=self.device)
        self.n_segments = len(sizes)
        self.bin_offsets = torch.arange(len(sizes), device=self.device,
                                        dtype=params[0].dtype) * BINS
        # what _unpack labels the figures with, fixed for the stack
        kinds = [layer.kind for layer in self.stack.layers]
        self._layer_plan = [(blk.out_pos, kinds[blk.out_pos], blk.W.shape[1])
                            for blk in self.hidden]
        slot = {i: j for j, i in enumerate(weight_slots)}
        self._weight_plan = [(slot[i], self.stack.param_names[i], tuple(params[i].shape))
                             for i in self.weight_params]

    # ----- the step ------------------------------------------------------------
    def forward(self, Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
        """Loss of the batch; keeps what backward needs. Sets each layer's .out."""
        loss, self._saved, self._loss_parts = self.forward_parts(Xb, Yb, True)
        return loss

    def forward_parts(self, Xb: torch.Tensor, Yb: torch.Tensor, keep_outs: bool):
        """(loss, saved, loss parts): forward without storing anything on self,
        so a compiled step that skips the diagnostics has no tensors to hand back."""
        layers = self.stack.layers
        x = self.stack.C.index_select(0, Xb.reshape(-1)).view(Xb.shape[0], -1)
        saved = [Xb.reshape(-1)]
        for gamma, scaled in self.gamma_runs:
            torch.mul(gamma, self.bn_scale, out=scaled)
        for blk, eps in zip(self.blocks, self.eps):
            h = torch.mm(x, blk.W) if blk.b is None else torch.addmm(blk.b, x, blk.W)
            if keep_outs:
                layers[blk.lin_pos].out = h
            y = h
            bn = None
            if blk.bn_pos is not None:
                layer = layers[blk.bn_pos]
                gs = blk.gs
                if layer.running_mean.dim() != 1 or layer.running_var.dim() != 1:
                    # running buffers are updated in place and must be (dim,)
                    layer.running_mean = layer.running_mean.reshape(-1).contiguous()
                    layer.running_var = layer.running_var.reshape(-1).contiguous()
                y, mean, invstd = torch.native_batch_norm(h, gs, blk.beta, layer.running_mean,
                                                          layer.running_var, True,
                                                          layer.momentum, eps)
                if keep_outs:
                    layer.out = y
                bn = (gs, mean, invstd)
            t = y
            if blk.act_pos is not None:
                t = torch.tanh(y)
                if keep_outs:
                    layers[blk.act_pos].out = t
            saved.append((x, h, bn, t))
            x = t
        logp = torch.log_softmax(x, 1)
        loss = torch.nn.functional.nll_loss(logp, Yb)
        return loss, saved, (logp, Yb)

    def backward(self) -> None:
        """Gradients of the last forward into the flat gradient buffer."""
        self._out_grads = self.backward_parts(self._saved, self._loss_parts)

    def backward_parts(self, saved: list, loss_parts: tuple) -> list[torch.Tensor]:
        """Gradients into the flat gradient buffer; returns dloss/d(output) of
        each hidden block."""
        logp, Yb = loss_parts
        x0_index, saved = saved[0], saved[1:]
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / batch
        d = logp.exp()
        d.scatter_add_(1, Yb.view(-1, 1), self._minus_one[:Yb.shape[0]])
        d.mul_(1.0 / Yb.shape[0])
        out_grads = []
        for blk, eps, (x, h, bn, t) in zip(reversed(self.blocks), reversed(self.eps),
                                           reversed(saved)):
            out_grads.append(d)
            if blk.act_pos is not None:
                d = _tanh_backward(d, t)
            if bn is not None:
                gs, mean, invstd = bn
                d, dgs, dbeta = _native_bn_backward(d, h, gs, None, None, mean, invstd, True,
                                                    eps, [True, True, True])
                torch.mul(dgs, self.bn_scale, out=blk.ggamma)
                blk.gbeta.copy_(dbeta)
            torch.mm(x.t(), d, out=blk.gW)
            if blk.gb is not None:
                torch.sum(d, 0, out=blk.gb)
            d = torch.mm(d, blk.W.t())
        self.gC.zero_()
        self.gC.index_add_(0, x0_index, d.view(-1, self.gC.shape[1]))
        out_grads.reverse()
        return out_grads[:-1]

    def update(self, lr: float) -> None:
        self.flat.add_(self.flat_grad, alpha=-lr)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grad mean, grad std, data std) of every parameter, in parameter order."""
        parts = []
        if self.wide_spans:
            out, row = self.wide_sums, 0
            for a, b, k, n in self.wide_spans:
                g, p = self.flat_grad[a:b].view(k, n), self.flat[a:b].view(k, n)
                torch.sum(g, 1, out=out[0, row:row + k])
                torch.sum(p, 1, out=out[1, row:row + k])
                torch.linalg.vector_norm(g, dim=1, out=out[2, row:row + k])
                torch.linalg.vector_norm(p, dim=1, out=out[3, row:row + k])
                row += k
            out[2:].square_()
            parts.append(out.double())
        if self.narrow_spans:
            start = self.narrow_start
            buf = self.moment_buf
            buf[0].copy_(self.flat_grad[start:])
            buf[1].copy_(self.flat[start:])
            torch.mul(buf[:2], buf[:2], out=buf[2:])
            for a, b, k, n in self.narrow_spans:
                parts.append(buf[:, a - start:b - start].view(4, k, n).sum(2))
        return self.moments_from_sums(torch.cat(parts, dim=1)[:, self.unlayout])

    def moments_from_sums(self, sums: torch.Tensor):
        """(grad mean, grad std, data std) from the rows sum g, sum p, sum g^2,
        sum p^2 of every parameter (float64, parameter order)."""
        mean = sums[:2] / self.numel
        var = (sums[2:] - sums[:2] * mean) / (self.numel - 1)
        std = var.clamp_min(0).sqrt()
        return mean[0], std[0], std[1]

    @staticmethod
    def update_ratios(moments: tuple[torch.Tensor, ...], lr: float) -> torch.Tensor:
        """log10((lr * grad).std() / data.std()), lr * std(grad) being std(lr * grad)."""
        _, gstd, pstd = moments
        return (gstd * lr / pstd).log10()

    # ----- diagnostics ----------------------------------------------------------
    def snapshot(self, step: int, loss: float, lr: float, ratios: torch.Tensor,
                 moments: tuple[torch.Tensor, ...]) -> StatsSnapshot:
        """The full diagnostics of the step just taken, from one host transfer."""
        values = self.snapshot_tensor(*self.snapshot_values(ratios, moments, self._saved))
        return self.snapshot_from(values, step, loss, lr)

    def keep_measured(self, outs: list[torch.Tensor], out_grads: list[torch.Tensor]) -> None:
        """Hold a compiled step's measured outputs and their gradients where
        the eager forward and backward leave them (each measured layer's
        .out, self._out_grads), for snapshot_from. The other layers' .out
        keep what the last eager forward set."""
        layers = self.stack.layers
        for blk, t in zip(self.hidden, outs):
            layers[blk.out_pos].out = t
        self._out_grads = out_grads

    def snapshot_values(self, ratios: torch.Tensor, moments: tuple[torch.Tensor, ...],
                        saved: list) -> torch.Tensor:
        """(head figures, histogram bin of every value, histogram norms) from
        forward_parts' saved tensors and self._out_grads, batched into few
        large operations for eager dispatch (the compiled engine computes the
        same parts with traintop.engine.steps.graph_stats); see snapshot_tensor."""
        L = self.n_layers
        T = torch.stack([t for (_, _, _, t) in saved[1:L + 1]]).view(L, -1)  # (L, B*H)
        D = torch.stack(self._out_grads).view(L, -1)
        TD = torch.cat([T, D])
        TDd = TD.double()
        n = TD.shape[1]
        s1, s2 = TDd.sum(1), (TDd * TDd).sum(1)
        td_mean = s1 / n
        td_std = ((s2 - s1 * td_mean) / (n - 1)).clamp_min_(0).sqrt_()
        A = T.abs()
        sat_pct = (A > SATURATION).to(T.dtype).mean(dim=1) * 100
        units = T.shape[1] // self.batch
        # a unit is dead when even its least saturated example is saturated
        dead = (A.view(L, self.batch, units).amin(dim=1) > SATURATION).sum(dim=1)
        absmax = A.amax(dim=1)
        blocks = [TD] + [g for g in self.weight_groups]
        lo = [b.amin(dim=1) for b in blocks]
        hi = [b.amax(dim=1) for b in blocks]
        lo, hi = torch.cat(lo), torch.cat(hi)
        same = lo == hi  # a zero-width range is widened by 0.5 each side, as torch does
        lo = torch.where(same, lo - 0.5, lo)
        hi = torch.where(same, hi + 0.5, hi)
        span = hi - lo
        # torch.histc's own binning, ((x - lo) * bins / (hi - lo)) truncated,
        # each segment's bins offset so that one bincount counts them all.
        bins = []
        row = 0
        for b in blocks:
            k = b.shape[0]
            v = (b - lo[row:row + k, None]) * BINS
            v.div_(span[row:row + k, None]).floor_().clamp_(0, BINS - 1)
            bins.append(v.add_(self.bin_offsets[row:row + k, None]).view(-1))
            row += k
        index = torch.cat(bins)
        width = (hi.double() - lo.double()) / BINS  # as stats.py computes it, in float64
        head = self.snapshot_head(td_mean, td_std, sat_pct, dead, absmax, lo, hi, ratios,
                                  moments)
        return head, index.to(torch.int32), self.seg_sizes * width

    def snapshot_head(self, td_mean, td_std, sat_pct, dead, absmax, lo, hi, ratios, moments):
        """The snapshot's figures before its histograms, in _unpack's order:
        td_mean and td_std hold the block outputs' figures, then their gradients'."""
        L = self.n_layers
        gmean, gstd, pstd = moments
        wi = self.weight_index
        return torch.cat([td_mean[:L], td_std[:L], sat_pct.double(), dead.double(),
                          absmax.double(), td_mean[L:], td_std[L:], gmean[wi], gstd[wi],
                          gstd[wi] / pstd[wi], lo.double(), hi.double(), ratios.double()])

    def snapshot_tensor(self, head: torch.Tensor, index: torch.Tensor,
                        norm: torch.Tensor) -> torch.Tensor:
        """snapshot_values' parts as one tensor (the one host transfer): the
        head figures, the histogram norms and every histogram's counts from
        one bincount. Outside any compiled graph: bincount's length depends
        on the data, and the static-shape stand-ins (index_add, scatter_add)
        are slower, in the graph too (inductor emits atomic adds)."""
        counts = torch.bincount(index, minlength=self.n_segments * BINS)
        return torch.cat([head, norm, counts.to(head.dtype)])

    def snapshot_from(self, values: torch.Tensor, step: int, loss: float,
                      lr: float) -> StatsSnapshot:
        """The snapshot of snapshot_tensor's tensor. Densities are divided on
        the host, in float64 as torch would, and every figure leaves numpy
        in one tolist per part (Python floats, as the snapshot holds)."""
        v = values.cpu().numpy()
        S = self.n_segments
        n_head = v.shape[0] - S - S * BINS
        density = v[n_head + S:].reshape(S, BINS) / v[n_head:n_head + S, None]
        layers = self.stack.layers
        for blk, d in zip(self.hidden, self._out_grads):  # as retain_grad leaves them
            layers[blk.out_pos].out.grad = d
        return self._unpack(v[:n_head].tolist(), density.tolist(), step, loss, lr)

    def _unpack(self, head: list[float], density: list[list[float]], step: int, loss: float,
                lr: float) -> StatsSnapshot:
        L, S, P = self.n_layers, self.n_segments, len(self.stack.params)
        nw = len(self.weight_slots)
        take = FlatReader(head).take

        t_mean, t_std, sat, dead, absmax, d_mean, d_std = (take(L) for _ in range(7))
        w_mean, w_std, w_ratio = take(nw), take(nw), take(nw)
        lo, hi = take(S), take(S)
        update = tuple(take(P))
        # lo and hi are the widened range already (snapshot_values)
        hists = [Histogram(a, b, tuple(d)) for a, b, d in zip(lo, hi, density)]
        layers = tuple(
            LayerStats(index=pos, kind=kind, mean=t_mean[k], std=t_std[k], saturation_pct=sat[k],
                       dead=int(dead[k]), units=units, grad_mean=d_mean[k], grad_std=d_std[k],
                       absmax=absmax[k], hist=hists[k], grad_hist=hists[L + k])
            for k, (pos, kind, units) in enumerate(self._layer_plan))
        weights = tuple(WeightStats(name=name, shape=shape, grad_mean=w_mean[j],
                                    grad_std=w_std[j], grad_data_ratio=w_ratio[j],
                                    hist=hists[2 * L + j])
                        for j, name, shape in self._weight_plan)
        return StatsSnapshot(step, loss, lr, layers, weights, update)
