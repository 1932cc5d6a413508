"""Watch any torch.nn.Module train: the lecture's diagnostics from hooks, to a recording.

    from traintop import watch
    w = watch(model, "run.jsonl", optimizer=opt, every=10)
    ...
        opt.step()
        w.step(loss)          # after each optimizer step
    w.close()

Every `every` steps (and on step 1) the watcher arms its hooks for one step:
forward hooks on activation modules measure their outputs, tensor hooks on
those outputs measure the gradients flowing back, and the optimizer's step
pre/post hooks measure each parameter's real change, so update:data ratios
are right for any optimizer (Adam's update is not lr * grad). On the other
steps every hook returns at once and the loss stays a tensor until the
next batch is written: no host sync per step.

All figures of a snapshot are computed on the device and moved to the host
in one transfer. Under torch.distributed the writer rank (0 by default)
writes; with reduce=True every rank measures and the figures are averaged
across ranks before rank 0 writes them.
"""

from __future__ import annotations

import math
import time
import weakref
from pathlib import Path

import torch
from torch import nn

from .feed.messages import Event, RunStarted, Status, Steps
from .recording.recorder import Recorder
from .results import (DEAD_INPUT_BELOW, LayerStats, RunInfo, StatsSnapshot, StepResult,
                      WeightStats)
from .steps.by_shape import ShapeGroups, stds
from .steps.stats import BINS, SATURATION, FlatReader, _hist_parts, _histogram

# How each activation family saturates or dies: what `saturation_pct` and
# `dead` count (results.FAMILY_MEANING says it in words).
TANH_LIKE = (nn.Tanh, nn.Hardtanh, nn.Softsign)              # |t| > 0.97: flat ends at +-1
SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)                   # t < 0.015 or t > 0.985
RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)   # t <= 0: off
GELU_LIKE = (nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.CELU, nn.SELU)   # t < 0: negative regime
WATCH_STATUS_SECONDS = 0.5     # a Status with the step rate at least this often (no host sync)
# Above this many values a histogram's shape comes from this many values drawn
# at random (fixed per tensor size): torch.histc costs ~17 ms on 0.5M CPU values
# (1.3 ms on 65k), the sample ~0.3 ms. Its range (min, max) and every other figure stay exact.
HIST_SAMPLE = 16_384
PENDING_STEPS = 100      # losses kept as tensors at most this many steps
PENDING_SECONDS = 0.5    # ... or this long (single process only: ranks must stay in step)
# The flat layout of a snapshot's one host transfer, written once here: per
# layer its activation then gradient blocks, per weight its blocks, then one
# update ratio per parameter. A block is (length, averaged across ranks?):
# scalar figures average under reduce=True; a histogram covers its own
# rank's range, so histograms stay the writer's.
_HIST = 2 + BINS                                 # lo, hi, counts
ACT_BLOCKS = ((4, True), (_HIST, False))         # mean, std, saturated %, dead; histogram
GRAD_BLOCKS = ((2, True), (_HIST, False))        # mean, std; histogram
WEIGHT_BLOCKS = ((3, True), (_HIST, False))      # grad mean, grad std, grad:data; histogram


def _width(blocks) -> int:
    return sum(n for n, _ in blocks)


def _averaged(blocks) -> list[bool]:
    return [avg for n, avg in blocks for _ in range(n)]


def family(module: nn.Module) -> str | None:
    if isinstance(module, TANH_LIKE):
        return "tanh"
    if isinstance(module, SIGMOID_LIKE):
        return "sigmoid"
    if isinstance(module, RELU_LIKE):
        return "relu"
    if isinstance(module, GELU_LIKE):
        return "gelu"
    return None


def _units(t: torch.Tensor) -> torch.Tensor:
    """(observations, units): a unit is a feature (the last dim of a Linear-style
    output, e.g. (B, T, C)) or a channel (dim 1 of a conv's (N, C, H, W));
    every example and position is one observation of it."""
    if t.ndim <= 1:
        return t.reshape(1, -1)
    if t.ndim >= 4:
        t = t.movedim(1, -1)
    return t.reshape(-1, t.shape[-1])


