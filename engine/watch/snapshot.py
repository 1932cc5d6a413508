"""A measured step's figures gathered into the snapshot: each layer's blocks,
the weights' and the update ratios, moved to the host in one transfer
(averaged across ranks on request) and read back into a StatsSnapshot.
The Watcher's part that does it (a mixin: they share the watcher's state)."""

from __future__ import annotations

import math

import numpy as np
import torch

from traintop.engine.recording.snapshot_codec import carry_counts
from traintop.engine.results import Histogram, LayerStats, StatsSnapshot, WeightStats
from traintop.engine.steps.by_shape import ShapeGroups, stds
from traintop.engine.steps.stats import BINS, FlatReader
from .figures import (ACT_BLOCKS, ACT_WIDTH, GRAD_BLOCKS, GRAD_WIDTH, WEIGHT_BLOCKS,
                      WEIGHT_WIDTH, _HIST, _act_block, _averaged, _grad_block, _hist,
                      _hist_job)


_NUMPY_FLOATS = (torch.float32, torch.float64)


def _finite_total(numel: int, bad: float) -> int:
    """The values a histogram counts (its finite ones); at least 1, so a
    histogram of no finite value reads as all zeros."""
    return max(numel - _count(bad), 1)


def _count(x: float) -> int:
    return int(round(x)) if math.isfinite(x) else 0


class _Reader(FlatReader):
    """FlatReader, and the histograms' densities from the same values as a
    numpy array: stats._histogram's division (count / (total * width), float64),
    for every histogram of the snapshot at once (prepare), then handed out in
    the order they are read (histogram)."""

    def __init__(self, values: list[float], array: np.ndarray):
        super().__init__(values)
        self.array = array
        self._hists: list[Histogram] = []

    def prepare(self, specs: list[tuple[int, float, float, int]]) -> None:
        """The histograms at (counts' position, lo, hi, total), in reading order."""
        if not specs:
            return
        ranges = []
        for _, lo, hi, total in specs:
            if hi == lo:  # torch widens a zero-width range by 0.5 on each side
                lo, hi = lo - 0.5, hi + 0.5
            ranges.append((lo, hi, total * ((hi - lo) / BINS)))
        at = np.array([pos for pos, *_ in specs], dtype=np.int64)[:, None] + np.arange(BINS)
        counts = self.array[at]
        norms = np.array([n for _, _, n in ranges])
        with np.errstate(all="ignore"):
            densities = (counts / norms[:, None]).tolist()
            ints = counts.astype(np.int64)
        # Whole, non-negative counts over a finite range (all of them but a sampled
        # histogram's and a NaN's) go to the writer as they are (carry_counts).
        whole = ((ints == counts) & (counts >= 0)).all(axis=1) & (norms > 0)
        ints = ints.tolist()
        self._hists = []
        for (lo, hi, norm), (_, _, _, total), density, carried, w in zip(
                ranges, specs, densities, ints, whole.tolist()):
            hist = Histogram(lo, hi, tuple(density))
            if w and hi - lo < math.inf:
                carry_counts(hist, int(total), carried)
            self._hists.append(hist)
        self._hists.reverse()

    def histogram(self, lo: float, hi: float, total: int) -> Histogram:
        """The next prepared histogram (none prepared: this one), its counts read."""
        if not self._hists:
            self.prepare([(self.pos, lo, hi, total)])
        self.pos += BINS
        return self._hists.pop()


