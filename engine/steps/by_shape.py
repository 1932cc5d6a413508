"""Per-tensor stds and means of many tensors in few calls: small tensors of
one shape are stacked and reduced together.

watch() measures every parameter of a model on a snapshot step: a GPT of 6
blocks has 76 of them, most of them small (biases, LayerNorm weights), and
one .std() per tensor (x3: data, update, gradient) was a third of
watch(every=1)'s cost on CPU, nearly all per-call overhead. Large tensors
stay one row each: a row-wise std over several long rows is slower on CPU
than one full reduction per tensor (1.9 ms vs 0.4 ms for 6 x 49,152).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SMALL = 4096   # elements: tensors up to this size are stacked with their shape-mates


class ShapeGroups:
    """Positions of tensors grouped for reduction: small ones by (shape, dtype,
    device), each large one alone."""

    def __init__(self, tensors: list[torch.Tensor], positions: list[int] | None = None,
                 size: int | None = None):
        """`positions`: where each tensor sits in the lists later passed to
        stack() (default 0..n-1); `size`: the length of spread()'s output."""
        positions = list(range(len(tensors))) if positions is None else positions
        groups: dict[tuple, list[int]] = {}
        for pos, t in zip(positions, tensors):
            key = (tuple(t.shape), t.dtype, t.device) if t.numel() <= SMALL else pos
            groups.setdefault(key, []).append(pos)
        self.groups = list(groups.values())
        self.size = max(positions, default=-1) + 1 if size is None else size
        order = [pos for group in self.groups for pos in group]
        device = tensors[0].device if tensors else torch.device("cpu")
        self.order = torch.tensor(order, dtype=torch.long, device=device)

    def stack(self, tensors: list[torch.Tensor], copy: bool = True) -> list[torch.Tensor]:
        """Per group, its tensors (indexed by position) as one float32 (k, n)
        block; with `copy`, never a view of the tensors (a 'before' of an update)."""
        out = []
        for group in self.groups:
            if len(group) == 1 and not copy:
                out.append(tensors[group[0]].detach().float().reshape(1, -1))
            else:
                out.append(torch.stack([tensors[pos].detach() for pos in group]).float()
                           .reshape(len(group), -1))
        return out

    def spread(self, per_group: list[torch.Tensor]) -> torch.Tensor:
        """Per-group vectors back in position order; NaN where no tensor was."""
        out = torch.full((self.size,), math.nan, device=self.order.device)
        if per_group:
            out[self.order] = torch.cat(per_group).to(out.device)
        return out


def stds(blocks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each row's std (unbiased, as Tensor.std) of each (k, n) block. A row of
    one value has none: NaN, as Tensor.std gives, but without its warning on
    every measured step (a Linear(n, 1)'s bias is such a row)."""
    return [b.std(dim=1) if b.shape[1] > 1 else torch.full_like(b[:, 0], math.nan)
            for b in blocks]


class FlatLayout:
    """Many CPU float32 tensors laid end to end: where each one starts, and
    a copy of their values in one call (watch()'s parameters: the copy
    before an update, measured with the step's other figures by
    traintop.engine.watch.figures.StepBatch). Only for what `fits`: CPU,
    strided, float32, no empty tensor, not too many values (MAX_VALUES)."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.sizes = np.array([t.numel() for t in tensors], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.int64)
        self.spans = list(zip(self.starts.tolist(), self.sizes.tolist()))
        self.dtype = tensors[0].dtype if tensors else None

    # values in all: above, torch's own reductions (SIMD float32, a call per
    # large tensor) cost less than numpy's passes over them all
    MAX_VALUES = 1 << 18

    @staticmethod
    def fits(tensors: list) -> bool:
        return bool(tensors) and all(
            t is not None and t.device.type == "cpu" and t.layout == torch.strided
            and t.dtype == torch.float32 and t.numel() > 0 for t in tensors
        ) and sum(t.numel() for t in tensors) <= FlatLayout.MAX_VALUES

    def same(self, tensors: list) -> bool:
        """Whether `tensors` (gradients, say) lie as the ones this was made for."""
        return all(t is not None and t.layout == torch.strided and t.dtype == self.dtype
                   and t.device.type == "cpu" for t in tensors)

    def flat(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """Their values end to end: a copy, in their own dtype."""
        return np.concatenate([t.detach().numpy().reshape(-1) for t in tensors])
