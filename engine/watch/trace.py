"""Where a non-finite value started: the trace armed when the loss, a gradient
or a figure first turns non-finite, and the Watcher's methods that run it
(a mixin: they share the watcher's state)."""

from __future__ import annotations

import logging
import math
import os

import torch
from torch import nn

from traintop.engine.feed.messages import Event
from traintop.engine.health.rules import module_label, nonfinite_text

log = logging.getLogger("traintop")


def _nonfinite(x) -> tuple[int, int]:
    """(non-finite values, values) over the floating tensors in x (a tensor, or
    tuples, lists and dicts of them, as modules return). Syncs: trace steps only."""
    bad = total = 0
    for t in _tensors(x):
        if t.is_floating_point() or t.is_complex():
            bad += int((~torch.isfinite(t.detach())).sum())
            total += t.numel()
    return bad, total


def _float(v) -> float:
    try:
        return float(v)
    except Exception:
        return math.nan


def _tensors(x, depth: int = 0):
    if isinstance(x, torch.Tensor):
        yield x
    elif depth < 4 and isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v, depth + 1)
    elif depth < 4 and isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v, depth + 1)


class _Trace:
    """Where a non-finite value started: armed when the loss, a gradient or a
    figure first turns non-finite, it looks at the next forward of the model
    (every module's output, in the order they finish) and at the parameters."""

    def __init__(self, step: int, seen: str, before: dict[str, int] | None,
                 saved: dict | None, total: int):
        self.step = step              # the first step known non-finite
        self.trace_step = step + 1      # the step whose forward is traced
        self.seen = seen              # "gradient", "loss" or "figures"
        self.before = before          # parameter -> non-finite values before its update
        self.saved = saved            # parameter -> its value before that update (a copy)
        self.total = total            # parameters in the model
        self.phase: str | None = None   # "live" (the user's forward), "rerun" or None
        self.first: dict[str, dict] = {}  # phase -> the first module with a non-finite output
        self.args = self.kwargs = None  # the traced forward's inputs, for the rerun
        self.reran = False
        self.handles: list = []
        self.traced_step: int | None = None
        self.now: dict[str, int] = {}   # parameter -> non-finite values after the forward
        self.counted_at = step          # `before` counts the parameters before this step's update