class SnapshotFigures:
    """The Watcher's measured-step figures."""

    def _layer_pair(self, index: int, nan_layer: torch.Tensor, nan_grad: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's activation and gradient blocks over all its calls on the
        step (NaN: not measured)."""
        act, grad = nan_layer, nan_grad
        calls = self._acts.get(index)
        if calls:
            try:
                act = _act_block(calls).to(self.device)
                self._sizes[index] = (calls[0]["units"], sum(r["n"] for r in calls))
            except Exception as exc:
                self._fault(f"activation statistics of {self._layer_label(index)}", exc)
        grads = self._grads.get(index)
        if grads:
            try:
                grad = _grad_block(grads).to(self.device)
                if self._grad_scale is not None:
                    # A GradScaler's backward carries loss * scale: mean, std, min
                    # and max of the gradient unscaled (the counts are the same).
                    grad = torch.cat([grad[:4] / self._grad_scale.to(grad.device), grad[4:]])
            except Exception as exc:
                self._fault(f"gradient statistics of {self._layer_label(index)}", exc)
        return act, grad

    def _update_ratios(self, groups: ShapeGroups | None, before) -> torch.Tensor:
        if groups is None:     # the CPU's copy, the parameters end to end (_pre_step)
            return self._flat_update_ratios(before)
        with torch.no_grad():
            now = groups.stack(self.params, copy=False)
            data = stds(now)
            # Each parameter's std once: the weight figures reuse it (grad:data).
            self._data_std = groups.spread(data).to(self.device)
            changes = stds([n - b for n, b in zip(now, before)])
            # one division and one log10 over every parameter's (elementwise: the same values)
            return groups.spread([(torch.cat(changes) / torch.cat(data)).log10()]
                                 if changes else []).to(self.device)

    def _flat_update_ratios(self, before: np.ndarray) -> torch.Tensor:
        """_update_ratios on the CPU: every parameter's std and its update's
        in a few numpy calls (by_shape.FlatMoments); a frozen one: NaN."""
        flat = self._flat
        now = flat.flat(self.params)
        k, n = len(self.params), now.size
        # Every parameter's gradient there (the usual step): the weights' gradient
        # figures (_flat_weight_figures) come from the same pass, a third set.
        grads = [p.grad for p in self.params]
        merged = self._flat_weights is not None and flat.same(grads)
        copies = 3 if merged else 2
        # the data and the change (in the parameters' dtype, as torch's n - b)
        # end to end in float64: one pass of numpy's calls for both
        both = np.empty(copies * n, dtype=np.float64)
        both[:n] = now
        np.subtract(now, before, out=both[n:2 * n], dtype=now.dtype, casting="same_kind")
        if merged:
            g = flat.flat(grads)
            both[2 * n:] = g
        means, stds = flat.moments(both, own=True, copies=copies)
        if merged:   # for _weight_figures, taken (and dropped) there on this step
            self._grad_moments = (g, means[2 * k:], stds[2 * k:])
        data, change = stds[:k].astype(np.float32), stds[k:2 * k].astype(np.float32)
        self._data_std = torch.from_numpy(data)
        with np.errstate(all="ignore"):
            ratios = np.log10(change / data)
        ratios[[not p.requires_grad for p in self.params]] = np.nan
        return torch.from_numpy(ratios)

    def _weight_figures_or_nan(self) -> torch.Tensor:
        try:
            return self._weight_figures()
        except Exception as exc:
            self._fault("weight statistics", exc)
            return torch.full((len(self.weights) * WEIGHT_WIDTH,), math.nan,
                              device=self.device)

    def _weight_figures(self) -> torch.Tensor:
        if not self.weights:
            return torch.zeros(0, device=self.device)
        grads = [p.grad for _, p in self.weights]
        moments, self._grad_moments = getattr(self, "_grad_moments", None), None
        if moments is not None:
            return self._flat_weight_figures(grads, moments)
        if self._flat_weights is not None and self._flat_weights.same(grads):
            return self._flat_weight_figures(grads)
        with torch.no_grad():
            groups = self._groups("grads", grads)
            blocks = groups.stack(grads, copy=False)
            gmean = groups.spread([b.mean(dim=1) for b in blocks]).to(self.device)
            gstd = groups.spread(stds(blocks)).to(self.device)
            if self._data_std is not None:
                dstd = self._data_std[self._weight_positions]
            else:   # no optimizer hooks fired: the data's std here
                data = [p for _, p in self.weights]
                dgroups = self._groups("data", data)
                dstd = dgroups.spread(stds(dgroups.stack(data, copy=False))).to(self.device)
            nan_hist = torch.full((_HIST + 1,), math.nan, device=self.device)
            hists = torch.stack([self._hist_and_count(g) if g is not None else nan_hist
                                 for g in grads])
            if self._host and bool(torch.isfinite(dstd).all()):
                # A finite std holds no NaN or inf (either makes it NaN): nothing to count.
                data_bad = torch.zeros(len(self.weights), device=self.device)
            else:
                data_bad = torch.stack([(~torch.isfinite(p.detach())).sum().to(self.device)
                                        for _, p in self.weights]).float()
            return torch.cat([torch.stack([gmean, gstd, gstd / dstd], dim=1), hists,
                              data_bad.reshape(-1, 1)], dim=1).reshape(-1)

    def _flat_weight_figures(self, grads: list[torch.Tensor], moments=None) -> torch.Tensor:
        """_weight_figures on the CPU, every gradient there: the WEIGHT_BLOCKS
        rows filled in numpy (by_shape.FlatMoments, figures._hist_row).
        `moments`: every parameter's gradients end to end with their means and
        stds (_flat_update_ratios's), the weights' taken from them."""
        fw = self._flat_weights
        if moments is None:
            flat = fw.flat(grads)
            gmean, gstd = fw.moments(flat)
            starts = fw.starts.tolist()
        else:
            flat, gmean, gstd = moments
            at = self._weight_index
            gmean, gstd, starts = gmean[at], gstd[at], self._flat.starts[at].tolist()
        if self._data_std is not None:
            dstd = self._data_std.numpy()[self._weight_index]
        else:   # no optimizer hooks fired: the data's std here
            dstd = fw.moments(fw.flat([p for _, p in self.weights]))[1].astype(np.float32)
        out = np.empty((len(grads), WEIGHT_WIDTH), dtype=np.float32)
        out[:, 0], out[:, 1] = gmean, gstd
        with np.errstate(all="ignore"):
            out[:, 2] = out[:, 1] / dstd
        end = 3 + _HIST + 1
        # the histograms: counted with the step's others at the snapshot (HistBatch)
        flat32 = flat.astype(np.float32, copy=False)
        for row, start, size in zip(out, starts, fw.sizes.tolist()):
            if self._batch is not None:
                self._batch.add(flat32[start:start + size], row[3:end])
            else:
                _hist_job(flat32[start:start + size], row[3:end])
        if np.isfinite(dstd).all():
            # A finite std holds no NaN or inf (either makes it NaN): nothing to count.
            out[:, end] = 0.0
        else:
            out[:, end] = [int((~torch.isfinite(p.detach())).sum()) for _, p in self.weights]
        return torch.from_numpy(out.reshape(-1))

    def _hist_and_count(self, g: torch.Tensor) -> torch.Tensor:
        parts, bad = _hist(g.detach().float())
        return torch.cat([*parts, bad.float().reshape(1)]).to(self.device)

    def _count_histograms(self) -> None:
        if self._batch is not None and self._batch.jobs:
            try:
                self._batch.run()
            except Exception as exc:     # their rows stay NaN
                self._fault("histograms", exc)

    def _snapshot(self, step: int, loss: float, lr: float) -> StatsSnapshot:
        if self._deferred:                # no optimizer hooks fired: measured now
            self._measure_deferred()
        if self._updates is None:         # no optimizer hooks fired: measure grads now
            self._updates = torch.full((len(self.params),), math.nan, device=self.device)
            self._weights = self._weight_figures_or_nan()
        self._count_histograms()
        nan_layer = torch.full((ACT_WIDTH,), math.nan, device=self.device)
        nan_grad = torch.full((GRAD_WIDTH,), math.nan, device=self.device)
        parts = [b for i, _, _ in self.layers for b in self._layer_pair(i, nan_layer, nan_grad)]
        parts += [self._weights, self._updates]
        if self._host and all(b.dtype in _NUMPY_FLOATS for b in parts):
            # every block a CPU tensor already (most of them numpy's rows): laid
            # end to end by numpy (torch.cat's calls cost more on so few values)
            host = np.concatenate([b.detach().numpy() for b in parts])
            self._updates = self._weights = None
            return self._build(step, loss, lr, host.tolist(), host.astype(np.float64))
        flat = torch.cat(parts)
        if self.reduce:
            flat = self._reduce(flat)
        host = flat.cpu()        # the one host sync of the snapshot
        self._updates = self._weights = None
        return self._build(step, loss, lr, host.tolist(), host.double().numpy())

    def _reduce(self, flat: torch.Tensor) -> torch.Tensor:
        """Average the scalar figures across ranks; histograms stay this rank's
        (their bins cover each rank's own range, so they do not add up)."""
        averaged = (_averaged(ACT_BLOCKS + GRAD_BLOCKS) * len(self.layers)
                    + _averaged(WEIGHT_BLOCKS) * len(self.weights) + [True] * len(self.params))
        scalar = torch.tensor(averaged, dtype=torch.bool, device=flat.device)
        reduced = flat.clone()
        reduced[scalar] = self._all_mean(flat[scalar].contiguous())
        return reduced

    def _build(self, step: int, loss: float, lr: float, values: list[float],
               array: np.ndarray) -> StatsSnapshot:
        reader = _Reader(values, array)
        take = reader.take
        # every histogram's place, range and total first: their densities in one go
        specs, pos = [], 0
        aw, gw, ww = ACT_WIDTH, GRAD_WIDTH, WEIGHT_WIDTH
        for index, _, _ in self.layers:
            numel = self._sizes.get(index, (0, 1))[1]
            for at in (pos + 4, pos + aw + 2):    # act, then grad: lo, hi, counts, non-finite
                specs.append((at + 2, values[at], values[at + 1],
                              _finite_total(numel, values[at + 2 + BINS])))
            pos += aw + gw
        for _, p in self.weights:
            specs.append((pos + 5, values[pos + 3], values[pos + 4],
                          _finite_total(p.numel(), values[pos + 5 + BINS])))
            pos += ww
        reader.prepare(specs)
        nonfinite: dict[str, tuple[float, float]] = {}
        layers = []
        for index, module, kind in self.layers:
            units, numel = self._sizes.get(index, (0, 1))
            mean, std, sat, dead = take(4)
            lo, hi = take(2)
            # the non-finite count follows the counts: read first, the histogram's total
            bad = values[reader.pos + BINS]
            hist = reader.histogram(lo, hi, _finite_total(numel, bad))
            take(1)
            gmean, gstd = take(2)
            glo, ghi = take(2)
            gbad = values[reader.pos + BINS]
            grad_hist = reader.histogram(glo, ghi, _finite_total(numel, gbad))
            take(1)
            nonfinite[self._layer_label(index)] = (bad, gbad)
            layers.append(LayerStats(
                index=index, kind=type(module).__name__, mean=mean, std=std,
                saturation_pct=sat, dead=int(round(dead)) if math.isfinite(dead) else 0,
                units=units, grad_mean=gmean, grad_std=gstd,
                # the histogram's range is the finite values' min and max (this
                # rank's); where some are not finite, how large is not known here
                absmax=max(-lo, hi) if not bad else math.nan,
                nonfinite=bad, grad_nonfinite=gbad,
                hist=hist, grad_hist=grad_hist,
                name=self.layer_names[index], family=kind,
                per_unit=numel // units if units else 0))
        weights = []
        for name, p in self.weights:
            gmean, gstd, ratio = take(3)
            lo, hi = take(2)
            gbad = values[reader.pos + BINS]
            hist = reader.histogram(lo, hi, _finite_total(p.numel(), gbad))
            gbad, bad = take(2)
            nonfinite[name] = (bad, gbad)
            weights.append(WeightStats(name=name, shape=tuple(p.shape), grad_mean=gmean,
                                       grad_std=gstd, grad_data_ratio=ratio,
                                       hist=hist,
                                       nonfinite=bad, grad_nonfinite=gbad))
        # Non-finite values per tensor (its own, its gradient's): NaN = not measured.
        self.nonfinite_counts = {k: (_count(a), _count(g)) for k, (a, g) in nonfinite.items()}
        if self._trace is None and any(a or g for a, g in self.nonfinite_counts.values()):
            self._catch(step, "figures", before_update=False)
        return StatsSnapshot(step=step, loss=loss, lr=lr, layers=tuple(layers),
                             weights=tuple(weights),
                             update_ratio_log10=tuple(take(len(self.params))))
