"""The compiled engine: the fast engine's step (forward, backward, update,
update:data moments) as one torch.compile'd graph.

The fast engine is bound by per-operation dispatch (~100 aten calls a step,
several microseconds each); inductor fuses the elementwise work into a few C++
loops and runs the whole step as one call, roughly halving a step's time at
the lecture's size. Compiling costs tens of seconds on first use (inductor
caches the result on disk, so later processes compile faster). Where
compilation is unavailable (no C++ compiler, an unsupported device or torch),
the first step falls back to the fast engine's eager functions, which compute
the same figures; `CompiledStep.compiled` says which ran.
"""

from __future__ import annotations

import logging

import torch

from engine.fast_step import FastStep

log = logging.getLogger(__name__)


def _core(fast: FastStep, Xb: torch.Tensor, Yb: torch.Tensor, lr: torch.Tensor):
    """One step without diagnostics: nothing but the loss, the update:data
    figures and the in-place parameters, gradients and running buffers comes
    out of the graph, so inductor keeps every intermediate in its own buffers.
    The update is skipped when the loss is not finite, so a diverged step
    leaves the parameters as they were (as the eager engines do)."""
    loss, saved, loss_parts = fast.forward_parts(Xb, Yb, False)
    fast.backward_parts(saved, loss_parts)
    ok = torch.isfinite(loss)
    fast.flat.copy_(torch.where(ok, fast.flat - lr * fast.flat_grad, fast.flat))
    moments = fast.moments()
    ratios = (moments[1] * lr / moments[2]).log10()
    return loss, moments, ratios


def _eager(fast: FastStep, Xb: torch.Tensor, Yb: torch.Tensor, lr: float):
    """The fast engine's own step, op for op (so a fallback run is the fast engine's)."""
    loss = fast.forward(Xb, Yb)
    fast.backward()
    if torch.isfinite(loss):
        fast.update(lr)
    moments = fast.moments()
    return loss, moments, FastStep.update_ratios(moments, lr)


# One compiled function for every trainer: the graph depends on the stack's
# shapes and structure, not on which trainer holds it, so a restart with the
# same shapes reuses it (dynamo guards on shapes and constants, not identity).
_compiled = None


def _get_compiled():
    global _compiled
    if _compiled is None:
        # cpp_wrapper: the graph's launcher is C++ too, ~70 us a step less
        # Python than inductor's default Python wrapper at the lecture's size
        _compiled = torch.compile(_core, fullgraph=True, dynamic=False,
                                  options={"cpp_wrapper": True})
    return _compiled


class CompiledStep:
    """Runs FastStep's step as one compiled call; snapshot() and everything
    else are the wrapped FastStep's."""

    def __init__(self, fast: FastStep):
        self.fast = fast
        self.compiled: bool | None = None   # None: not tried yet
        self.error: str | None = None       # why compilation fell back
        # float64 like the moments, which the ratio divides (the update casts it)
        self._lr = torch.zeros((), dtype=torch.float64, device=fast.device)

    def step(self, Xb: torch.Tensor, Yb: torch.Tensor, lr: float, stats: bool):
        """(loss, moments, ratios) of one step; parameters updated when the loss
        is finite. A step with diagnostics (stats) runs eagerly: the snapshot
        needs every layer's output and gradient, which the compiled graph does
        not keep, and it costs more than the step itself anyway."""
        if stats:
            return _eager(self.fast, Xb, Yb, lr)
        self._lr.fill_(lr)  # a tensor, so a new lr is no new graph
        if self.compiled is not False:
            try:
                out = _get_compiled()(self.fast, Xb, Yb, self._lr)
                self.compiled = True
                return out
            except Exception as exc:  # noqa: BLE001 - any compile failure means eager
                if self.compiled:     # it ran before: a real error, not a missing compiler
                    raise
                self.compiled = False
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.info("torch.compile unavailable, running the fast engine eagerly: %s",
                         self.error)
        return _eager(self.fast, Xb, Yb, lr)
