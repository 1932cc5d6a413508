"""The batched step (traintop.engine.steps.batched) as one torch.compile'd graph.

Like traintop.engine.steps.compiled for one run: the forward, backward,
update (skipped per run whose loss is not finite) and update:data moments of
every run are one compiled call, whose only host read is a (R, 2) head of
losses and NaN flags. Steps with full diagnostics (every stats_every) run the
batched step eagerly, which computes the same figures. Compiling costs tens
of seconds on first use (inductor's disk cache keeps it); where it fails the
step falls back to the eager batched step for good (`compiled` False,
`error` says why).

With a twin (the "auto" engine) the graph compiles in the background while
steps run eagerly: on the CPU in a process of its own, at idle priority,
into an AOTInductor package the step loads once it is written
(traintop.engine.steps.handover, as for one run); elsewhere (or with
TRAINTOP_AUTO_COMPILE=thread) on a thread, on the twin BatchedStep of the
same shapes, so the runs' own tensors are never touched by the compiling call.
"""

from __future__ import annotations

import functools

import torch

from .batched import BatchedStep
from .batched_graph import Plan, make_plan, plain_step
from . import handover
from .compiled import BackgroundCompile, require_compiler


_compiled: dict[Plan, object] = {}


def _get_compiled(plan: Plan):
    """One compiled function per plan (shapes and offsets): a restart or a new
    group of the same shapes reuses it; its arguments are tensors only, so a
    call checks few guards."""
    if plan not in _compiled:
        require_compiler()
        _compiled[plan] = torch.compile(functools.partial(plain_step, plan), fullgraph=True,
                                        dynamic=False, options={"cpp_wrapper": True})
    return _compiled[plan]


def _running(step: BatchedStep) -> list[torch.Tensor]:
    return [buf for b in step.blocks if b.bn is not None
            for buf in (b.running_mean, b.running_var)]


class BatchedCompiled(BackgroundCompile):
    """Steps a BatchedStep through the compiled graph once it is ready."""

    EAGER = "the batched step"

    def __init__(self, step: BatchedStep, twin: tuple | None = None):
        """`twin`: (a BatchedStep of the same shapes, Xb, Yb) to compile on, in
        the background; without it the first plain step compiles (and waits)."""
        plan = make_plan(step)
        how = handover.mode(step.device) if twin is not None else None
        build = None
        if how == "process":
            build = handover.request(plan, step.batch, plan.blocks[0].fan_in // plan.n_embd,
                                     step.flat.dtype, torch.get_num_threads())
            twin = None
        super().__init__(twin, build)
        self.step_engine = step
        self._lr = torch.zeros((step.R, 1), dtype=torch.float64, device=step.device)
        self._plan = plan
        self._packaged = build is not None
        if how == "off":    # TRAINTOP_AUTO_COMPILE=off: the eager batched step throughout
            self.cancel()
            self._fell_back(f"{handover.MODE_ENV}=off")
        self._start_compiling()   # at once: the eager batched step is the sweep's meanwhile

    def _compile_on(self, twin: BatchedStep, Xb: torch.Tensor, Yb: torch.Tensor) -> None:
        try:
            if not self._cancelled:
                lr = torch.zeros((twin.R, 1), dtype=torch.float64, device=twin.device)
                with torch.no_grad():
                    _get_compiled(make_plan(twin))(twin.flat, twin.flat_grad, _running(twin),
                                                   Xb, Yb, lr)
        except Exception as exc:  # noqa: BLE001 - any compile failure means eager
            self._fell_back(exc)
        finally:
            self._ready.set()

    def usable(self) -> bool:
        """Whether the next plain step runs compiled."""
        return self.compiled is not False and self.ready

    def step(self, Xb: torch.Tensor, Yb: torch.Tensor, lrs: list[float]):
        """(losses, nan flags, moments, ratios) of a plain step through the
        graph, or None where compiling failed just now (the caller steps eagerly)."""
        engine = self.step_engine
        engine.bind_running()
        self._lr.copy_(torch.tensor(lrs, dtype=torch.float64).view(-1, 1))
        graph = self.graph
        if graph is None:
            if self._packaged:   # cancelled before its package came: eager
                return None
            graph = _get_compiled(self._plan)
        try:
            head, moments, ratios = graph(engine.flat, engine.flat_grad, _running(engine),
                                          Xb.contiguous(), Yb.contiguous(), self._lr)
        except Exception as exc:  # noqa: BLE001 - any compile failure means eager
            if self.compiled:      # it ran before: a real error
                raise
            self._fell_back(exc)
            self.graph = None
            return None
        self.compiled = True
        rows = head.tolist()
        return [r[0] for r in rows], [r[1] != 0 for r in rows], moments, ratios
