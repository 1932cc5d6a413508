"""The figures of a watched step, computed on the device with no host sync:
one call's activation or gradient record, a module's calls merged into one
block of the snapshot's flat layout, histograms of the finite values."""

from __future__ import annotations

import math

import numpy as np
import torch

from traintop.engine.steps.stats import BINS, SATURATION, _hist_parts

# Above this many values a histogram's shape comes from this many values drawn
# at random (fixed per tensor size): torch.histc costs ~17 ms on 0.5M CPU values
# (1.3 ms on 65k), the sample ~0.3 ms. Its range (min, max) and every other figure stay exact.
HIST_SAMPLE = 16_384
# The flat layout of a snapshot's one host transfer, written once here: per
# layer its activation then gradient blocks, per weight its blocks, then one
# update ratio per parameter. A block is (length, averaged across ranks?):
# scalar figures average under reduce=True; a histogram covers its own
# rank's range, so histograms stay the writer's.
# A histogram counts the finite values only; each tensor's non-finite values are
# counted apart (a rank's own count: never averaged).
_HIST = 2 + BINS                                 # lo, hi, counts
ACT_BLOCKS = ((4, True), (_HIST, False), (1, False))   # mean, std, saturated %, dead;
#                                                        histogram; non-finite
GRAD_BLOCKS = ((2, True), (_HIST, False), (1, False))  # mean, std; histogram; non-finite
WEIGHT_BLOCKS = ((3, True), (_HIST, False), (2, False))  # grad mean, std, grad:data; histogram;
#                                                          non-finite in the grad, in the data


def _width(blocks) -> int:
    return sum(n for n, _ in blocks)


ACT_WIDTH, GRAD_WIDTH, WEIGHT_WIDTH = (_width(b) for b in (ACT_BLOCKS, GRAD_BLOCKS,
                                                           WEIGHT_BLOCKS))


def _averaged(blocks) -> list[bool]:
    return [avg for n, avg in blocks for _ in range(n)]


def _units(t: torch.Tensor) -> torch.Tensor:
    """(observations, units): a unit is a feature (the last dim of a Linear-style
    output, e.g. (B, T, C)) or a channel (dim 1 of a conv's (N, C, H, W));
    every example and position is one observation of it."""
    if t.ndim <= 1:
        return t.reshape(1, -1)
    if t.ndim >= 4:
        t = t.movedim(1, -1)
    return t.reshape(-1, t.shape[-1])


def _share_and_dead(t: torch.Tensor, x, kind: str, below: float | None):
    """How many values are in the family's regime (a count) and which units are
    dead (bool per unit). Per-unit extremes (amax over the observations) decide
    "on every example and position" in one pass, ~10x faster than .all(dim=0).
    `below`: a GELU-like unit is dead where its input `x` stays below it."""
    if kind in ("tanh", "sigmoid"):
        a = t.abs() if kind == "tanh" else (2 * t - 1).abs()
        return torch.count_nonzero(a > SATURATION), a.amin(dim=0) > SATURATION
    if kind == "relu":
        return torch.count_nonzero(t <= 0), t.amax(dim=0) <= 0
    share = torch.count_nonzero(t < 0)   # GELU-like: the negative regime
    if below is None or x is None:
        return share, torch.zeros(t.shape[1], dtype=torch.bool, device=t.device)
    return share, x.amax(dim=0) < below   # dead only deep in the flat tail


# A wider range overflows float32 in (x - lo) * BINS: torch.histc's own way then.
_BINNABLE = float(np.finfo(np.float32).max) / BINS / 2
NUMPY_HIST_MIN = 256   # values: below this torch.histc is as fast (numpy: ~5 us + 5 ns a value)
_SAMPLES: dict = {}


def _sample_index(n: int, device) -> torch.Tensor:
    key = (n, str(device))
    if key not in _SAMPLES:
        g = torch.Generator().manual_seed(n)
        _SAMPLES[key] = torch.randint(0, n, (HIST_SAMPLE,), generator=g).to(device)
    return _SAMPLES[key]


_ZERO = torch.zeros((), dtype=torch.int64)   # no non-finite value (the CPU's short way)


