"""A measured step's figures gathered into the snapshot: each layer's blocks,
the weights' and the update ratios, moved to the host in one transfer
(averaged across ranks on request) and read back into a StatsSnapshot.
The Watcher's part that does it (a mixin: they share the watcher's state)."""

from __future__ import annotations

import math

import numpy as np
import torch

from traintop.engine.recording.snapshot_codec import packed_snapshot
from traintop.engine.results import StatsSnapshot
from traintop.engine.steps.by_shape import ShapeGroups, stds
from traintop.engine.steps.stats import BINS
from .figures import (ACT_BLOCKS, ACT_WIDTH, GRAD_BLOCKS, GRAD_WIDTH, WEIGHT_BLOCKS,
                      WEIGHT_WIDTH, _HIST, _act_block, _averaged, _grad_block, _hist)


_NUMPY_FLOATS = (torch.float32, torch.float64)


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
        measured with the step's other figures (figures.StepBatch), the
        ratios once they are in; a frozen parameter's: NaN."""
        now = self._flat.flat(self.params)      # a copy: the batch reads it after this hook
        change = np.subtract(now, before)       # in the parameters' dtype, as torch's n - b
        k = len(self.params)
        moments = np.empty((2, k, 2), dtype=np.float64)   # (data, change) x param x (mean, std)
        add = self._batch.add
        for j, (start, size) in enumerate(self._flat.spans):
            add(now[start:start + size], None, moments[0, j])
            add(change[start:start + size], None, moments[1, j])
        data = np.full(k, np.nan, dtype=np.float32)
        ratios = np.full(k, np.nan, dtype=np.float32)
        frozen = [not p.requires_grad for p in self.params]

        def finish():
            data[:] = moments[0, :, 1]
            with np.errstate(all="ignore"):
                ratios[:] = np.log10(moments[1, :, 1].astype(np.float32) / data)
            ratios[frozen] = np.nan

        self._batch.after.append(finish)
        self._data_std = torch.from_numpy(data)    # the weights' grad:data reads it (filled then)
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

    def _flat_weight_figures(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """_weight_figures on the CPU, every gradient there: the WEIGHT_BLOCKS
        rows filled with the step's other figures (figures.StepBatch); the
        grad:data ratio once they are in."""
        out = np.full((len(grads), WEIGHT_WIDTH), np.nan, dtype=np.float32)   # NaN: not measured
        end = 3 + _HIST + 1
        add = self._batch.add
        for row, g in zip(out, grads):
            add(g.detach().numpy().reshape(-1), row[3:end], row[0:2])
        if self._data_std is not None:
            data_std = self._data_std.numpy()      # the update ratios' (filled before `finish`)
            at = self._weight_index
            dmoments = None
        else:   # no optimizer hooks fired: the data's std here
            dmoments = np.empty((len(grads), 2), dtype=np.float64)
            for m, (_, p) in zip(dmoments, self.weights):
                add(p.detach().numpy().reshape(-1), None, m)

        def finish():
            dstd = data_std[at] if dmoments is None else dmoments[:, 1].astype(np.float32)
            with np.errstate(all="ignore"):
                out[:, 2] = out[:, 1] / dstd
            if np.isfinite(dstd).all():
                # A finite std holds no NaN or inf (either makes it NaN): nothing to count.
                out[:, end] = 0.0
            else:
                out[:, end] = [int((~torch.isfinite(p.detach())).sum()) for _, p in self.weights]

        self._batch.after.append(finish)
        return torch.from_numpy(out.reshape(-1))

    def _hist_and_count(self, g: torch.Tensor) -> torch.Tensor:
        parts, bad = _hist(g.detach().float())
        return torch.cat([*parts, bad.float().reshape(1)]).to(self.device)

    def _count_histograms(self) -> None:
        if self._batch is not None and self._batch.jobs:
            try:
                self._batch.run()
            except Exception as exc:     # their rows and ratios stay NaN
                self._fault("the step's histograms, means and stds", exc)

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
            return self._build(step, loss, lr, host.astype(np.float64))
        flat = torch.cat(parts)
        if self.reduce:
            flat = self._reduce(flat)
        host = flat.cpu()        # the one host sync of the snapshot
        self._updates = self._weights = None
        return self._build(step, loss, lr, host.double().numpy())

    def _reduce(self, flat: torch.Tensor) -> torch.Tensor:
        """Average the scalar figures across ranks; histograms stay this rank's
        (their bins cover each rank's own range, so they do not add up)."""
        averaged = (_averaged(ACT_BLOCKS + GRAD_BLOCKS) * len(self.layers)
                    + _averaged(WEIGHT_BLOCKS) * len(self.weights) + [True] * len(self.params))
        scalar = torch.tensor(averaged, dtype=torch.bool, device=flat.device)
        reduced = flat.clone()
        reduced[scalar] = self._all_mean(flat[scalar].contiguous())
        return reduced

    def _places(self) -> tuple:
        """Where the flat layout holds each histogram and figure (made once:
        it depends on the model alone). Histograms in file order: every
        layer's activation, every layer's gradient, every weight's."""
        places = self._flat_places
        if places is None:
            aw, gw, ww = ACT_WIDTH, GRAD_WIDTH, WEIGHT_WIDTH
            nl, nw = len(self.layers), len(self.weights)
            end = nl * (aw + gw)
            layer = np.arange(nl, dtype=np.int64)[:, None] * (aw + gw)
            weight = end + np.arange(nw, dtype=np.int64)[:, None] * ww
            lo = np.concatenate([(layer + 4).ravel(), (layer + aw + 2).ravel(),
                                 (weight + 3).ravel()])          # each histogram's lo
            places = (lo[:, None] + np.arange(2), lo[:, None] + 2 + np.arange(BINS),
                      lo + 2 + BINS,
                      # mean, std, share %, dead | grad mean, grad std per layer
                      layer + np.array([0, 1, 2, 3, aw, aw + 1]),
                      weight + np.array([0, 1, 2, 3 + _HIST, 4 + _HIST]),  # .., gbad, bad
                      end + nw * ww,
                      ([("a", index) for index, _, _ in self.layers]
                       + [("g", index) for index, _, _ in self.layers]
                       + [("w", name) for name, _ in self.weights]),
                      np.array([p.numel() for _, p in self.weights], dtype=np.int64))
            self._flat_places = places
        return places

    def _build(self, step: int, loss: float, lr: float, array: np.ndarray) -> StatsSnapshot:
        """The snapshot packed straight from the flat layout (`array`, float64):
        a few numpy calls for all its histograms, a Python row per layer and
        weight, no object per figure."""
        range_at, counts_at, bad_at, layer_at, weight_at, update_at, keys, weight_numel = \
            self._places()
        sizes = [self._sizes.get(index, (0, 1)) for index, _, _ in self.layers]
        lohi, counts, bads = array[range_at], array[counts_at], array[bad_at]
        numel = np.concatenate([[n for _, n in sizes] * 2, weight_numel]).astype(np.float64)
        with np.errstate(all="ignore"):
            # a histogram counts the finite values (at least 1: none reads as all zeros)
            totals = np.maximum(np.where(np.isfinite(bads), numel - np.rint(bads), numel), 1)
            lo, hi = lohi[:, 0].copy(), lohi[:, 1].copy()
            flat = hi == lo              # torch widens a zero-width range by 0.5 a side
            lo[flat] -= 0.5
            hi[flat] += 0.5
            norms = totals * ((hi - lo) / BINS)
            ints = counts.astype(np.int64)
            # Whole, non-negative counts over a finite range (all but a sampled
            # histogram's and a NaN's) go to the file as they are; the others'
            # densities, count / (total * width) as the decoder divides.
            whole = ((ints == counts) & (counts >= 0)).all(axis=1) & (norms > 0) \
                & (hi - lo < math.inf)
        lo, hi, totals = lo.tolist(), hi.tolist(), totals.astype(np.int64).tolist()
        hists = []
        for k, good in enumerate(whole.tolist()):
            if good:
                hists.append((keys[k], lo[k], hi[k], totals[k], ints[k].tolist(), None))
            else:
                with np.errstate(all="ignore"):
                    hists.append((keys[k], lo[k], hi[k], totals[k], None,
                                  (counts[k] / norms[k]).tolist()))
        nl = len(self.layers)
        figs = array[layer_at]                       # (layers, 6)
        bad, gbad = bads[:nl], bads[nl:2 * nl]
        # the histogram's range is the finite values' min and max (this rank's);
        # where some are not finite, how large is not known here
        with np.errstate(all="ignore"):
            absmax = np.where(bad == 0, np.maximum(-lohi[:nl, 0], lohi[:nl, 1]), np.nan)
        dead = figs[:, 3]
        dead = np.where(np.isfinite(dead), np.rint(dead), 0).astype(np.int64).tolist()
        layer_rows = [[index, type(module).__name__, units, d, self.layer_names[index], kind,
                       n // units if units else 0]
                      for (index, module, kind), (units, n), d in zip(self.layers, sizes, dead)]
        figures = dict(zip(("mean", "std", "saturation_pct", "grad_mean", "grad_std"),
                           figs[:, [0, 1, 2, 4, 5]].T.tolist()))
        figures.update(absmax=absmax.tolist(), nonfinite=bad.tolist(), grad_nonfinite=gbad.tolist())
        wfigs = array[weight_at]                     # (weights, 5): .., gbad, bad
        wfigures = dict(zip(("grad_mean", "grad_std", "grad_data_ratio", "grad_nonfinite",
                             "nonfinite"), wfigs.T.tolist()))
        # Non-finite values per tensor (its own, its gradient's): NaN = not measured.
        found = np.concatenate([bad, gbad, wfigs[:, 4], wfigs[:, 3]])
        found = np.where(np.isfinite(found), np.rint(found), 0).astype(np.int64).tolist()
        nw = len(self.weights)
        labels = [self._layer_label(index) for index, _, _ in self.layers] + \
            [name for name, _ in self.weights]
        self.nonfinite_counts = dict(zip(labels, zip(found[:nl] + found[2 * nl:2 * nl + nw],
                                                     found[nl:2 * nl] + found[2 * nl + nw:])))
        if self._trace is None and any(found):
            self._catch(step, "figures", before_update=False)
        return packed_snapshot(
            step, loss, lr, layer_rows, figures,
            [[name, list(p.shape)] for name, p in self.weights], wfigures,
            tuple(array[update_at:].tolist()), hists)
