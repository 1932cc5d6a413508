"""The compiled engine: the fast engine's step (forward, backward, update,
update:data moments) as torch.compile'd graphs, one for plain steps and one
for steps with full diagnostics.

The fast engine is bound by per-operation dispatch (~100 aten calls a step,
several microseconds each); inductor fuses the elementwise work into a few C++
loops and runs the whole step as one call (traintop bench, 2 cores, 1 thread:
0.30-0.36 ms/step against the fast engine's 0.51-0.54 and a plain torch.nn
loop's 0.60-0.71; with full stats every step 0.54-0.58 ms). The stats graph
computes its figures with traintop.engine.steps.graph_stats, written for inductor.
Compiling both graphs costs ~30 s on first use (inductor caches the result on
disk, so later processes take ~5 s). Where compilation is unavailable (no C++
compiler, an unsupported device or torch), the first step falls back to the
fast engine's eager functions, which compute the same figures;
`CompiledStep.compiled` says which ran.

The "auto" engine (the default of the app and `traintop run`) compiles
without slowing the run down (traintop.engine.steps.handover): on the CPU a
process of its own, at idle priority, compiles the plain step
(batched_graph.plain_step for a batch of one run) with AOTInductor into a
package file, and the step after it is written loads it (milliseconds) and
runs plain steps through it; steps with full diagnostics (every
stats_every) run the fast engine's eager functions. Elsewhere (with
`twin`, or TRAINTOP_AUTO_COMPILE=thread) the graphs compile on a thread of
the trainer's own, on the twin: a throwaway FastStep of the same shapes, so
the run's own parameters are never touched by the compiling call. Until the
compiled step is ready every step runs the fast engine's eager functions;
the step after it is ready runs compiled. They compute the same figures (to
~1e-6), so the switch makes no jump.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from types import SimpleNamespace

import torch

from . import graph_stats, handover
from .batched_graph import make_plan
from .fast import FastStep

log = logging.getLogger(__name__)
COMPILE_THREAD = "traintop-compile"


def compiling() -> bool:
    """Whether a background compile (the "auto" engine) is still under way."""
    return any(t.name == COMPILE_THREAD and t.is_alive() for t in threading.enumerate())


def exit_now_if_compiling(code: int) -> None:
    """End the process at once while a background compile is under way.

    The interpreter's normal exit tears torch's C++ state down under the
    compiling thread and aborts ("terminate called without an active
    exception", status 134, seen when a 20,000-step run ended mid-compile).
    What was written is flushed and the process leaves with `code`; with no
    compile under way this returns and the process exits as usual."""
    handover.kill_all()   # a compile process never outlives its trainer
    if compiling():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _core(fast: FastStep, Xb: torch.Tensor, Yb: torch.Tensor, lr: torch.Tensor):
    """One step without diagnostics: nothing but the loss, the update:data
    figures and the in-place parameters, gradients and running buffers comes
    out of the graph, so inductor keeps every intermediate in its own buffers.
    The update is skipped when the loss is not finite, so a diverged step
    leaves the parameters as they were (as the eager engines do)."""
    loss, saved, loss_parts = fast.forward_parts(Xb, Yb, False)
    fast.backward_parts(saved, loss_parts)
    return _update(fast, loss, lr)


def _stats_core(fast: FastStep, Xb: torch.Tensor, Yb: torch.Tensor, lr: torch.Tensor):
    """One step with full diagnostics: also the measured layers' outputs and
    their gradients (which the snapshot hands to the viewer, as retain_grad
    would) and the snapshot's figures (graph_stats.snapshot_values). Nothing
    is set on the layers inside the graph: each attribute set there is
    replayed in Python after every call."""
    loss, saved, loss_parts = fast.forward_parts(Xb, Yb, False)
    out_grads = fast.backward_parts(saved, loss_parts)
    head, moments, ratios = _update(fast, loss, lr)
    outs = [t for (_, _, _, t) in saved[1:fast.n_layers + 1]]
    values = graph_stats.snapshot_values(fast, ratios, moments, outs, out_grads)
    return head, moments, ratios, (values, outs, out_grads)


def _update(fast: FastStep, loss: torch.Tensor, lr: torch.Tensor):
    """SGD on the flat parameters unless the loss is not finite; returns
    ([loss, 1 if any update:data ratio is NaN], moments, ratios): the first
    is all the caller must read on the host every step, in one transfer."""
    new = torch.where(torch.isfinite(loss), fast.flat - lr * fast.flat_grad, fast.flat)
    fast.flat.copy_(new)
    moments = graph_stats.moments(fast, new)
    ratios = (moments[1] * lr / moments[2]).log10()
    head = torch.stack([loss.double(), torch.isnan(ratios).any().double()])
    return head, moments, ratios


def _eager(fast: FastStep, Xb: torch.Tensor, Yb: torch.Tensor, lr: float):
    """The fast engine's own step, op for op (so a fallback run is the fast engine's)."""
    loss = fast.forward(Xb, Yb)
    fast.backward()
    if torch.isfinite(loss):
        fast.update(lr)
    moments = fast.moments()
    ratios = FastStep.update_ratios(moments, lr)
    return (loss.item(), bool(torch.isnan(ratios).any())), moments, ratios


# One compiled function for every trainer: the graph depends on the stack's
# shapes and structure, not on which trainer holds it, so a restart with the
# same shapes reuses it (dynamo guards on shapes and constants, not identity).
_compiled: dict[bool, object] = {}


def require_compiler() -> None:
    """Raise at once where inductor has no C++ compiler to call (a slim image,
    CXX pointing nowhere): found only at the end of tracing and lowering, the
    failure came ~10 s into a compile that could never work, on every run."""
    from torch._inductor.cpp_builder import get_cpp_compiler
    get_cpp_compiler()          # runs `c++ --version`; InvalidCxxCompiler where none


def _get_compiled(stats: bool):
    if stats not in _compiled:
        require_compiler()
        # cpp_wrapper: the graph's launcher is C++ too, ~70 us a step less
        # Python than inductor's default Python wrapper at the lecture's size
        _compiled[stats] = torch.compile(_stats_core if stats else _core, fullgraph=True,
                                         dynamic=False, options={"cpp_wrapper": True})
    return _compiled[stats]


class BackgroundCompile:
    """What a compiled step shares: compiling on a thread from a twin of the
    run's shapes (never the run's own tensors), `ready` once that is over,
    and falling back to the eager step for good where compiling fails."""

    EAGER = "the fast engine"   # what runs where compiling fails, for the log line

    def __init__(self, pending: tuple | None = None, build: handover.Build | None = None):
        """`pending`: the arguments of `_compile_on` (a twin and its batch) for
        a background compile, started by `_start_compiling`; `build`: a
        package compiled by a process of its own (handover.request), loaded
        into `graph` once it is written; neither: the first step compiles
        (and waits for it)."""
        self.compiled: bool | None = None   # None: not tried yet; False: fell back
        self.error: str | None = None       # why compilation fell back
        self._ready: threading.Event | None = \
            threading.Event() if (pending or build is not None) else None
        self._cancelled = False
        self._pending = pending   # until the compile thread starts
        self._build = build
        self._next_poll = 0.0
        self.graph = None         # the loaded package's step (a build's)

    def _compile_on(self, *args) -> None:
        raise NotImplementedError

    def _start_compiling(self) -> None:
        """CompiledStep starts the thread once the first step is out (it takes
        the GIL for seconds at a time, which would hold the first step on
        screen back)."""
        if self._pending is not None:
            args, self._pending = self._pending, None
            # daemon: a short run may end before the compile does
            threading.Thread(target=self._compile_on, args=args, daemon=True,
                             name=COMPILE_THREAD).start()

    @property
    def ready(self) -> bool:
        """Whether steps run the compiled graphs (or, after a failure, never will)."""
        if self._ready is None or self._ready.is_set():
            return True
        if self._build is not None:
            self._poll_build()
        return self._ready.is_set()

    def _poll_build(self, force: bool = False) -> None:
        """Load the build's package once it is written (a few milliseconds);
        looks at the process at most every handover.POLL_SECONDS."""
        now = time.monotonic()
        if not force and now < self._next_poll:
            return
        self._next_poll = now + handover.POLL_SECONDS
        build = self._build
        if build is None or not build.finished():
            return
        self._build = None
        handover.release(build)
        try:
            if build.error is not None:   # the compile process's own words
                self._fell_back(build.error)
            else:
                self.graph = build.load()
        except Exception as exc:  # noqa: BLE001 - any compile failure means eager
            self._fell_back(exc)
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background compile is over (tests, the bench)."""
        self._start_compiling()
        if self._build is not None:
            self._build.wait(timeout)
            self._poll_build(force=True)
            return self._ready.is_set()
        return self._ready is None or self._ready.wait(timeout)

    def cancel(self) -> None:
        """The run restarted: a graph not begun yet is not compiled; a build
        goes on (a restart of the same shapes asks for it again) until a
        compile of other shapes starts."""
        self._cancelled = True
        if self._pending is not None:    # never started: nothing will set it
            self._pending = None
            self._ready.set()
        if self._build is not None:
            build, self._build = self._build, None
            handover.release(build)
            self._ready.set()

    def _fell_back(self, exc: Exception | str) -> None:
        self.compiled = False
        if isinstance(exc, str):
            self.error = exc
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.error = f"{type(exc).__name__}: {first}"
        log.info("torch.compile unavailable, running %s eagerly: %s", self.EAGER, self.error)