def _sample(flat: torch.Tensor) -> torch.Tensor:
    return flat.index_select(0, _sample_index(flat.numel(), flat.device))


def _histc_cpu(flat: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """torch.histc(flat, BINS, lo, hi) of a CPU tensor whose min and max are
    lo and hi, bit for bit, in a third of its time (it is most of a measured
    step's cost on a small model): histc's own bin, (x - lo) * BINS / (hi - lo)
    in float32 truncated (the max in the last bin), counted by numpy's bincount."""
    if flat.dtype != torch.float32 or not _BINNABLE > hi - lo > 0 \
            or flat.numel() < NUMPY_HIST_MIN:
        # histc widens an empty range; on a few values numpy's calls cost more
        return torch.histc(flat, bins=BINS, min=lo, max=hi)
    low = np.float32(lo)
    pos = np.subtract(flat.numpy(), low)
    np.multiply(pos, np.float32(BINS), out=pos)
    np.divide(pos, np.float32(hi) - low, out=pos)
    counts = np.bincount(pos.astype(np.int32), minlength=BINS + 1)
    counts[BINS - 1] += counts[BINS:].sum()
    return torch.from_numpy(counts[:BINS].astype(np.float32))


def _histc_np(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """_histc_cpu of a float32 numpy array: float32 counts, histc's bit for bit."""
    if not _BINNABLE > hi - lo > 0 or a.size < NUMPY_HIST_MIN:
        return torch.histc(torch.from_numpy(a), bins=BINS, min=lo, max=hi).numpy()
    low = np.float32(lo)
    pos = np.subtract(a, low)
    np.multiply(pos, np.float32(BINS), out=pos)
    np.divide(pos, np.float32(hi) - low, out=pos)
    counts = np.bincount(pos.astype(np.int32), minlength=BINS + 1)
    counts[BINS - 1] += counts[BINS:].sum()
    return counts[:BINS].astype(np.float32)


def _hist_row(t: torch.Tensor, row: np.ndarray) -> bool:
    """_hist of a CPU tensor into `row` (lo, hi, BINS counts, non-finite: the
    layout's _HIST + 1 floats), in numpy: no torch call on a tensor of finite
    values (the usual one). False, `row` untouched, where some value is not
    finite or the tensor is not a float32 or float64 one (then _hist)."""
    if t.dtype not in (torch.float32, torch.float64) or t.layout != torch.strided:
        return False
    return _hist_row_np(t.detach().numpy().reshape(-1), row)


def _hist_row_np(a: np.ndarray, row: np.ndarray) -> bool:
    """_hist_row of a flat float32 or float64 array (counted as float32)."""
    n = a.size
    if not n:
        return False
    a = a.astype(np.float32, copy=False)
    lo, hi = a.min(), a.max()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    if n <= HIST_SAMPLE:
        row[2:2 + BINS] = _histc_np(a, float(lo), float(hi))
    else:   # as _hist: a float32 tensor's counts times the scale (torch's rounding)
        counts = _histc_np(a[_sample_index(n, "cpu").numpy()], float(lo), float(hi))
        row[2:2 + BINS] = (torch.from_numpy(counts) * (n / HIST_SAMPLE)).numpy()
    row[0], row[1], row[2 + BINS] = lo, hi, 0.0
    return True


def _hist(t: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """min, max and BINS counts over [min, max] of the FINITE values, as
    stats._hist_parts (torch.histc refuses a NaN or inf range), and the count
    of non-finite values; large tensors count a fixed random sample, scaled to
    the whole. No host sync: a tensor of no finite value gives 0, 0 and no counts.
    On the CPU, where a read costs no sync, a tensor whose min and max are
    finite (so all of it is: NaN spreads to both) takes the short way."""
    flat = t.reshape(-1)
    n = flat.numel()
    if flat.device.type == "cpu" and n:
        lo, hi = torch.aminmax(flat)
        low, high = lo.item(), hi.item()
        if math.isfinite(low) and math.isfinite(high):
            counts = _histc_cpu(flat if n <= HIST_SAMPLE else _sample(flat), low, high)
            if n > HIST_SAMPLE:
                counts = counts * (n / HIST_SAMPLE)
            return [lo.reshape(1), hi.reshape(1), counts], _ZERO
    finite = torch.isfinite(flat)
    bad = n - finite.sum()
    if n <= HIST_SAMPLE:
        lo = flat.masked_fill(~finite, math.inf).amin()
        fill = torch.where(torch.isfinite(lo), lo, 0.0)
        # Non-finite values take the finite minimum's place: the range is the
        # finite values', and they all fall in the lowest occupied bin, where
        # they are taken off again (histc of the finite values, bit for bit).
        lo, hi, counts = _hist_parts(torch.where(finite, flat, fill))
        first = (counts > 0).to(torch.uint8).argmax().reshape(1)
        counts = counts.index_add(0, first, -bad.to(counts.dtype).reshape(1))
        return [lo, hi, counts], bad
    lo = flat.masked_fill(~finite, math.inf).amin()
    hi = flat.masked_fill(~finite, -math.inf).amax()
    some = torch.isfinite(lo)
    lo, hi = torch.where(some, lo, 0.0), torch.where(some, hi, 0.0)
    sample = flat.index_select(0, _sample_index(n, flat.device))   # 4x faster than flat[idx]
    kept = torch.isfinite(sample)
    width = hi - lo
    bins = ((sample - lo) * (BINS / torch.where(width > 0, width, 1.0)))
    bins = torch.where(kept, bins, 0.0).long().clamp_(0, BINS - 1)
    bins = torch.where(width > 0, bins, BINS // 2)   # torch's histc of one value: the middle
    counts = torch.bincount(bins, weights=kept.float(), minlength=BINS).float() * (n / HIST_SAMPLE)
    return [lo.reshape(1), hi.reshape(1), counts], bad


def _share_and_dead_np(a: np.ndarray, x, kind: str, below: float | None):
    """_share_and_dead of a CPU float32 (observations, units) array, in numpy
    (the same comparisons, elementwise: the same counts); x: a tensor or None."""
    if kind in ("tanh", "sigmoid"):
        s = np.abs(a) if kind == "tanh" else np.abs(2 * a - 1)
        return np.count_nonzero(s > SATURATION), s.min(axis=0) > SATURATION
    if kind == "relu":
        return np.count_nonzero(a <= 0), a.max(axis=0) <= 0
    share = np.count_nonzero(a < 0)
    if below is None or x is None:
        return share, np.zeros(a.shape[1], dtype=bool)
    return share, (x.amax(dim=0) < below).numpy()


class StepBatch:
    """A measured step's CPU float32 figures, computed together once the
    update is done: every histogram in one bincount (each tensor's bins
    offset by its own; histc's bin, bit for bit) and every mean and std
    (unbiased, as Tensor.std: the sums in float64, the squares' pairwise in
    float32) in one pass, over the step's values laid end to end once.

    Between snapshots a training step's own code pushes numpy's out of the
    CPU's caches: each distinct call costs ~10 us there, a tensor's figures
    alone ~15 calls. Rows and moments are filled in place (views of the
    snapshot's blocks), NaN until run()."""

    def __init__(self):
        # (flat float32 values, histogram row or None, (mean, std) out or None)
        self.jobs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        # The last step's jobs and their layout (sizes, starts, each histogram
        # value's bin offset): the same on every measured step of a model, so made once.
        self._layout: tuple | None = None
        self.after: list = []     # called once the figures are in (the ratios of them)

    def add(self, values: np.ndarray, row: np.ndarray | None = None,
            moments: np.ndarray | None = None) -> None:
        """`row` (lo, hi, BINS counts, non-finite): the values' histogram;
        `moments` (2 floats): their mean and std."""
        if row is not None:
            row[:] = math.nan
        if moments is not None:
            moments[:] = math.nan
        self.jobs.append((values, row, moments))

    def run(self) -> None:
        jobs, self.jobs = self.jobs, []
        after, self.after = self.after, []
        if jobs:
            # the histograms' values first, end to end (their bins offset by job)
            jobs.sort(key=lambda j: j[1] is None)
            key = tuple((v.size, r is None, m is None) for v, r, m in jobs)
            if self._layout is None or self._layout[0] != key:
                self._layout = (key, *_batch_layout(key))
            _, sizes, starts, hists, offsets = self._layout
            x = np.concatenate([v for v, _, _ in jobs])
            if any(m is not None for _, _, m in jobs):
                _moments_into(x, sizes, starts, jobs)
            if hists:
                _hists_into(x[:int(sizes[:hists].sum())], sizes[:hists], starts[:hists],
                            offsets, jobs[:hists])
        for finish in after:
            finish()


def _batch_layout(key: tuple) -> tuple:
    sizes = np.array([n for n, _, _ in key], dtype=np.int64)
    starts = np.zeros(len(key), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    hists = sum(1 for _, no_row, _ in key if not no_row)
    # int32 bins (histc's truncation, as intp's; 6x cheaper a cast than intp's)
    offsets = np.repeat(np.arange(0, hists * (BINS + 1), BINS + 1, dtype=np.int32),
                        sizes[:hists])
    return sizes, starts, hists, offsets


def _moments_into(x: np.ndarray, sizes: np.ndarray, starts: np.ndarray, jobs: list) -> None:
    """Each job's mean and unbiased std: two passes (the squares about the
    mean: no digits lost to a mean far from zero), numpy's pairwise sums."""
    with np.errstate(all="ignore"):
        means = np.add.reduceat(x, starts, dtype=np.float64) / sizes
        centre = means.astype(np.float32)
        centred = x - np.repeat(centre, sizes)
        np.multiply(centred, centred, out=centred)
        # about the float32 centre, not the mean: less its offset's share, exactly
        # (sum (x - c)^2 = sum (x - mean)^2 + n (mean - c)^2)
        off = means - centre
        var = (np.add.reduceat(centred, starts) - sizes * off * off) / (sizes - 1)
        # Squares float32 cannot hold (an exploding or vanishing tensor's: a
        # spread past 1e19 or under 1e-19) summed again in float64.
        for j in np.flatnonzero(~((var > 1e-37) & (var < 1e37)) & np.isfinite(means)).tolist():
            seg = x[starts[j]:starts[j] + sizes[j]].astype(np.float64)
            var[j] = np.square(seg - seg.mean()).sum() / (sizes[j] - 1)
        std = np.sqrt(var)
    std[sizes == 1] = np.nan        # no spread from one value (Tensor.std's NaN)
    for (_, _, out), mean, sd in zip(jobs, means.tolist(), std.tolist()):
        if out is not None:
            out[0], out[1] = mean, sd


def _hists_into(x: np.ndarray, sizes: np.ndarray, starts: np.ndarray, offsets: np.ndarray,
                jobs: list) -> None:
    lo, hi = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    with np.errstate(all="ignore"):        # inf - inf, 1e38 - -1e38: not ok below
        width = hi - lo
    ok = width > 0                         # finite, and histc's own range (no widening)
    ok &= width < _BINNABLE
    if not ok.all():                       # those alone, histc's way or _hist's
        for j in np.flatnonzero(~ok).tolist():
            _hist_job(*jobs[j][:2])
        width[~ok] = 1.0
        lo[~ok] = 0.0
    with np.errstate(all="ignore"):        # a NaN or inf among the values not counted here
        pos = np.subtract(x, np.repeat(lo, sizes))
        np.multiply(pos, np.float32(BINS), out=pos)
        np.divide(pos, np.repeat(width, sizes), out=pos)
        bins = pos.astype(np.int32)
    if not ok.all():
        # A tensor left to _hist_job may hold NaN or inf: its bins here are
        # garbage, kept within its own. (The others' lie in 0..BINS: x - lo
        # <= hi - lo, rounding is monotonic, the max lands on BINS exactly.)
        np.clip(bins, 0, BINS, out=bins)
    bins += offsets
    n = len(jobs)
    counts = np.bincount(bins, minlength=n * (BINS + 1)).reshape(n, BINS + 1)
    counts[:, BINS - 1] += counts[:, BINS]    # the max in the last bin
    rows = np.empty((n, _HIST + 1), dtype=np.float32)
    rows[:, 0], rows[:, 1], rows[:, 2:2 + BINS], rows[:, -1] = lo, hi, counts[:, :BINS], 0.0
    for (_, row, _), new, good in zip(jobs, rows, ok.tolist()):
        if good:
            row[:] = new


def _hist_job(values: np.ndarray, row: np.ndarray) -> None:
    """One StepBatch histogram the batch leaves: one value, or a non-finite one."""
    if not _hist_row_np(values, row):
        parts, bad = _hist(torch.from_numpy(values))
        row[:] = torch.cat([*parts, bad.float().reshape(1)]).numpy()


def _row_record(t: torch.Tensor, batch: StepBatch | None, owned: bool = False) -> dict | None:
    """The histogram part of a CPU float32 record as one numpy row (lo, hi,
    counts, non-finite), counted with the step's others (`batch`, which
    fills its mean and std, "mom", too) where small enough, or at once
    (_hist_row); None where _hist's way is needed.
    `owned`: `t` is the watcher's own copy (no other copy needed)."""
    if t.device.type != "cpu" or t.dtype != torch.float32 or not t.numel():
        return None
    row = np.empty(_HIST + 1, dtype=np.float32)
    if batch is not None and t.numel() <= HIST_SAMPLE:
        values = t.detach().numpy().reshape(-1)
        mom = np.empty(2, dtype=np.float32)
        batch.add(values if owned else values.copy(), row, mom)   # a copy: the values now
        return {"row": row, "mom": mom}
    if not _hist_row(t, row):
        return None
    return {"row": row}


def _parts(r: dict) -> dict:
    """A record's lo, hi, counts and non-finite count as tensors (a row's views)."""
    if "row" in r and "lo" not in r:
        row = r["row"]
        r.update(lo=torch.from_numpy(row[0:1]), hi=torch.from_numpy(row[1:2]),
                 counts=torch.from_numpy(row[2:2 + BINS]),
                 bad=torch.from_numpy(row[2 + BINS:]).reshape(()))
    return r


def _act_record(t: torch.Tensor, x, kind: str, below, batch: StepBatch | None = None,
                owned: bool = False) -> dict:
    """One call's activation figures (t: (observations, units)), to be merged
    with the step's other calls of the module (_act_block). On the CPU the
    counts and histogram come from numpy: torch's call costs more than the work."""
    record = _row_record(t, batch, owned) if x is None or x.dtype == torch.float32 else None
    if record is not None:
        share, dead = _share_and_dead_np(t.numpy(), x, kind, below)
    else:
        share, dead = _share_and_dead(t, x, kind, below)
        (lo, hi, counts), bad = _hist(t)
        record = {"lo": lo, "hi": hi, "counts": counts, "bad": bad}
    record.update(n=t.numel(), share=share, dead=dead)
    if "mom" not in record:   # (torch.std_mean's one pass loses digits on a mean near zero.)
        record.update(mean=t.mean(), std=t.std())
    return record


def _grad_record(g: torch.Tensor, batch: StepBatch | None = None, owned: bool = False) -> dict:
    record = _row_record(g, batch, owned)
    if record is None:
        (lo, hi, counts), bad = _hist(g)
        record = {"lo": lo, "hi": hi, "counts": counts, "bad": bad}
    record["n"] = g.numel()
    if "mom" not in record:
        record.update(mean=g.mean(), std=g.std())
    return record


def _mean_std(r: dict) -> tuple:
    """A record's mean and std: floats where the batch measured them, else tensors."""
    mom = r.get("mom")
    return (r["mean"], r["std"]) if mom is None else (float(mom[0]), float(mom[1]))


def _moments(records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) std over every call's values, exactly, from each
    call's own (Chan's pairwise combination of the sums of squares)."""
    pairs = [_mean_std(r) for r in records]
    if len(records) == 1:
        return tuple(torch.as_tensor(v) for v in pairs[0])
    means = torch.stack([torch.as_tensor(m, dtype=torch.float32).reshape(()) for m, _ in pairs])
    n = torch.tensor([float(r["n"]) for r in records], device=means.device)
    stds = torch.nan_to_num(torch.stack([torch.as_tensor(sd, dtype=torch.float32).reshape(())
                                         for _, sd in pairs]))  # one value: 0
    mean = (n * means).sum() / n.sum()
    m2 = (stds ** 2 * (n - 1)).sum() + (n * (means - mean) ** 2).sum()
    return mean, (m2 / (n.sum() - 1)).sqrt()


def _merged_hist(records: list[dict]) -> list[torch.Tensor]:
    """min, max and BINS counts over all calls: each call's counts spread
    evenly over its bins and re-binned on the common range (exact where the
    module ran once; a call of one value counts in the bin of that value)."""
    records = [_parts(r) for r in records]
    if len(records) == 1:
        r = records[0]
        return [r["lo"], r["hi"], r["counts"]]
    lo = torch.stack([r["lo"].reshape(()) for r in records]).amin()
    hi = torch.stack([r["hi"].reshape(()) for r in records]).amax()
    width = hi - lo
    steps = torch.arange(BINS + 1, device=lo.device, dtype=lo.dtype) / BINS
    edges = lo + width * steps
    total = torch.zeros(BINS, device=lo.device, dtype=records[0]["counts"].dtype)
    for r in records:
        l, h, c = r["lo"].reshape(()), r["hi"].reshape(()), r["counts"].to(total.dtype)
        w = h - l
        src = l + w * steps
        overlap = (torch.minimum(src[1:, None], edges[None, 1:])
                   - torch.maximum(src[:-1, None], edges[None, :-1])).clamp_min(0)
        spread = c @ (overlap / torch.where(w > 0, w / BINS, 1.0)).to(total.dtype)
        k = ((l - lo) * (BINS / torch.where(width > 0, width, 1.0))).long().clamp(0, BINS - 1)
        k = torch.where(width > 0, k, BINS // 2)     # torch's histc of one value: the middle
        point = torch.zeros_like(total).index_add(0, k.reshape(1), c.sum().reshape(1))
        total = total + torch.where(w > 0, spread, point)
    return [lo.reshape(1), hi.reshape(1), total]


def _act_block(records: list[dict]) -> torch.Tensor:
    """ACT_BLOCKS of a module over all its calls on the step: mean, std, share %,
    dead units (dead on every call: its units as the first call's), histogram, non-finite."""
    if len(records) == 1 and "row" in records[0]:   # a CPU module called once: numpy's
        r = records[0]
        out = np.empty(ACT_WIDTH, dtype=np.float32)
        # float32 as torch's share * (100 / n)
        mean, std = _mean_std(r)
        out[:4] = (float(mean), float(std),
                   np.float32(r["share"]) * np.float32(100.0 / r["n"]), r["dead"].sum())
        out[4:] = r["row"]
        return torch.from_numpy(out)
    records = [_parts(r) for r in records]
    mean, std = _moments(records)
    n = sum(r["n"] for r in records)
    share = sum(torch.as_tensor(r["share"]).float() for r in records)
    dead = torch.as_tensor(records[0]["dead"])
    for r in records[1:]:
        if r["dead"].shape == dead.shape:
            dead = dead & torch.as_tensor(r["dead"])
    bad = sum(r["bad"].float() for r in records)
    return torch.cat([torch.stack([mean.float(), std.float(), share * (100.0 / n),
                                   dead.sum().float()]),
                      *_merged_hist(records), bad.reshape(1)])


def _grad_block(records: list[dict]) -> torch.Tensor:
    if len(records) == 1 and "row" in records[0]:
        r = records[0]
        out = np.empty(GRAD_WIDTH, dtype=np.float32)
        mean, std = _mean_std(r)
        out[:2] = float(mean), float(std)
        out[2:] = r["row"]
        return torch.from_numpy(out)
    records = [_parts(r) for r in records]
    mean, std = _moments(records)
    bad = sum(r["bad"].float() for r in records)
    return torch.cat([torch.stack([mean.float(), std.float()]), *_merged_hist(records),
                      bad.reshape(1)])