class NonFiniteTrace:
    """The Watcher's part that finds where a NaN or inf started."""

    def _catch(self, step: int, seen: str, before_update: bool) -> None:
        """The first non-finite value of the run: count the parameters' (before
        the update spreads a non-finite gradient into all of them, where that is
        still to come), keep a copy of them and trace the next forward."""
        before = saved = None
        counted_at = step
        # A loss not read yet may have gone non-finite earlier (no look between
        # snapshots): then the updates since have spread it, a rerun tells nothing.
        earlier = next((s for s, v, *_ in self._pending if s < step
                        and not math.isfinite(_float(v))), None) if before_update else None
        if before_update:
            try:
                before = self._param_counts()
            except Exception as exc:
                self._fault("counting non-finite parameters", exc)
            if earlier is None and self._room_for_a_copy():
                try:
                    saved = {n: p.detach().clone()
                             for n, p in zip(self.param_names, self.params)}
                except Exception as exc:    # out of memory: no rerun, the rest still works
                    self._fault("copying the parameters for the non-finite trace", exc)
            else:
                step, seen = earlier, "loss"
        self._trace = _Trace(step, seen, before, saved, len(self.params))
        self._trace.counted_at = counted_at
        try:
            self._arm_trace()
        except Exception as exc:
            self._fault("arming the non-finite trace", exc)
            self._finish_trace(traced=False)

    def _room_for_a_copy(self) -> bool:
        """Whether a copy of the parameters (held until the next forward is traced)
        leaves the user's run its memory: under a quarter of what is free."""
        try:
            need = sum(p.numel() * p.element_size() for p in self.params)
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
            elif self.device.type == "cpu":
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            else:
                return False
            return need * 4 <= free
        except Exception:
            return False

    def _param_counts(self) -> dict[str, int]:
        """Non-finite values per parameter that has any (one sync)."""
        with torch.no_grad():
            counts = torch.stack([(~torch.isfinite(p.detach())).sum().to(self.device)
                                  for p in self.params]).tolist() if self.params else []
        return {n: int(c) for n, c in zip(self.param_names, counts) if c}

    def _arm_trace(self) -> None:
        tr = self._trace
        tr.phase = "live"
        # The step whose forward is traced: the next one (armed in w.step or mid-step).
        tr.trace_step = self.steps + 1 if self._in_step else self.steps + 2
        tr.handles.append(self.module.register_forward_pre_hook(self._trace_inputs,
                                                                with_kwargs=True))
        for name, m in self.module.named_modules():
            tr.handles.append(m.register_forward_hook(self._trace_hook(name, m)))

    def _trace_inputs(self, module, args, kwargs):
        tr = self._trace
        if tr is not None and tr.phase == "live" and tr.args is None:
            tr.args, tr.kwargs = args, dict(kwargs)
        return None

    def _trace_hook(self, name: str, module: nn.Module):
        def hook(mod, inputs, output):
            tr = self._trace
            if tr is None or tr.phase is None:
                return
            try:
                if tr.phase not in tr.first:
                    bad, total = _nonfinite(output)
                    if bad:
                        tr.first[tr.phase] = {
                            "module": name, "kind": type(mod).__name__, "count": bad,
                            "numel": total, "input_count": _nonfinite(inputs)[0]}
                if mod is self.module and tr.phase == "live":
                    self._finish_trace()
            except Exception as exc:
                self._fault("the non-finite trace", exc)
                if mod is self.module and tr.phase == "live":
                    self._finish_trace()
        return hook

    def _finish_trace(self, traced: bool = True, step: int | None = None) -> None:
        """The traced forward is done (traced=False: none came): the parameters now,
        the same forward again with the parameters from before the update (where
        kept), the report."""
        tr = self._trace
        tr.phase = None
        tr.traced_step = (step or self.steps + 1) if traced else None
        try:
            tr.now = self._param_counts()
        except Exception as exc:
            self._fault("counting non-finite parameters", exc)
        if tr.saved is not None and tr.args is not None:
            tr.phase, tr.reran = "rerun", True
            try:
                self._rerun(tr)
            except Exception as exc:
                tr.reran = False
                self._fault("re-running the forward with the parameters before the update", exc)
            tr.phase = None
        for handle in tr.handles:
            handle.remove()
        tr.handles, tr.saved, tr.args, tr.kwargs = [], None, None, None
        self._report(tr)

    def _rerun(self, tr: _Trace) -> None:
        """The traced forward once more, under no_grad, with the parameters as
        they were before the update that spread the non-finite gradient; the
        model's buffers (BatchNorm's running figures) and the random number
        generators are left as they were."""
        from torch.func import functional_call
        state = dict(tr.saved)
        state.update((n, b.detach().clone()) for n, b in self.module.named_buffers())
        cuda = sorted({p.device.index or 0 for p in self.params if p.device.type == "cuda"})
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            functional_call(self.module, state, tuple(tr.args), tr.kwargs, strict=False)

    def _report(self, tr: _Trace) -> None:
        """The trace's findings as an event (written after the pending steps) and a log line."""
        live, rerun = tr.first.get("live"), tr.first.get("rerun")
        origin = rerun if tr.reran else live
        params = tr.before if tr.before is not None else tr.now
        spread = sorted(set(tr.now) - set(params))
        if origin is None:
            cause = "batch" if tr.reran else "unknown"
            where = f"the batch of step {tr.step:,}" if tr.reran else "the loss"
        elif origin["input_count"] and origin["count"]:
            cause = "input"
            where = f"the input of {module_label(origin)}"
        else:
            cause, where = "module", module_label(origin)
        data = {
            "step": tr.step, "seen": tr.seen, "where": where, "cause": cause,
            "module": origin["module"] if origin else None,
            "kind": origin["kind"] if origin else None,
            "count": origin["count"] if origin else None,
            "numel": origin["numel"] if origin else None,
            "input_count": origin["input_count"] if origin else None,
            "params": params, "params_before_update": tr.before is not None,
            "params_step": tr.counted_at if tr.before is not None else tr.traced_step,
            "spread": spread, "parameters": tr.total,
            "traced_step": tr.traced_step,
            "reran": tr.reran,
            "nonfinite_counts": {k: list(v) for k, v in self.nonfinite_counts.items()
                                 if v[0] or v[1]},
        }
        if live is not None and tr.reran:
            data["live"] = {"module": live["module"], "kind": live["kind"]}
        self.nonfinite = data
        text = nonfinite_text(data)
        log.warning("traintop: %s", text)
        self._events.append(Event("non-finite", tr.step, text, data))
