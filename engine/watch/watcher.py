"""The Watcher: hooks on a model and its optimizer, the step-by-step record
(the package's docstring says what it measures and when)."""

from __future__ import annotations

import logging
import math
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from traintop.engine.feed.messages import Event, RunStarted, Status, Steps
from traintop.engine.recording.recorder import Recorder
from traintop.engine.activations import recognise, torch_family, types_text, user_table
from traintop.engine.results import RunInfo, StepResult
from traintop.engine.steps.by_shape import FlatLayout, ShapeGroups
from .calls import StepCalls, _folded
from .figures import HIST_SAMPLE, StepBatch, _act_record, _grad_record, _units
from .gates import _gate_names, _gate_values, _rnn_output
from .snapshot import SnapshotFigures
from .trace import NonFiniteTrace, _Trace, _float

log = logging.getLogger("traintop")

# How each activation family saturates or dies: what `saturation_pct` and
# `dead` count (results.FAMILY_MEANING says it in words); which modules are
# activations: traintop.engine.activations (torch's, other libraries' by name,
# the user's own, any other stateless one by its curve, recurrent layers' outputs).
MAX_CALLS = 64   # calls of one module measured on a step (one called in a loop: its first 64)
WATCH_STATUS_SECONDS = 0.5     # a Status with the step rate at least this often (no host sync)
PENDING_STEPS = 100      # losses kept as tensors at most this many steps
PENDING_SECONDS = 0.5    # ... or this long (single process only: ranks must stay in step)
# Parameters of at most this many values are candidates for the cheap per-step
# check of a gradient (see Watcher._canary).
CANARY_MAX = 65_536
_NUMPY_SUMS = (torch.float32, torch.float64, torch.float16)


def family(module: nn.Module) -> str | None:
    """The activation family of one of torch's modules (no probe, no user table)."""
    return torch_family(module)


def _sparse_params(module: nn.Module) -> list[str]:
    """Names of the embedding tables whose gradient is sparse: an nn.Embedding's
    (or EmbeddingBag's) weight not also used by another module (a weight tied to
    an output layer gets a gradient on every row)."""
    users: dict[int, list[nn.Module]] = {}
    for m in module.modules():
        for p in m.parameters(recurse=False):
            users.setdefault(id(p), []).append(m)
    return [n for n, p in module.named_parameters()
            if p.ndim == 2 and (u := users.get(id(p), []))
            and all(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in u)]


def _is_compiled(module) -> bool:
    """Whether `module` is what torch.compile(model) returned (torch._dynamo not
    imported yet: it cannot be, and importing it would cost seconds)."""
    if "torch._dynamo" not in sys.modules:
        return False
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except Exception:
        return False
    return isinstance(module, OptimizedModule) and isinstance(
        getattr(module, "_orig_mod", None), nn.Module)


def _scalar(x):
    """A loss or norm as pending: a tensor stays one (no host sync; its mean
    where it holds several values), anything else a float (NaN: none)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return (x if x.numel() == 1 else x.float().mean()).reshape(())
    return math.nan if x is None else _float(x)


def _scale_of(scaler, device) -> torch.Tensor | None:
    """A GradScaler's scale as a tensor copy (no host sync; None: disabled)."""
    if not scaler.is_enabled():
        return None
    scale = getattr(scaler, "_scale", None)
    if isinstance(scale, torch.Tensor):
        return scale.detach().float().clone()
    return torch.tensor(float(scaler.get_scale()), device=device)


def _dist():
    d = torch.distributed
    return d if d.is_available() and d.is_initialized() else None


