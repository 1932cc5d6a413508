"""Consecutive step results held as columns: a recording read at speed.

A recording's line of steps decodes to a StepBlock, not to a tuple of
StepResult: the same sequence of results to whoever indexes or loops over
it (each StepResult is built when asked for), while the run state and the
health monitor fold its columns at once (RunState._block). A 200,000-step
run then costs a few numpy passes, not 200,000 objects built and taken
apart again.

numpy is imported where used, as elsewhere in the viewer's path: a module
that only checks `isinstance(x, StepBlock)` does not wait for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .results import NonFinite, StatsSnapshot, StepResult


class StepBlock(Sequence):
    """n step results: `steps` (int64), `loss` and `lr` (float64) of shape
    (n,), `ratios` (float64, (n, P)) or, where the rows differ in width (a
    step whose forward went non-finite has none), a list of n tuples;
    `stats` and `nonfinite` by row, for the rows that have them; `grad_norm`
    (float64, (n,)) where some step has one (None: every step's is NaN)."""

    __slots__ = ("steps", "loss", "lr", "ratios", "stats", "nonfinite", "grad_norm")

    def __init__(self, steps, loss, lr, ratios, stats: dict[int, StatsSnapshot] | None = None,
                 nonfinite: dict[int, NonFinite] | None = None, grad_norm=None):
        self.steps, self.loss, self.lr, self.ratios = steps, loss, lr, ratios
        self.stats = stats or {}
        self.nonfinite = nonfinite or {}
        self.grad_norm = grad_norm

    @property
    def width(self) -> int | None:
        """Ratios per step (P); None where the rows differ."""
        return None if isinstance(self.ratios, list) else self.ratios.shape[1]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index):
        if isinstance(index, slice):
            lo, hi, stride = index.indices(len(self))
            if stride != 1:
                return tuple(self)[index]
            return StepBlock(self.steps[lo:hi], self.loss[lo:hi], self.lr[lo:hi],
                             self.ratios[lo:hi], _shifted(self.stats, lo, hi),
                             _shifted(self.nonfinite, lo, hi),
                             None if self.grad_norm is None else self.grad_norm[lo:hi])
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("step block index out of range")
        ratios = self.ratios[i]
        return StepResult(int(self.steps[i]), float(self.loss[i]), float(self.lr[i]),
                          ratios if isinstance(ratios, tuple) else tuple(ratios.tolist()),
                          self.stats.get(i), self.nonfinite.get(i),
                          math.nan if self.grad_norm is None else float(self.grad_norm[i]))

    def __iter__(self):
        ratios = self.ratios if isinstance(self.ratios, list) else map(tuple, self.ratios.tolist())
        results = map(StepResult, self.steps.tolist(), self.loss.tolist(), self.lr.tolist(),
                      ratios)   # the quick way: no per-row indexing
        if self.grad_norm is not None:
            return (replace(r, stats=self.stats.get(i), nonfinite=self.nonfinite.get(i),
                            grad_norm=g)
                    for i, (r, g) in enumerate(zip(results, self.grad_norm.tolist())))
        if not (self.stats or self.nonfinite):
            return results
        return (StepResult(r.step, r.loss, r.lr, r.update_ratio_log10, self.stats.get(i),
                           self.nonfinite.get(i)) if i in self.stats or i in self.nonfinite
                else r for i, r in enumerate(results))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"StepBlock({len(self)} steps, {self.steps[:1].tolist()}..{self.steps[-1:].tolist()})"

    def with_stats(self, row: int, snapshot: StatsSnapshot) -> StepBlock:
        """The same block with `snapshot` as row `row`'s stats."""
        return StepBlock(self.steps, self.loss, self.lr, self.ratios,
                         {**self.stats, row: snapshot}, self.nonfinite, self.grad_norm)

    @classmethod
    def of(cls, results: Sequence[StepResult]) -> StepBlock:
        """Any sequence of step results as a block (a block as it is)."""
        if isinstance(results, StepBlock):
            return results
        import numpy as np
        widths = {len(r.update_ratio_log10) for r in results}
        ratios = [r.update_ratio_log10 for r in results]
        if len(widths) <= 1:
            ratios = np.array(ratios, dtype=np.float64).reshape(len(results), max(widths, default=0))
        norms = [r.grad_norm for r in results]
        grad_norm = (np.array(norms, dtype=np.float64)
                     if any(g == g for g in norms) else None)   # some not NaN
        return cls(np.array([r.step for r in results], dtype=np.int64),
                   np.array([r.loss for r in results], dtype=np.float64),
                   np.array([r.lr for r in results], dtype=np.float64), ratios,
                   {i: r.stats for i, r in enumerate(results) if r.stats is not None},
                   {i: r.nonfinite for i, r in enumerate(results) if r.nonfinite is not None},
                   grad_norm)

    @classmethod
    def concat(cls, parts: Sequence[Sequence[StepResult]]) -> StepBlock:
        """The blocks (or other sequences of results) one after another, as one block."""
        blocks = [cls.of(p) for p in parts]
        if len(blocks) == 1:
            return blocks[0]
        import numpy as np
        widths = {b.width for b in blocks}
        if len(widths) == 1 and None not in widths:
            ratios = np.concatenate([b.ratios for b in blocks])
        else:
            ratios = [r if isinstance(r, tuple) else tuple(r) for b in blocks
                      for r in (b.ratios if isinstance(b.ratios, list) else b.ratios.tolist())]
        stats, nonfinite, base = {}, {}, 0
        for b in blocks:
            stats.update((base + i, s) for i, s in b.stats.items())
            nonfinite.update((base + i, x) for i, x in b.nonfinite.items())
            base += len(b)
        grad_norm = None
        if any(b.grad_norm is not None for b in blocks):
            grad_norm = np.concatenate([b.grad_norm if b.grad_norm is not None
                                        else np.full(len(b), np.nan) for b in blocks])
        return cls(np.concatenate([b.steps for b in blocks]),
                   np.concatenate([b.loss for b in blocks]),
                   np.concatenate([b.lr for b in blocks]), ratios, stats, nonfinite, grad_norm)


def _shifted(rows: dict, lo: int, hi: int) -> dict:
    return {i - lo: v for i, v in rows.items() if lo <= i < hi}
