"""The batched engine: R runs of one shape stepped as one step (a sweep).

The stack is so small that a step is bound by per-operation overhead, so R
runs cost about as many operations as one when their tensors are stacked
along a run axis:

- Every run's FastStep lives in one row of two (R, P) buffers (parameters,
  gradients): each run's stack, and so its inference, checkpoints and
  snapshots, reads live views of its row, while the step reads a parameter
  of every run as one (R, ...) view.
- Linear is torch.bmm/baddbmm; each run's embedding is gathered with its
  own batch.
- BatchNorm of R runs is one fused native_batch_norm over (B, R*H): the
  channels are independent, so each run is normalised with its own batch
  statistics (the lecture's unbiased variance through the same gamma and
  eps scaling as traintop.engine.steps.fast). Each run's running buffers
  are views of one (R*H,) buffer that the kernel updates in place.
- The SGD update is one multiply-add with a per-run learning rate; the
  update:data moments of every run are one reduction per shape group.

Full diagnostics are rare (every stats_every steps), so a run's snapshot is
its own FastStep's, fed with that run's slice of the step's tensors: the
figures are the solo engine's by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from traintop.engine.results import StatsSnapshot
from .fast import FastStep

_aten = torch.ops.aten
_native_bn_backward = _aten.native_batch_norm_backward.default
_tanh_backward = _aten.tanh_backward.default


@dataclass
class _Block:
    """One Linear, its optional BatchNorm and Tanh, as (R, ...) views."""

    W: torch.Tensor            # (R, fan_in, fan_out)
    b: torch.Tensor | None     # (R, fan_out)
    gW: torch.Tensor
    gb: torch.Tensor | None
    act: bool
    bn: list | None = None     # each run's BatchNorm1d layer
    gamma: torch.Tensor | None = None   # (R, H) views
    beta: torch.Tensor | None = None
    ggamma: torch.Tensor | None = None
    gbeta: torch.Tensor | None = None
    gs: torch.Tensor | None = None      # (R*H,) gamma * sqrt((n-1)/n), every forward
    beta_flat: torch.Tensor | None = None   # (R*H,) beta, contiguous for the kernel
    running_mean: torch.Tensor | None = None  # (R*H,)
    running_var: torch.Tensor | None = None
    running_views: list | None = None   # each run's (running_mean, running_var) views
    eps: float = 0.0
    momentum: float = 0.1


class BatchedStep:
    """Forward, backward, update and update:data moments of R runs at once.

    Built on the runs' FastSteps (same shapes): makes a fresh FastStep per
    run in a row of the stacked buffers (`fasts`), which replaces the run's
    own; the callers hand those to the runs' trainers."""

    def __init__(self, fasts: list[FastStep], device: torch.device):
        first = fasts[0]
        self.R = R = len(fasts)
        self.device = device
        self.batch = first.batch
        self.bn_scale = first.bn_scale
        total = first.flat.numel()
        kw = dict(dtype=first.flat.dtype, device=device)
        self.flat = torch.empty((R, total), **kw)
        self.flat_grad = torch.zeros((R, total), **kw)
        self.fasts = [FastStep(f.stack, f.batch, device, storage=(self.flat[r], self.flat_grad[r]))
                      for r, f in enumerate(fasts)]
        self._make_blocks()
        self._make_moments()
        self._minus_one = torch.full((R, self.batch, 1), -1.0, **kw)
        self._runs = torch.arange(R, device=device)

    # ----- layout --------------------------------------------------------------
    def _stacked(self, p: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """The (R, *p.shape) view of `buf` holding parameter `p` of run 0 for every run."""
        row = self.fasts[0].flat
        off = (p.data_ptr() - row.data_ptr()) // row.element_size()
        return buf[:, off:off + p.numel()].view(self.R, *p.shape)

    def _make_blocks(self) -> None:
        f0 = self.fasts[0]
        self.C = self._stacked(f0.stack.C, self.flat)        # (R, vocab, n_embd)
        self.gC = self._stacked(f0.stack.C, self.flat_grad)
        self.vocab = self.C.shape[1]
        R = self.R
        blocks = []
        for k, (blk, eps) in enumerate(zip(f0.blocks, f0.eps)):
            sw, sg = self.flat, self.flat_grad
            b = _Block(self._stacked(blk.W, sw), None if blk.b is None else self._stacked(blk.b, sw),
                       self._stacked(blk.W, sg), None if blk.b is None else self._stacked(blk.b, sg),
                       blk.act_pos is not None)
            if blk.bn_pos is not None:
                H = blk.gamma.numel()
                b.bn = [f.stack.layers[blk.bn_pos] for f in self.fasts]
                b.gamma, b.beta = self._stacked(blk.gamma, sw), self._stacked(blk.beta, sw)
                b.ggamma, b.gbeta = self._stacked(blk.gamma, sg), self._stacked(blk.beta, sg)
                b.gs = torch.empty(R * H, dtype=sw.dtype, device=self.device)
                b.beta_flat = torch.empty(R * H, dtype=sw.dtype, device=self.device)
                b.running_mean = torch.empty(R * H, dtype=sw.dtype, device=self.device)
                b.running_var = torch.empty(R * H, dtype=sw.dtype, device=self.device)
                b.eps, b.momentum = eps, b.bn[0].momentum
                self._bind_running(b, force=True)
            blocks.append(b)
        self.blocks = blocks
        self.n_layers = len(f0.hidden)

    def _bind_running(self, b: _Block, force: bool = False) -> None:
        """Each run's running buffers as views of the block's stacked ones; a
        run whose buffers were replaced (calibrate, a checkpoint) is copied in."""
        if force:
            b.running_views = list(zip(b.running_mean.view(self.R, -1),
                                       b.running_var.view(self.R, -1)))
        for layer, (mean, var) in zip(b.bn, b.running_views):
            if force or layer.running_mean is not mean or layer.running_var is not var:
                mean.copy_(layer.running_mean.reshape(-1))
                var.copy_(layer.running_var.reshape(-1))
                layer.running_mean, layer.running_var = mean, var

    def _make_moments(self) -> None:
        f0 = self.fasts[0]
        self.wide_spans, self.narrow_spans = f0.wide_spans, f0.narrow_spans
        self.narrow_start = f0.narrow_start
        self.unlayout = f0.unlayout
        self.numel = f0.numel
        total = self.flat.shape[1]
        n_wide = sum(k for _, _, k, _ in self.wide_spans)
        self.wide_sums = torch.empty((4, self.R, n_wide), dtype=self.flat.dtype,
                                     device=self.device)
        self.moment_buf = torch.empty((4, self.R, total - self.narrow_start),
                                      dtype=torch.float64, device=self.device)
        # a run's FastStep sums its own moments only once it steps alone (the
        # last of its group left running): it borrows its row here (the view
        # keeps it alive) rather than hold a float64 copy of its own
        for r, fast in enumerate(self.fasts):
            fast.moment_buf = self.moment_buf[:, r]

    # ----- the step ------------------------------------------------------------
    def bind_running(self) -> None:
        """Before a step: runs whose running buffers were replaced are copied in."""
        for b in self.blocks:
            if b.bn is not None:
                self._bind_running(b)

    def forward(self, Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
        """(R,) losses of the runs' batches Xb (R, B, block) and Yb (R, B);
        keeps what backward and the snapshots need."""
        self.bind_running()
        losses, self._saved, self._parts = self.forward_parts(Xb, Yb)
        return losses

    def forward_parts(self, Xb: torch.Tensor, Yb: torch.Tensor):
        """(losses, saved, loss parts), storing nothing on self (what a
        compiled step traces)."""
        R, B = Yb.shape
        x = self.C[self._runs.view(R, 1, 1), Xb].view(R, B, -1)  # (R, B, block * n_embd)
        saved = []
        for b in self.blocks:
            h = torch.bmm(x, b.W) if b.b is None else torch.baddbmm(b.b.unsqueeze(1), x, b.W)
            y, bn = h, None
            if b.bn is not None:
                H = h.shape[2]
                torch.mul(b.gamma, self.bn_scale, out=b.gs.view(R, H))
                b.beta_flat.view(R, H).copy_(b.beta)
                hf = h.transpose(0, 1).reshape(B, R * H)  # run r's channels at r*H..
                yf, mean, invstd = torch.native_batch_norm(hf, b.gs, b.beta_flat, b.running_mean,
                                                           b.running_var, True, b.momentum, b.eps)
                # the (B, R*H) layout stays for the elementwise work (contiguous);
                # the next bmm reads it as (R, B, H) with a row stride of R*H
                tf = torch.tanh(yf) if b.act else yf
                t = tf.view(B, R, H).transpose(0, 1)
                bn = (hf, mean, invstd, tf)
            else:
                t = torch.tanh(h) if b.act else h
            saved.append((x, bn, t))
            x = t
        logp = torch.log_softmax(x, 2)
        return -logp.gather(2, Yb.unsqueeze(2)).squeeze(2).mean(1), saved, (logp, Yb, Xb)

    def backward(self) -> None:
        """Every run's gradients into the stacked gradient buffer; keeps each
        hidden block's dloss/d(output) for the snapshots."""
        self._out_grads = self.backward_parts(self._saved, self._parts)

    def backward_parts(self, saved: list, parts: tuple) -> list[torch.Tensor]:
        """Gradients into the stacked gradient buffer; returns each hidden
        block's dloss/d(output), (R, B, H)."""
        logp, Yb, Xb = parts
        R, B = Yb.shape
        d = logp.exp()   # d(mean cross-entropy)/d(logits) = (softmax - onehot) / batch
        d.scatter_add_(2, Yb.unsqueeze(2), self._minus_one[:, :B])
        d.mul_(1.0 / B)
        out_grads = []
        for b, (x, bn, t) in zip(reversed(self.blocks), reversed(saved)):
            out_grads.append(d)
            if bn is not None:
                hf, mean, invstd, tf = bn
                H = d.shape[2]
                df = d.transpose(0, 1).reshape(B, R * H)
                if b.act:
                    df = _tanh_backward(df, tf)
                dx, dgs, dbeta = _native_bn_backward(df, hf, b.gs, None, None, mean, invstd,
                                                     True, b.eps, [True, True, True])
                torch.mul(dgs.view(R, H), self.bn_scale, out=dgs.view(R, H))
                b.ggamma.copy_(dgs.view(R, H))
                b.gbeta.copy_(dbeta.view(R, H))
                d = dx.view(B, R, H).transpose(0, 1)
            elif b.act:
                d = _tanh_backward(d, t)
            b.gW.copy_(torch.bmm(x.transpose(1, 2), d))
            if b.gb is not None:
                b.gb.copy_(d.sum(1))
            d = torch.bmm(d, b.W.transpose(1, 2))
        E = self.C.shape[2]
        rows = (Xb + (self._runs * self.vocab).view(R, 1, 1)).reshape(-1)
        gC = torch.zeros((R * self.vocab, E), dtype=d.dtype, device=d.device)
        gC.index_add_(0, rows, d.reshape(-1, E))
        self.gC.copy_(gC.view(R, self.vocab, E))
        out_grads.reverse()
        return out_grads[:-1]

    def update(self, lr: list[float], skip: tuple[int, ...] = ()) -> None:
        """SGD with run r's learning rate lr[r]; runs in `skip` (a non-finite
        loss) keep their parameters, as the solo engine does."""
        if not skip:
            neg = torch.tensor(lr, dtype=self.flat.dtype, device=self.device).neg_()
            self.flat.addcmul_(self.flat_grad, neg.view(-1, 1))
            return
        for r, rate in enumerate(lr):
            if r not in skip:
                self.flat[r].add_(self.flat_grad[r], alpha=-rate)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grad mean, grad std, data std), each (R, parameters), summed as
        FastStep.moments sums them (float32 for wide weights, float64 else)."""
        R, G, Pm = self.R, self.flat_grad, self.flat
        parts = []
        if self.wide_spans:
            out, row = self.wide_sums, 0
            for a, b, k, n in self.wide_spans:
                g, p = G[:, a:b].view(R, k, n), Pm[:, a:b].view(R, k, n)
                torch.sum(g, 2, out=out[0, :, row:row + k])
                torch.sum(p, 2, out=out[1, :, row:row + k])
                torch.linalg.vector_norm(g, dim=2, out=out[2, :, row:row + k])
                torch.linalg.vector_norm(p, dim=2, out=out[3, :, row:row + k])
                row += k
            out[2:].square_()
            parts.append(out.double())
        if self.narrow_spans:
            start, buf = self.narrow_start, self.moment_buf
            buf[0].copy_(G[:, start:])
            buf[1].copy_(Pm[:, start:])
            torch.mul(buf[:2], buf[:2], out=buf[2:])
            for a, b, k, n in self.narrow_spans:
                parts.append(buf[:, :, a - start:b - start].reshape(4, R, k, n).sum(3))
        sums = torch.cat(parts, dim=2)[:, :, self.unlayout]      # (4, R, P)
        mean = sums[:2] / self.numel
        var = (sums[2:] - sums[:2] * mean) / (self.numel - 1)
        std = var.clamp_min(0).sqrt()
        return mean[0], std[0], std[1]

    @staticmethod
    def update_ratios(moments: tuple[torch.Tensor, ...], lr: list[float]) -> torch.Tensor:
        """(R, parameters) log10(lr * grad std / data std)."""
        _, gstd, pstd = moments
        rates = torch.tensor(lr, dtype=gstd.dtype, device=gstd.device).view(-1, 1)
        return (gstd * rates / pstd).log10()

    # ----- diagnostics ----------------------------------------------------------
    def snapshot(self, r: int, step: int, loss: float, lr: float, ratios: torch.Tensor,
                 moments: tuple[torch.Tensor, ...]) -> StatsSnapshot:
        """Run r's full diagnostics of the step just taken: its FastStep's own
        snapshot of its slice of the measured outputs and their gradients."""
        fast = self.fasts[r]
        outs = [t[r] for (_, _, t) in self._saved[:self.n_layers]]
        grads = [d[r] for d in self._out_grads]
        fast.keep_measured(outs, grads)
        fast._saved = [None] + [(None, None, None, t) for t in outs]
        return fast.snapshot(step, loss, lr, ratios, tuple(m[r] for m in moments))

    @staticmethod
    def not_finite(losses: list[float]) -> tuple[int, ...]:
        """Runs whose loss is not finite (their update is skipped)."""
        return tuple(r for r, v in enumerate(losses) if not math.isfinite(v))