class CompiledStep(BackgroundCompile):
    """Runs FastStep's step as one compiled call (two graphs: with and without
    diagnostics); the snapshot is finished by the wrapped FastStep."""

    def __init__(self, fast: FastStep, twin: FastStep | None = None,
                 batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 package: bool = False):
        """Without `twin`, the first step compiles (and waits for it); with a
        twin and a `batch` of its shapes, a thread compiles from the end of
        the first step on, and steps run eagerly until it is done (`ready`).
        `package`: a process compiles the plain step instead (handover)."""
        build = None
        if package:
            plan = single_plan(fast)
            build = handover.request(plan, fast.batch, plan.blocks[0].fan_in // plan.n_embd,
                                     fast.flat.dtype, torch.get_num_threads())
        super().__init__((twin, *batch) if twin is not None else None, build)
        self.fast = fast
        self._flat2 = (fast.flat.view(1, -1), fast.flat_grad.view(1, -1))
        self._lr2 = self._lr_row() if package else None
        self._ran: set[bool] = set()        # graphs (stats or not) that have run
        # float64 like the moments, which the ratio divides (the update casts it)
        self._lr = torch.zeros((), dtype=torch.float64, device=fast.device)

    def _compile_on(self, twin: FastStep, Xb: torch.Tensor, Yb: torch.Tensor) -> None:
        lr = torch.zeros((), dtype=torch.float64, device=twin.device)
        try:
            with torch.no_grad():
                for stats in (False, True):
                    if self._cancelled:
                        return
                    _get_compiled(stats)(twin, Xb, Yb, lr)
            self._ran = {False, True}
        except Exception as exc:  # noqa: BLE001 - any compile failure means eager
            self._fell_back(exc)
        finally:
            self._ready.set()

    def step(self, Xb: torch.Tensor, Yb: torch.Tensor, lr: float, stats: bool):
        """((loss, any NaN ratio), moments, ratios, snapshot parts or None) of
        one step; the parameters are updated when the loss is finite. Snapshot
        parts come only from the compiled stats graph, which also leaves the
        measured layers' outputs and gradients where FastStep's snapshot reads
        them; after a fallback the caller builds the snapshot eagerly
        (FastStep.snapshot)."""
        if self.compiled is not False and self.ready and self.graph is not None:
            if not stats:
                return self._package_step(Xb, Yb, lr)
        elif self.compiled is not False and self.ready and self._lr2 is None:
            self._lr.fill_(lr)  # a tensor, so a new lr is no new graph
            try:
                head, moments, ratios, *parts = _get_compiled(stats)(self.fast, Xb, Yb,
                                                                     self._lr)
            except Exception as exc:  # noqa: BLE001 - any compile failure means eager
                if stats in self._ran:  # this graph ran before: a real error
                    raise
                self._fell_back(exc)
            else:
                self._ran.add(stats)
                self.compiled = True
                loss, nan = head.tolist()
                if not stats:
                    return (loss, nan != 0), moments, ratios, None
                values, outs, out_grads = parts[0]
                self.fast.keep_measured(outs, out_grads)
                return (loss, nan != 0), moments, ratios, values
        result = (*_eager(self.fast, Xb, Yb, lr), None)
        self._start_compiling()
        return result

    def _lr_row(self) -> torch.Tensor:
        return torch.zeros((1, 1), dtype=torch.float64, device=self.fast.device)

    def _package_step(self, Xb: torch.Tensor, Yb: torch.Tensor, lr: float):
        """A plain step through the package (batched_graph.plain_step, one run)."""
        fast = self.fast
        running = []
        for blk in fast.blocks:
            if blk.bn_pos is not None:
                layer = fast.stack.layers[blk.bn_pos]
                if layer.running_mean.dim() != 1 or layer.running_var.dim() != 1:
                    # updated in place: (dim,), as the fast engine makes them
                    layer.running_mean = layer.running_mean.reshape(-1).contiguous()
                    layer.running_var = layer.running_var.reshape(-1).contiguous()
                running += [layer.running_mean, layer.running_var]
        self._lr2.fill_(lr)
        flat, flat_grad = self._flat2
        try:
            # the package assumes the traced layout: contiguous, as the trainer's batches are
            head, moments, ratios = self.graph(flat, flat_grad, running,
                                               Xb.contiguous().view(1, *Xb.shape),
                                               Yb.contiguous().view(1, -1), self._lr2)
        except Exception as exc:  # noqa: BLE001 - any failure of a new package means eager
            if self.compiled:   # it ran before: a real error
                raise
            self._fell_back(exc)
            self.graph = None
            return (*_eager(fast, Xb, Yb, lr), None)
        self.compiled = True
        loss, nan = head[0].tolist()
        return (loss, nan != 0), tuple(m[0] for m in moments), ratios[0], None


def single_plan(fast: FastStep):
    """The batched_graph Plan of one run's FastStep (a batch of one run)."""
    stack = fast.stack
    blocks = [SimpleNamespace(momentum=stack.layers[blk.bn_pos].momentum
                              if blk.bn_pos is not None else 0.1) for blk in fast.blocks]
    return make_plan(SimpleNamespace(fasts=[fast], blocks=blocks, R=1, vocab=stack.C.shape[0],
                                     C=stack.C.view(1, *stack.C.shape),
                                     bn_scale=fast.bn_scale))