class Watcher(SnapshotFigures, NonFiniteTrace):
    def __init__(self, model: nn.Module, path: str | Path, optimizer=None, every: int = 10,
                 reduce: bool = False, writer_rank: int | None = 0, meta: dict | None = None,
                 expected_initial_loss: float = math.nan, activations: dict | None = None,
                 max_grad_norm: float | None = None, scaler=None,
                 check_every_step: bool = False):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: must be a whole number >= 1, got {every!r}")
        module = model.module if isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
        # What torch.compile returned: its model is watched (names without "_orig_mod."),
        # and its measured forwards run eagerly (_hook_forward).
        self._compiled = module if _is_compiled(module) else None
        module = module._orig_mod if self._compiled is not None else module
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
        # layer -> each call's figures on this step (a module may run several times)
        self._acts: dict[int, list[dict]] = {}
        self._grads: dict[int, list[dict]] = {}
        self._before: list[torch.Tensor | None] | None = None
        self._updates: torch.Tensor | None = None
        self._data_std: torch.Tensor | None = None   # per parameter, this snapshot's
        self._shape_groups: dict = {}
        self._weights: torch.Tensor | None = None
        self._pending: list[tuple] = []   # (step, loss, lr, grad norm)
        self._pending_since = time.monotonic()
        self._handles: list = []
        self._sizes: dict[int, tuple[int, int]] = {}   # layer -> (units, numel), last step
        self._status_at = self._started = time.monotonic()
        self._status_steps = 0
        # Never break the run: a failing statistic is logged once and recorded
        # as a monitor-error event; non-finite values are traced once per run.
        self._faults_seen: set = set()
        self._in_step = False                   # in w.step (else: in a hook, mid-step)
        self._events: list[Event] = []          # written after the pending steps
        self._trace: _Trace | None = None       # the non-finite trace, once caught
        self.nonfinite_counts: dict[str, tuple[int, int]] = {}   # the last snapshot's
        self.nonfinite: dict | None = None      # what the trace found (the event's data)
        # One recorded step per optimizer step (traintop.engine.watch.calls): the
        # optimizer's steps counted by its hooks, w.step's calls matched to them.
        self.scaler = scaler                    # a GradScaler: activation gradients unscaled
        self._grad_scale: torch.Tensor | None = None   # its scale during this step's backward
        self.calls = StepCalls(self)
        self._fwd_handles: list = []            # forward hooks: on measured steps only

        leaves = [(n, m) for n, m in module.named_modules() if not any(True for _ in m.children())]
        table = user_table(activations)
        found = {}
        for i, (_, m) in enumerate(leaves):
            try:
                found[i] = recognise(m, table)
            except Exception as exc:     # a module traintop cannot look at: not measured
                self._fault(f"recognising {type(m).__name__}", exc, write=False)
        self.layers = [(i, m, found[i][0]) for i, (_, m) in enumerate(leaves) if found.get(i)]
        self._dead_below = {i: found[i][1] for i, _, _ in self.layers}
        self.layer_names = {i: leaves[i][0] for i, _, _ in self.layers}
        self._recurrent = {i for i, m, _ in self.layers if isinstance(m, nn.RNNBase)}
        # An LSTM's or GRU's gates, recomputed from its input and weights on measured
        # steps: pseudo-layers after the leaves, named "rnn.l0.input_gate" etc.
        self._gates: dict[int, list[tuple[int, str]]] = {}   # the RNN's layer -> its gates'
        self._kinds = {i: type(m).__name__ for i, (_, m) in enumerate(leaves)}
        for i, m, _ in list(self.layers):
            if i in self._recurrent and _gate_names(m):
                for k in range(m.num_layers):
                    for gate, fam in _gate_names(m):
                        g = len(leaves) + sum(len(v) for v in self._gates.values())
                        self._gates.setdefault(i, []).append((g, fam))
                        self.layers.append((g, m, fam))
                        self.layer_names[g] = f"{leaves[i][0]}.l{k}.{gate}"
                        self._kinds[g] = type(m).__name__
        named = list(module.named_parameters())
        self.device = named[0][1].device if named else torch.device("cpu")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.module = module
        # The gradients checked before every update where that costs no device
        # sync (parameters on the CPU) and on every measured step: a small one
        # late in the model (a non-finite loss has made it non-finite) and one
        # early (a non-finite input makes the first layer's gradient NaN even
        # where a saturated tanh keeps the loss finite).
        small = [p for p in self.params if p.requires_grad and p.numel() <= CANARY_MAX]
        if not small:
            small = sorted((p for p in self.params if p.requires_grad), key=torch.numel)[:1]
        self._canaries = list({id(p): p for p in (small[-1:] + small[:1])}.values())
        # Every step too (check_every_step): ~8 us a step on a CPU, a sync on a GPU;
        # else on measured steps, and a non-finite loss is seen when it is read.
        self._canary_always = bool(check_every_step)
        # CPU losses are read at each w.step (no sync to spare: a float costs less
        # than a tensor kept); ranks that reduce read them together.
        self._host = self.device.type == "cpu" and not self.reduce
        self.weights = [(n, p) for n, p in named if p.ndim >= 2]
        # On the CPU the parameters' and weights' figures come from numpy over
        # their values end to end (snapshot._flat_*): a few calls, not a few per tensor.
        weights = [p for _, p in self.weights]
        self._flat = FlatLayout(self.params) if self._host and FlatLayout.fits(
            self.params) else None
        self._flat_weights = FlatLayout(weights) if self._host and FlatLayout.fits(
            weights) else None
        # The figures of CPU tensors computed together after the update (figures.StepBatch)
        self._batch = StepBatch() if self._host else None
        self._deferred: list[tuple] = []    # (record, layer, values, ...) measured at the end
        self._flat_places: tuple | None = None   # snapshot._places, made at the first snapshot
        self._weight_index = np.array([i for i, (_, p) in enumerate(named) if p.ndim >= 2],
                                      dtype=np.int64)
        self._weight_positions = torch.tensor(
            [i for i, (_, p) in enumerate(named) if p.ndim >= 2], dtype=torch.long,
            device=self.device)
        self.info = RunInfo(
            config={"model": type(module).__name__, "every": every,
                    "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                    "world_size": self.world, "reduce": self.reduce,
                    # Embedding weights only the batch's rows of which move (not tied
                    # to a dense layer): their grad:data is judged as sparse.
                    "sparse_params": _sparse_params(module),
                    # the clip threshold (the grad-norm rule: how often clipping cuts)
                    "max_grad_norm": None if max_grad_norm is None else float(max_grad_norm),
                    **({} if self.layers else {"no_activations": types_text(
                        type(m).__name__ for _, m in leaves if m is not module
                        or not leaves[1:])})},
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
                "layer_names": {str(i): self.layer_names[i] for i, _, _ in self.layers},
                **(meta or {})})
            self.recorder.consume(RunStarted(self.info))
            self._finalizer = weakref.finalize(self, self.recorder.close)
        if self.active:
            self._install()
            self.armed = True            # step 1 is always measured
            self._hook_forward()

    # ----- hooks -------------------------------------------------------------
    def _install(self) -> None:
        gates = {g for v in self._gates.values() for g, _ in v}
        # Made once, registered on measured steps only (_hook_forward): an unmeasured
        # forward runs with no hook of traintop's, so torch.compile sees the same
        # module as unwatched (no graph break, no recompile) and eager pays nothing.
        self._fwd_hooks = [(module, self._forward_hook(index, kind, module))
                           for index, module, kind in self.layers if index not in gates]
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._post_step))
        elif hasattr(torch.Tensor, "register_post_accumulate_grad_hook"):
            # No optimizer to hook: the checked gradients are read as the backward
            # leaves them, before the user's own update.
            for p in self._canaries:
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def _hook_forward(self) -> None:
        """The forward hooks on while the next step is measured, off otherwise.
        A compiled model's measured forward runs eagerly (the compiler's stance
        force_eager for that call): the compiled graph, made on an unmeasured
        step, never sees a hook (no graph break, no recompile)."""
        try:
            if self.armed and not self._fwd_handles:
                self._fwd_handles = [m.register_forward_hook(h) for m, h in self._fwd_hooks]
                if self._compiled is not None:
                    self._fwd_handles += [
                        self._compiled.register_forward_pre_hook(self._eager_begins),
                        self._compiled.register_forward_hook(self._eager_ends, always_call=True)]
            elif not self.armed and self._fwd_handles:
                for handle in self._fwd_handles:
                    handle.remove()
                self._fwd_handles = []
        except Exception as exc:
            self._fault("the forward hooks", exc)

    def _eager_begins(self, module, args) -> None:
        try:
            from torch._dynamo.eval_frame import DynamoStance, _set_stance
            self._stance = _set_stance(DynamoStance("force_eager"))
        except Exception as exc:
            self._fault("running the measured forward eagerly", exc)

    def _eager_ends(self, module, args, output) -> None:
        stance, self._stance = getattr(self, "_stance", None), None
        if stance is not None:
            try:
                from torch._dynamo.eval_frame import _set_stance
                _set_stance(stance)
            except Exception as exc:
                self._fault("running the measured forward eagerly", exc)

    def _grad_ready(self, param: torch.Tensor) -> None:
        try:
            if self._trace is None and self._canaries and (self.armed or self._canary_always) \
                    and self._canary_bad([param]):
                self._catch(self.steps + 1, "gradient", before_update=True)
        except Exception as exc:
            self._canaries = []
            self._fault("the check for non-finite gradients", exc)

    def _forward_hook(self, index: int, kind: str, layer: nn.Module):
        below = self._dead_below.get(index) if kind == "gelu" else None
        recurrent = index in self._recurrent

        def hook(module, inputs, output):
            if not self.armed or not torch.is_grad_enabled():
                return
            calls = self._acts.get(index)
            if calls is not None and len(calls) >= MAX_CALLS:
                return
            if recurrent and index in self._gates:
                self._measure_gates(index, layer, inputs)
            try:
                if recurrent:
                    output = _rnn_output(output)
                if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                    return
                t = _units(output.detach().float())                 # (observations, units)
                x = inputs[0] if below is not None and inputs \
                    and isinstance(inputs[0], torch.Tensor) \
                    and inputs[0].shape == output.shape else None
                x = _units(x.detach()) if x is not None else None
                if t.shape[0] == 0:
                    return
                if self._defers(t):
                    # measured after the update, with the step's other figures (_measure_deferred)
                    record = {"units": t.shape[1]}
                    self._deferred.append((
                        record, index, t.clone(memory_format=torch.contiguous_format),
                        None if x is None else x.clone(), kind, below))
                else:
                    record = _act_record(t, x, kind, below, self._batch)
                    record["units"] = t.shape[1]
                self._acts.setdefault(index, []).append(record)
                if output.requires_grad:
                    output.register_hook(self._grad_hook(index))
            except Exception as exc:
                self._acts.pop(index, None)
                self._fault(f"activation statistics of {self._layer_label(index)}", exc)
        return hook

    def _grad_hook(self, index: int):
        def hook(grad):
            if self.armed and len(self._grads.get(index, ())) < MAX_CALLS:
                try:
                    if self.scaler is not None and self._grad_scale is None:
                        self._grad_scale = _scale_of(self.scaler, grad.device)
                    # Separate passes: std_mean's mean loses digits on a mean near zero.
                    g = grad.detach().float()
                    if self._defers(g):
                        record: dict = {}
                        self._deferred.append((record, ~index, g.clone(
                            memory_format=torch.contiguous_format), None, None, None))
                    else:
                        record = _grad_record(g, self._batch)
                    self._grads.setdefault(index, []).append(record)
                except Exception as exc:
                    self._grads.pop(index, None)
                    self._fault(f"gradient statistics of {self._layer_label(index)}", exc)
        return hook

    def _defers(self, t: torch.Tensor) -> bool:
        """Whether `t`'s figures wait for the step's end (a copy kept till then):
        a small CPU tensor's. Between the forward, the backward and the update,
        the training's own code pushes the statistics' out of the CPU's caches:
        measured in one go after the update, they cost a good part less."""
        return self._batch is not None and t.dtype == torch.float32 \
            and t.device.type == "cpu" and 0 < t.numel() <= HIST_SAMPLE

    def _measure_deferred(self) -> None:
        """The figures of the activations and gradients kept by the hooks (index
        ~layer: a gradient's), into the records the hooks left for them."""
        deferred, self._deferred = self._deferred, []
        for record, index, t, x, kind, below in deferred:
            layer = index if index >= 0 else ~index
            try:
                record.update(_act_record(t, x, kind, below, self._batch, owned=True)
                              if index >= 0 else _grad_record(t, self._batch, owned=True))
            except Exception as exc:
                if index >= 0:
                    self._acts.pop(layer, None)
                    self._fault(f"activation statistics of {self._layer_label(layer)}", exc)
                else:
                    self._grads.pop(layer, None)
                    self._fault(f"gradient statistics of {self._layer_label(layer)}", exc)

    def _layer_label(self, index: int) -> str:
        return f"{self.layer_names.get(index) or '(model)'} ({self._kinds.get(index, '?')})"

    def _measure_gates(self, index: int, rnn: nn.Module, inputs) -> None:
        """The gates of each layer of an LSTM/GRU on this call (no gradient)."""
        gates = self._gates[index]
        if len(self._acts.get(gates[0][0], ())) >= MAX_CALLS:
            return
        try:
            values = _gate_values(rnn, inputs)
        except Exception as exc:
            for g, _ in gates:
                self._acts.pop(g, None)
            self._fault(f"gate statistics of {self._layer_label(index)}", exc)
            return
        if values is None:
            return
        for (g, fam), v in zip(gates, values):
            try:
                t = v.reshape(-1, v.shape[-1]).float()
                record = _act_record(t, None, fam, None, self._batch)
                record["units"] = t.shape[1]
                self._acts.setdefault(g, []).append(record)
            except Exception as exc:
                self._acts.pop(g, None)
                self._fault(f"gate statistics of {self._layer_label(g)}", exc)

    def _pre_step(self, optimizer, args, kwargs) -> None:
        calls = self.calls
        calls.started += 1                  # calls.optimizer_begins(), inline: every step
        calls.inside = True
        if not (self.armed or self._canary_always):
            return
        try:
            # Before the update spreads a non-finite gradient into every parameter:
            # where a look costs no device sync, or on a measured step (it syncs anyway).
            if self._trace is None and (self.armed or self._canary_always) \
                    and self._canary_bad():
                self._catch(self.steps + 1, "gradient", before_update=True)
        except Exception as exc:
            self._canaries = []      # not again on every step
            self._fault("the check for non-finite gradients", exc)
        if self.armed:
            try:
                # Every trainable parameter, with a gradient yet or not: under
                # optimizer.step(closure) (Lightning) the backward runs after this hook.
                if self._flat is not None and self._flat.same(self.params):
                    self._before = (None, self._flat.flat(self.params))   # a copy
                else:
                    groups = self._groups("trainable", self.params)
                    self._before = (groups, groups.stack(self.params))   # the stacks are copies
            except Exception as exc:
                self._before = None
                self._fault("the parameters' copy before the update (update:data)", exc)

    def _canary_bad(self, params: list | None = None) -> bool:
        """Whether a checked gradient holds NaN or inf (a read: a sync on a
        device; numpy's sum on the CPU, half the cost of torch's call on so few
        values). A sum overflowing to inf only arms a trace that finds nothing."""
        total = 0.0
        for p in self._canaries if params is None else params:
            g = p.grad
            if g is None:
                continue
            if g.device.type == "cpu" and g.dtype in _NUMPY_SUMS and g.layout == torch.strided:
                total += float(np.add.reduce(g.detach().numpy(), axis=None))
            else:
                total += float(g.detach().sum())
        return not math.isfinite(total)

    def _groups(self, what: str, tensors: list) -> ShapeGroups:
        """ShapeGroups of the tensors that are there (a parameter without a
        gradient has none), cached: the set rarely changes between steps."""
        have = tuple(i for i, t in enumerate(tensors) if t is not None and (
            what != "params" or t.grad is not None) and (what != "trainable" or t.requires_grad))
        key = (what, have)
        if key not in self._shape_groups:
            self._shape_groups[key] = ShapeGroups([tensors[i] for i in have], list(have),
                                                  len(tensors))
        return self._shape_groups[key]

    def _post_step(self, optimizer, args, kwargs) -> None:
        calls = self.calls
        calls.inside = False
        if self.armed and self._deferred:
            self._measure_deferred()
        if self.armed and self._before is not None:
            try:
                self._updates = self._update_ratios(*self._before)
            except Exception as exc:
                self._updates = torch.full((len(self.params),), math.nan, device=self.device)
                self._fault("update:data ratios", exc)
            self._weights = self._weight_figures_or_nan()
            self._before, self._data_std = None, None
            self._count_histograms()     # the CPU's figures: all of them now (StepBatch)
            try:
                # A parameter with no gradient was not stepped: no ratio (NaN), not -inf.
                unused = [i for i, p in enumerate(self.params) if p.grad is None]
                if unused:
                    self._updates[unused] = math.nan
            except Exception as exc:
                self._fault("update:data ratios", exc)
        if calls.closure:
            calls.closure_steps_end()   # w.step called inside this optimizer step: recorded now

    # ----- stepping ------------------------------------------------------------
    def step(self, loss=None, grad_norm=None) -> None:
        """Call once after each optimizer.step() (after scaler.step() under a
        GradScaler), with the step's loss (tensor or float) and, where known, the
        total gradient norm before clipping (grad_norm: what
        torch.nn.utils.clip_grad_norm_ returns, tensor or float).

        Called otherwise, the steps recorded stay the optimizer's, with a
        "misuse" event: a call inside optimizer.step (from its closure, as a
        Lightning training_step runs) is recorded when that step ends; calls
        with no optimizer step since the last one (a call per micro-batch under
        gradient accumulation) are folded into the next step, its loss their
        mean. A call with no optimizer step and non-finite (or no) gradients is
        a step the GradScaler skipped: recorded, with a "skipped" event, and no
        update ratios (none happened).
        Never raises: a failure of traintop's own is logged and recorded, the run goes on."""
        if not self.active:
            self.steps += 1
            return
        calls = self.calls
        if calls.started == calls.seen + 1 and not calls.inside and not calls.micro:
            calls.seen = calls.started       # the usual call: one optimizer step since the last
            self._record(loss, grad_norm)
            return
        try:
            call = calls.sort(loss, grad_norm)
        except Exception as exc:
            self._fault("matching w.step to the optimizer's steps", exc)
            call = (loss, grad_norm, False)
        if call is not None:
            self._record(*call)

    def _record(self, loss, grad_norm, skipped: bool = False) -> None:
        """One step recorded: its loss, gradient norm and, when armed, its figures."""
        self.steps += 1
        self._in_step = True
        try:
            self._step(self.steps, loss, grad_norm, skipped)
        except Exception as exc:
            if len(self._pending) > 4 * PENDING_STEPS:   # kept for the next try, not forever
                self._pending = []
            self._fault("recording the step", exc)
        finally:
            # A skipped step's figures are the scaler's inf gradients: the next is measured.
            if self.armed or (self.steps + 1) % self.every == 0:
                if not (skipped and self.armed):
                    self.armed = (self.steps + 1) % self.every == 0
                self._acts, self._grads, self._grad_scale = {}, {}, None
                if self._batch is not None:
                    # a step measured but not snapshotted: its figures go
                    self._batch.jobs, self._batch.after = [], []
                    self._deferred = []
                self._hook_forward()
        if self._events:
            try:
                self._write_events()
            except Exception as exc:
                self._fault("writing traintop's events", exc, write=False)
        self._in_step = False

    def _step(self, step: int, loss, grad_norm=None, skipped: bool = False) -> None:
        try:
            lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None \
                else math.nan
            lr = lr if type(lr) is float else float(lr)
        except Exception:
            lr = math.nan
        value = self._scalar(loss)
        norm = math.nan if grad_norm is None else self._scalar(grad_norm)
        self._pending.append((step, value, lr, norm))
        if skipped:
            self._events.append(Event("skipped", step, (
                f"step {step:,}: the optimizer did not step (non-finite or no gradients: a "
                "GradScaler skips such a step and lowers its scale); no update"),
                {"reason": "no optimizer step", "scaler": self.scaler is not None}))
        tr = self._trace
        if tr is not None and tr.phase == "live" and step >= tr.trace_step and (
                tr.first or tr.args is not None):
            # The model's own hooks never ran (its forward called directly): what its
            # modules showed is the trace.
            self._finish_trace(step=tr.trace_step)
        if not isinstance(value, torch.Tensor) and loss is not None \
                and not math.isfinite(value) and self._trace is None:
            self._catch(step, "loss", before_update=False)   # on the host already
        now = time.monotonic()
        if self.armed and not skipped:
            self._flush_losses(snapshot=True)
        elif len(self._pending) >= PENDING_STEPS or (
                not self.reduce and now - self._pending_since >= PENDING_SECONDS):
            self._flush_losses(snapshot=False)
        if self.recorder is not None and now - self._status_at >= WATCH_STATUS_SECONDS:
            rate = (step - self._status_steps) / (now - self._status_at)
            self._status_at, self._status_steps = now, step
            self.recorder.consume(Status(step, lr, True, False, rate))

    def _scalar(self, x):
        """A loss or norm as pending: on the CPU a float at once (reading it costs
        less than keeping a tensor, and a NaN loss is seen at its step); on a
        device a tensor, read with the others (no host sync per step)."""
        if type(x) is float:
            return x
        if self._host and isinstance(x, torch.Tensor) and x.is_cpu:
            try:
                return x.item() if x.numel() == 1 else float(x.detach().float().mean())
            except Exception:
                return math.nan
        return _scalar(x)

    def _flush_losses(self, snapshot: bool) -> None:
        """Losses of the pending steps to the host in one transfer (reduced
        across ranks on request), then written, the last with its snapshot."""
        n = len(self._pending)
        vals = [v for _, v, _, _ in self._pending] + [g for _, _, _, g in self._pending]
        try:
            if all(isinstance(v, torch.Tensor) for v in vals):
                losses = torch.stack([v.to(self.device, torch.float32) for v in vals])
            elif any(isinstance(v, torch.Tensor) for v in vals):
                # floats and tensors: the floats join the tensors on their device
                losses = torch.stack([v.to(self.device, torch.float32)
                                      if isinstance(v, torch.Tensor)
                                      else torch.tensor(v, device=self.device) for v in vals])
            elif not self.reduce:
                losses = None         # floats already (the CPU's): nothing to move
            else:
                losses = torch.tensor(vals, dtype=torch.float64)
            if self.reduce:
                losses = self._all_mean(losses.float().to(self.device))
            # losses and gradient norms: one transfer
            values = vals if losses is None else losses.tolist()
        except Exception as exc:     # one by one: a loss traintop cannot read is NaN
            self._fault("reading the losses", exc)
            values = [_float(v) for v in vals]
        results = [StepResult(s, loss, lr, (), grad_norm=g) for (s, _, lr, _), loss, g
                   in zip(self._pending, values[:n], values[n:])]
        if self._trace is None:
            bad = next((r.step for r in results if not math.isfinite(r.loss)), None)
            if bad is not None:
                self._catch(bad, "loss", before_update=False)
        if snapshot:
            last = results[-1]
            try:
                snap = self._snapshot(last.step, last.loss, last.lr)
                results[-1] = StepResult(last.step, last.loss, last.lr, snap.update_ratio_log10,
                                         snap, grad_norm=last.grad_norm)
            except Exception as exc:   # the step is written all the same, without figures
                self._updates = self._weights = None
                self._fault("the step's statistics (snapshot)", exc)
        self._pending = []
        self._pending_since = time.monotonic()
        if self.recorder is not None:
            self.recorder.consume(Steps(tuple(results)))

    def _all_mean(self, t: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t / self.world

    # ----- never break the run ------------------------------------------------------
    def _fault(self, what: str, exc: BaseException, write: bool = True) -> None:
        """A failure of traintop's own: one log line and one monitor-error event
        per statistic and kind of error; the run goes on without that figure."""
        try:
            key = (what, type(exc).__name__)
            if key in self._faults_seen:
                return
            self._faults_seen.add(key)
            error = f"{type(exc).__name__}: {exc}"
            step = self.steps if self._in_step else self.steps + 1   # hooks: the step under way
            log.warning("traintop: %s failed at step %d (%s); the run goes on without it",
                        what, step, error, exc_info=log.isEnabledFor(logging.DEBUG))
            if write:
                self._events.append(Event(
                    "monitor-error", step, f"traintop: {what} failed: {error}",
                    {"where": what, "error": error}))
        except Exception:   # not even a log line may break the run
            pass

    def _write_events(self) -> None:
        """Events of the hooks, after the steps they belong to."""
        if not self._events:
            return
        if self.recorder is None:
            self._events = []
            return
        self._flush_pending()
        events, self._events = self._events, []
        for e in events:
            self.recorder.consume(e)

    # ----- the rest --------------------------------------------------------------
    def event(self, kind: str, text: str, data: dict | None = None) -> None:
        """Mark an intervention (lr change, evaluation, checkpoint) at the current step."""
        if self.recorder is not None:
            try:
                self._flush_pending()
                self.recorder.consume(Event(kind, self.steps, text, dict(data or {})))
            except Exception as exc:
                self._fault(f"writing the {kind!r} event", exc, write=False)

    def _flush_pending(self) -> None:
        if self._pending and not self.reduce:
            self._flush_losses(snapshot=False)

    def flush(self) -> None:
        """Make everything so far visible to readers (e.g. before a long evaluation)."""
        try:
            self._flush_pending()
            if self.recorder is not None:
                self.recorder.flush()
        except Exception as exc:
            self._fault("flushing the recording", exc, write=False)

    def close(self) -> None:
        """Write what is pending, end the recording and remove every hook."""
        try:
            if self.calls.micro:     # calls not followed by an optimizer step: the last step
                micro, self.calls.micro = self.calls.micro, []
                self._record(*_folded(micro), False)
        except Exception as exc:
            self._fault("recording the last calls", exc, write=False)
        try:
            if self._trace is not None and self._trace.phase == "live":
                self._finish_trace(traced=False)    # no forward came after it
            if self._pending:
                self._flush_losses(snapshot=False)
            self._write_events()
        except Exception as exc:
            self._fault("writing the last steps", exc, write=False)
        # The final rate is the whole run's: the last interval may hold no steps.
        rate = self.steps / max(time.monotonic() - self._started, 1e-9)
        for handle in self._handles + self._fwd_handles:
            handle.remove()
        self._handles, self._fwd_handles = [], []
        if self.recorder is not None:
            try:
                lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else math.nan
                self.recorder.close(Status(self.steps, lr, False, True, rate))
            except Exception as exc:
                self._fault("closing the recording", exc, write=False)
            self._finalizer.detach()
            self.recorder = None

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def watch(model: nn.Module, path: str | Path, optimizer=None, every: int = 10,
          reduce: bool = False, writer_rank: int | None = 0, meta: dict | None = None,
          expected_initial_loss: float = math.nan, activations: dict | None = None,
          max_grad_norm: float | None = None, scaler=None,
          check_every_step: bool = False) -> Watcher:
    """Record the diagnostics of `model`'s training to `path` (.jsonl or .jsonl.gz).

    optimizer: its step hooks give the update:data ratios (None: no ratios).
    every: full diagnostics every `every` steps (and on step 1).
    reduce: under torch.distributed, average the figures across ranks first.
    writer_rank: the rank that writes (None: every rank, "{rank}" in `path`).
    activations: your own activation classes, {class or class name: family}, the
    family one of "tanh", "sigmoid", "relu", "gelu" (None: never measure that class);
    others are recognised by traintop.engine.activations.
    max_grad_norm: the clip threshold you pass to clip_grad_norm_: with the norms
    given to w.step(loss, grad_norm=...), the grad-norm finding says when
    clipping cuts most steps (None: not judged).
    scaler: your torch.amp.GradScaler: the activation gradients, taken in the
    backward of the scaled loss, are recorded divided by its scale (the
    weights' gradients are read after it unscaled them).
    check_every_step: look for non-finite gradients before every update, not
    only on measured steps (two small gradients read: ~8 us a step on a CPU, a
    host sync on a GPU), so the parameters a NaN first reached are named
    before the update spreads it. Off: a non-finite loss is seen at its step
    on a CPU (where reading it costs nothing), at the next read on a GPU.
    """
    return Watcher(model, path, optimizer, every, reduce, writer_rank, meta,
                   expected_initial_loss, activations, max_grad_norm, scaler, check_every_step)