def _share_and_dead(t: torch.Tensor, x, kind: str, module: nn.Module):
    """How many values are in the family's regime (a count) and which units are
    dead (bool per unit). Per-unit extremes (amax over the observations) decide
    "on every example and position" in one pass, ~10x faster than .all(dim=0)."""
    if kind in ("tanh", "sigmoid"):
        a = t.abs() if kind == "tanh" else (2 * t - 1).abs()
        return torch.count_nonzero(a > SATURATION), a.amin(dim=0) > SATURATION
    if kind == "relu":
        return torch.count_nonzero(t <= 0), t.amax(dim=0) <= 0
    share = torch.count_nonzero(t < 0)   # GELU-like: the negative regime
    below = DEAD_INPUT_BELOW.get(type(module).__name__)
    if below is None or x is None:
        return share, torch.zeros(t.shape[1], dtype=torch.bool, device=t.device)
    return share, x.amax(dim=0) < below   # dead only deep in the flat tail


_SAMPLES: dict = {}


def _sample_index(n: int, device) -> torch.Tensor:
    key = (n, str(device))
    if key not in _SAMPLES:
        g = torch.Generator().manual_seed(n)
        _SAMPLES[key] = torch.randint(0, n, (HIST_SAMPLE,), generator=g).to(device)
    return _SAMPLES[key]


