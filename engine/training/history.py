"""Bounded per-step history: a whole run of any length in fixed memory.

A series keeps at most `capacity` buckets. Each bucket averages `stride`
consecutive steps; when the buckets fill up, neighbours are merged in pairs
and the stride doubles. A 200,000-step run and a 20-million-step run cost
the same memory, and the whole run stays plottable, already downsampled.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

# numpy is imported where used: the app's first frame does not wait for it.

CAPACITY = 4096            # buckets per series
LOSS_WINDOW = 1000         # the lecture averages log10 loss over 1,000 steps
MARKERS_KEPT = 1000


class Series:
    """Bucketed means of a per-step value, keyed by a global tick."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.stride = 1
        self.ticks = array("q")   # tick of each bucket's first step
        self.values = array("d")  # mean of the finite values in the bucket
        self._sum = 0.0
        self._count = 0           # finite values in the open bucket
        self._seen = 0            # steps in the open bucket
        self._first = 0

    def __len__(self) -> int:
        return len(self.values)

    def add(self, tick: int, value: float) -> None:
        if self._seen == 0:
            self._first = tick
        if math.isfinite(value):
            self._sum += value
            self._count += 1
        self._seen += 1
        if self._seen == self.stride:
            self._close()

    def extend(self, tick: int, values) -> None:
        """add() of consecutive values from `tick` on, whole buckets at once
        (a recording's block of steps; the sums may differ from add()'s in
        the last bit, as numpy adds in another order)."""
        import numpy as np
        v = np.asarray(values, dtype=np.float64)
        i, n = 0, len(v)
        while i < n:
            stride = self.stride
            if self._seen or n - i < stride:     # the open bucket, in part
                if self._seen == 0:
                    self._first = tick + i
                chunk = v[i:i + min(stride - self._seen, n - i)]
                ok = np.isfinite(chunk)
                self._sum += float(chunk[ok].sum())
                self._count += int(ok.sum())
                self._seen += len(chunk)
                i += len(chunk)
                if self._seen == stride:
                    self._close()
                continue
            m = min((n - i) // stride, self.capacity - len(self.values))
            block = v[i:i + m * stride].reshape(m, stride)
            ok = np.isfinite(block)
            sums, counts = np.where(ok, block, 0.0).sum(axis=1), ok.sum(axis=1)
            means = np.divide(sums, counts, out=np.full(m, math.nan), where=counts > 0)
            self.ticks.extend(range(tick + i, tick + i + m * stride, stride))
            self.values.extend(means.tolist())
            i += m * stride
            if len(self.values) >= self.capacity:
                self._halve()

    def _close(self) -> None:
        self.ticks.append(self._first)
        self.values.append(self._sum / self._count if self._count else math.nan)
        self._sum, self._count, self._seen = 0.0, 0, 0
        if len(self.values) >= self.capacity:
            self._halve()

    def _halve(self) -> None:
        # Neighbours merged in pairs: the mean of their finite values (numpy,
        # bucket for bucket what a loop over the pairs gives).
        import numpy as np
        ticks = np.frombuffer(self.ticks, dtype=np.int64)
        values = np.frombuffer(self.values, dtype=np.float64)
        even = len(values) - len(values) % 2
        pairs = values[:even].reshape(-1, 2)
        ok = np.isfinite(pairs)
        counts = ok.sum(axis=1)
        sums = np.where(ok, pairs, 0.0).sum(axis=1)
        merged = np.divide(sums, counts, out=np.full(len(pairs), math.nan), where=counts > 0)
        merged_t, merged_v = array("q", ticks[:even:2].tolist()), array("d", merged.tolist())
        if len(values) % 2:  # an odd last bucket stays as it is
            merged_t.append(self.ticks[-1])
            merged_v.append(self.values[-1])
        self.ticks, self.values = merged_t, merged_v
        self.stride *= 2

    def points(self) -> tuple[list[int], list[float]]:
        """(ticks, values) of the closed buckets plus the open one."""
        ticks, values = list(self.ticks), list(self.values)
        if self._seen:
            ticks.append(self._first)
            values.append(self._sum / self._count if self._count else math.nan)
        return ticks, values

    def nbytes(self) -> int:
        return self.ticks.buffer_info()[1] * self.ticks.itemsize + \
            self.values.buffer_info()[1] * self.values.itemsize


@dataclass(frozen=True)
class Marker:
    tick: int
    text: str


@dataclass
class History:
    """Loss, lr and update:data ratios of a session, restarts included.

    Ticks count every step taken since the history began, across restarts, so
    a restart shows as a marker on one continuous x-axis; `runs` says where
    each run began and with what config.
    """

    capacity: int = CAPACITY
    tick: int = 0
    log10_loss: Series = field(init=False)
    loss_windows: Series = field(init=False)   # lecture-style 1,000-step means
    lr: Series = field(init=False)
    ratios: list[Series] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    runs: list[tuple[int, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log10_loss = Series(self.capacity)
        self.loss_windows = Series(self.capacity)
        self.lr = Series(self.capacity)
        self._window_sum = 0.0
        self._window_n = 0
        self._window_start = 0

    def start_run(self, config: dict, n_params: int, why: str | None = None) -> None:
        self._flush_window()
        self.runs.append((self.tick, dict(config)))
        if len(self.ratios) != n_params:
            self.ratios = [Series(self.capacity) for _ in range(n_params)]
        if why:
            self.mark(why)

    def mark(self, text: str) -> None:
        self.markers.append(Marker(self.tick, text))
        del self.markers[:-MARKERS_KEPT]

    def add(self, log10_loss: float, lr: float, ratios: tuple[float, ...]) -> None:
        tick = self.tick
        self.log10_loss.add(tick, log10_loss)
        self.lr.add(tick, lr)
        for series, value in zip(self.ratios, ratios):
            series.add(tick, value)
        if self._window_n == 0:
            self._window_start = tick
        if math.isfinite(log10_loss):
            self._window_sum += log10_loss
            self._window_n += 1
        if self._window_n == LOSS_WINDOW:
            self._flush_window()
        self.tick += 1

    def add_many(self, log10_loss, lr, ratios) -> None:
        """add() of n steps at once: arrays of n losses and lrs, (n, P) ratios."""
        import numpy as np
        loss = np.asarray(log10_loss, dtype=np.float64)
        tick, n = self.tick, len(loss)
        ratios = np.asarray(ratios, dtype=np.float64).reshape(n, -1)
        group = [self.log10_loss, self.lr, *self.ratios[:ratios.shape[1]]]
        columns = np.column_stack([loss, np.asarray(lr, dtype=np.float64),
                                   ratios[:, :len(group) - 2]])
        if all((s.stride, s._seen, len(s.values), s.capacity) == (
                group[0].stride, group[0]._seen, len(group[0].values), group[0].capacity)
               for s in group):
            _extend_together(group, tick, columns)    # the usual case: series in step
        else:
            for j, series in enumerate(group):
                series.extend(tick, columns[:, j])
        finite = np.flatnonzero(np.isfinite(loss))   # windows hold finite values only
        values, p = loss[finite], 0
        while p < len(values):
            if self._window_n == 0:
                self._window_start = tick + int(finite[p])
            k = min(LOSS_WINDOW - self._window_n, len(values) - p)
            self._window_sum += float(values[p:p + k].sum())
            self._window_n += k
            p += k
            if self._window_n == LOSS_WINDOW:
                self._flush_window()
        self.tick += n

    def _flush_window(self) -> None:
        if self._window_n:
            self.loss_windows.add(self._window_start, self._window_sum / self._window_n)
        self._window_sum, self._window_n = 0.0, 0

    def add_val_loss(self, loss: float) -> None:
        self.val_loss.append((self.tick, loss))
        del self.val_loss[:-MARKERS_KEPT]

    def nbytes(self) -> int:
        series = [self.log10_loss, self.loss_windows, self.lr, *self.ratios]
        return sum(s.nbytes() for s in series)


def _extend_together(group: list[Series], tick: int, v: np.ndarray) -> None:
    """Series.extend of each column of `v` into the series of `group`, which
    share their bucket layout: one numpy pass for all (a recording's block
    of steps feeds loss, lr and every ratio at once)."""
    import numpy as np
    lead, i, n = group[0], 0, len(v)
    while i < n:
        stride = lead.stride
        if lead._seen or n - i < stride:     # the open bucket, in part
            chunk = v[i:i + min(stride - lead._seen, n - i)]
            ok = np.isfinite(chunk)
            sums, counts = np.where(ok, chunk, 0.0).sum(axis=0).tolist(), ok.sum(axis=0).tolist()
            first = lead._first if lead._seen else tick + i
            for s, total, count in zip(group, sums, counts):
                s._first = first
                s._sum += total
                s._count += count
                s._seen += len(chunk)
            i += len(chunk)
            if lead._seen == stride:
                for s in group:
                    s._close()
            continue
        m = min((n - i) // stride, lead.capacity - len(lead.values))
        block = v[i:i + m * stride].reshape(m, stride, -1)
        ok = np.isfinite(block)
        sums, counts = np.where(ok, block, 0.0).sum(axis=1), ok.sum(axis=1)
        means = np.divide(sums, counts, out=np.full(sums.shape, math.nan), where=counts > 0)
        # As bytes: array.extend would take each value as a Python object.
        ticks = np.arange(tick + i, tick + i + m * stride, stride, dtype=np.int64).tobytes()
        for s, column in zip(group, np.ascontiguousarray(means.T)):
            s.ticks.frombytes(ticks)
            s.values.frombytes(column.tobytes())
        i += m * stride
        if len(lead.values) >= lead.capacity:
            for s in group:
                s._halve()