def _hist(t: torch.Tensor) -> list[torch.Tensor]:
    """min, max and BINS counts over [min, max], as stats._hist_parts; large
    tensors count a fixed random sample, scaled to the whole."""
    flat = t.reshape(-1)
    n = flat.numel()
    if n <= HIST_SAMPLE:
        return _hist_parts(flat)
    lo, hi = torch.aminmax(flat)
    sample = flat.index_select(0, _sample_index(n, flat.device))   # 4x faster than flat[idx]
    width = hi - lo
    bins = ((sample - lo) * (BINS / torch.where(width > 0, width, 1.0))).long().clamp_(0, BINS - 1)
    bins = torch.where(width > 0, bins, BINS // 2)   # torch's histc of one value: the middle
    counts = torch.bincount(bins, minlength=BINS).float() * (n / HIST_SAMPLE)
    return [lo.reshape(1), hi.reshape(1), counts]


def _dist():
    d = torch.distributed
    return d if d.is_available() and d.is_initialized() else None


class Watcher:
    def __init__(self, model: nn.Module, path: str | Path, optimizer=None, every: int = 10,
                 reduce: bool = False, writer_rank: int | None = 0, meta: dict | None = None,
                 expected_initial_loss: float = math.nan):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: must be a whole number >= 1, got {every!r}")
        module = model.module if isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
        dist = _dist()
        self.rank = dist.get_rank() if dist else 0
        self.world = dist.get_world_size() if dist else 1
        self.reduce = bool(reduce) and self.world > 1
        self.every = every
        self.optimizer = optimizer
        # writer_rank=None: every rank writes its own file ("{rank}" in the path).
        self.writes = writer_rank is None or self.rank == writer_rank
        self.active = self.writes or self.reduce   # measures at all
        self.steps = 0
        self.armed = False
        self._acts: dict[int, torch.Tensor] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self._before: list[torch.Tensor | None] | None = None
        self._updates: torch.Tensor | None = None
        self._data_std: torch.Tensor | None = None   # per parameter, this snapshot's
        self._shape_groups: dict = {}
        self._weights: torch.Tensor | None = None
        self._pending: list[tuple[int, object, float]] = []
        self._pending_since = time.monotonic()
        self._handles: list = []
        self._sizes: dict[int, tuple[int, int]] = {}   # layer -> (units, numel), last seen
        self._status_at = self._started = time.monotonic()
        self._status_steps = 0

        leaves = [(n, m) for n, m in module.named_modules() if not any(True for _ in m.children())]
        self.layers = [(i, m, family(m)) for i, (_, m) in enumerate(leaves) if family(m)]
        self.layer_names = {i: leaves[i][0] for i, _, _ in self.layers}
        named = list(module.named_parameters())
        self.device = named[0][1].device if named else torch.device("cpu")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.weights = [(n, p) for n, p in named if p.ndim >= 2]
        self._weight_positions = torch.tensor(
            [i for i, (_, p) in enumerate(named) if p.ndim >= 2], dtype=torch.long,
            device=self.device)
        self.info = RunInfo(
            config={"model": type(module).__name__, "every": every,
                    "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                    "world_size": self.world, "reduce": self.reduce},
            vocab="", param_names=tuple(self.param_names),
            param_shapes=tuple(tuple(p.shape) for p in self.params),
            layer_kinds=tuple(type(m).__name__ for _, m in leaves),
            expected_initial_loss=float(expected_initial_loss))
        self.recorder: Recorder | None = None
        if self.writes:
            self.path = Path(str(path).replace("{rank}", str(self.rank)))
            # status_seconds=0: every Status this watcher sends (it spaces them itself).
            self.recorder = Recorder(self.path, status_seconds=0.0, meta={
                "writer": "traintop.engine.watch", **({"rank": self.rank} if dist else {}),
                "layer_names": {str(i): leaves[i][0] for i, _, _ in self.layers},
                **(meta or {})})
            self.recorder.consume(RunStarted(self.info))
            self._finalizer = weakref.finalize(self, self.recorder.close)
        if self.active:
            self._install()
            self.armed = True            # step 1 is always measured

    # ----- hooks -------------------------------------------------------------
    def _install(self) -> None:
        for index, module, kind in self.layers:
            self._handles.append(module.register_forward_hook(
                self._forward_hook(index, kind, module)))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._post_step))

    def _forward_hook(self, index: int, kind: str, layer: nn.Module):
        gelu_dead = kind == "gelu" and type(layer).__name__ in DEAD_INPUT_BELOW

        def hook(module, inputs, output):
            if not self.armed or index in self._acts or not torch.is_grad_enabled() \
                    or not isinstance(output, torch.Tensor):
                return
            t = _units(output.detach().float())                 # (observations, units)
            x = inputs[0] if gelu_dead and inputs and isinstance(inputs[0], torch.Tensor) \
                and inputs[0].shape == output.shape else None
            x = _units(x.detach()) if x is not None else None
            if t.shape[0] == 0:
                return
            share, dead = _share_and_dead(t, x, kind, layer)
            self._sizes[index] = (t.shape[1], t.numel())
            # (torch.std_mean's one pass loses digits on a mean near zero.)
            self._acts[index] = torch.cat([torch.stack([
                t.mean(), t.std(), share * (100.0 / t.numel()), dead.sum().float(),
            ]), *_hist(t)])
            if output.requires_grad:
                output.register_hook(self._grad_hook(index))
        return hook

    def _grad_hook(self, index: int):
        def hook(grad):
            if self.armed and index not in self._grads:
                g = grad.detach().float()
                # Separate passes: std_mean's mean loses digits on a mean near zero.
                self._grads[index] = torch.cat([torch.stack([g.mean(), g.std()]), *_hist(g)])
        return hook

    def _pre_step(self, optimizer, args, kwargs) -> None:
        if self.armed:
            groups = self._groups("params", self.params)
            self._before = (groups, groups.stack(self.params))   # the stacks are copies

    def _groups(self, what: str, tensors: list) -> ShapeGroups:
        """ShapeGroups of the tensors that are there (a parameter without a
        gradient has none), cached: the set rarely changes between steps."""
        have = tuple(i for i, t in enumerate(tensors) if t is not None and (
            what != "params" or t.grad is not None))
        key = (what, have)
        if key not in self._shape_groups:
            self._shape_groups[key] = ShapeGroups([tensors[i] for i in have], list(have),
                                                  len(tensors))
        return self._shape_groups[key]

    def _post_step(self, optimizer, args, kwargs) -> None:
        if self.armed and self._before is not None:
            self._updates = self._update_ratios(*self._before)
            self._weights = self._weight_figures()
            self._before, self._data_std = None, None

    def _update_ratios(self, groups: ShapeGroups, before: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            now = groups.stack(self.params, copy=False)
            data = stds(now)
            # Each parameter's std once: the weight figures reuse it (grad:data).
            self._data_std = groups.spread(data).to(self.device)
            changes = stds([n - b for n, b in zip(now, before)])
            return groups.spread([(c / d).log10() for c, d in zip(changes, data)]).to(self.device)

    def _weight_figures(self) -> torch.Tensor:
        if not self.weights:
            return torch.zeros(0, device=self.device)
        with torch.no_grad():
            grads = [p.grad for _, p in self.weights]
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
            nan_hist = torch.full((_HIST,), math.nan, device=self.device)
            hists = torch.stack([torch.cat(_hist(g.detach().float())).to(self.device)
                                 if g is not None else nan_hist for g in grads])
            return torch.cat([torch.stack([gmean, gstd, gstd / dstd], dim=1), hists],
                             dim=1).reshape(-1)

    # ----- stepping ------------------------------------------------------------
    def step(self, loss=None) -> None:
        """Call once after each optimizer.step(), with the step's loss (tensor or float)."""
        self.steps += 1
        step = self.steps
        if not self.active:
            return
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None \
            else math.nan
        value = loss.detach().float().reshape(()) if isinstance(loss, torch.Tensor) else (
            math.nan if loss is None else float(loss))
        self._pending.append((step, value, lr))
        if self.armed:
            self._flush_losses(snapshot=True)
        elif len(self._pending) >= PENDING_STEPS or (
                not self.reduce and time.monotonic() - self._pending_since >= PENDING_SECONDS):
            self._flush_losses(snapshot=False)
        self.armed = (step + 1) % self.every == 0
        self._acts, self._grads = {}, {}
        now = time.monotonic()
        if self.recorder is not None and now - self._status_at >= WATCH_STATUS_SECONDS:
            rate = (step - self._status_steps) / (now - self._status_at)
            self._status_at, self._status_steps = now, step
            self.recorder.consume(Status(step, lr, True, False, rate))

    def _flush_losses(self, snapshot: bool) -> None:
        """Losses of the pending steps to the host in one transfer (reduced
        across ranks on request), then written, the last with its snapshot."""
        vals = [v for _, v, _ in self._pending]
        if all(isinstance(v, torch.Tensor) for v in vals):
            losses = torch.stack(vals).to(self.device)
        else:   # floats (or a mix): the tensors among them sync one by one
            losses = torch.tensor([float(v) for v in vals], device=self.device)
        if self.reduce:
            losses = self._all_mean(losses)
        values = losses.tolist()
        results = [StepResult(s, loss, lr, ()) for (s, _, lr), loss in zip(self._pending, values)]
        if snapshot:
            last = results[-1]
            snap = self._snapshot(last.step, last.loss, last.lr)
            results[-1] = StepResult(last.step, last.loss, last.lr, snap.update_ratio_log10, snap)
        self._pending = []
        self._pending_since = time.monotonic()
        if self.recorder is not None:
            self.recorder.consume(Steps(tuple(results)))

    def _all_mean(self, t: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t / self.world

    def _snapshot(self, step: int, loss: float, lr: float) -> StatsSnapshot:
        if self._updates is None:         # no optimizer hooks fired: measure grads now
            self._updates = torch.full((len(self.params),), math.nan, device=self.device)
            self._weights = self._weight_figures()
        nan_layer = torch.full((_width(ACT_BLOCKS),), math.nan, device=self.device)
        nan_grad = torch.full((_width(GRAD_BLOCKS),), math.nan, device=self.device)
        layer_parts = [torch.cat([self._acts.get(i, nan_layer).to(self.device),
                                  self._grads.get(i, nan_grad).to(self.device)])
                       for i, _, _ in self.layers]
        flat = torch.cat([*layer_parts, self._weights, self._updates])
        if self.reduce:
            flat = self._reduce(flat)
        values = flat.tolist()   # the one host sync of the snapshot
        self._updates = self._weights = None
        return self._build(step, loss, lr, values)

    def _reduce(self, flat: torch.Tensor) -> torch.Tensor:
        """Average the scalar figures across ranks; histograms stay this rank's
        (their bins cover each rank's own range, so they do not add up)."""
        averaged = (_averaged(ACT_BLOCKS + GRAD_BLOCKS) * len(self.layers)
                    + _averaged(WEIGHT_BLOCKS) * len(self.weights) + [True] * len(self.params))
        scalar = torch.tensor(averaged, dtype=torch.bool, device=flat.device)
        reduced = flat.clone()
        reduced[scalar] = self._all_mean(flat[scalar].contiguous())
        return reduced

    def _build(self, step: int, loss: float, lr: float, values: list[float]) -> StatsSnapshot:
        take = FlatReader(values).take
        layers = []
        for index, module, kind in self.layers:
            mean, std, sat, dead = take(4)
            lo, hi = take(2)
            counts = take(BINS)
            gmean, gstd = take(2)
            glo, ghi = take(2)
            gcounts = take(BINS)
            units, numel = self._sizes.get(index, (0, 1))
            layers.append(LayerStats(
                index=index, kind=type(module).__name__, mean=mean, std=std,
                saturation_pct=sat, dead=int(round(dead)) if math.isfinite(dead) else 0,
                units=units, grad_mean=gmean, grad_std=gstd,
                hist=_histogram(lo, hi, counts, numel),
                grad_hist=_histogram(glo, ghi, gcounts, numel),
                name=self.layer_names[index], family=kind,
                per_unit=numel // units if units else 0))
        weights = []
        for name, p in self.weights:
            gmean, gstd, ratio = take(3)
            lo, hi = take(2)
            counts = take(BINS)
            weights.append(WeightStats(name=name, shape=tuple(p.shape), grad_mean=gmean,
                                       grad_std=gstd, grad_data_ratio=ratio,
                                       hist=_histogram(lo, hi, counts, p.numel())))
        return StatsSnapshot(step=step, loss=loss, lr=lr, layers=tuple(layers),
                             weights=tuple(weights),
                             update_ratio_log10=tuple(take(len(self.params))))

    # ----- the rest --------------------------------------------------------------
    def event(self, kind: str, text: str, data: dict | None = None) -> None:
        """Mark an intervention (lr change, evaluation, checkpoint) at the current step."""
        if self.recorder is not None:
            self._flush_pending()
            self.recorder.consume(Event(kind, self.steps, text, dict(data or {})))

    def _flush_pending(self) -> None:
        if self._pending and not self.reduce:
            self._flush_losses(snapshot=False)

    def flush(self) -> None:
        """Make everything so far visible to readers (e.g. before a long evaluation)."""
        self._flush_pending()
        if self.recorder is not None:
            self.recorder.flush()

    def close(self) -> None:
        """Write what is pending, end the recording and remove every hook."""
        if self._pending:
            self._flush_losses(snapshot=False)
        # The final rate is the whole run's: the last interval may hold no steps.
        rate = self.steps / max(time.monotonic() - self._started, 1e-9)
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.recorder is not None:
            lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else math.nan
            self.recorder.close(Status(self.steps, lr, False, True, rate))
            self._finalizer.detach()
            self.recorder = None

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def watch(model: nn.Module, path: str | Path, optimizer=None, every: int = 10,
          reduce: bool = False, writer_rank: int | None = 0, meta: dict | None = None,
          expected_initial_loss: float = math.nan) -> Watcher:
    """Record the diagnostics of `model`'s training to `path` (.jsonl or .jsonl.gz).

    optimizer: its step hooks give the update:data ratios (None: no ratios).
    every: full diagnostics every `every` steps (and on step 1).
    reduce: under torch.distributed, average the figures across ranks first.
    writer_rank: the rank that writes (None: every rank, "{rank}" in `path`).
    """
    return Watcher(model, path, optimizer, every, reduce, writer_rank, meta,
                   expected_initial_loss)
