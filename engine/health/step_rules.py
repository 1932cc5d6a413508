"""Rules over a watched run's steps (watch()), not its snapshots: a loss
spike, clipping that cuts most steps, and w.step called other than once per
optimizer step. Judged for watch()ed models only (the lecture's own runs
have their loss rules in traintop.engine.health.rules).

StepRules is fed every step (loss, gradient norm) and the watcher's
"misuse" events; the monitor adds its findings to its own.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from .finding import Finding


# A step's loss is a spike when it is above both SPIKE_RATIO x the median of
# the SPIKE_WINDOW finite losses before it and that median plus SPIKE_MADS
# median absolute deviations (a noisy loss near zero is no spike for doubling).
SPIKE_WINDOW = 50
SPIKE_MIN_STEPS = 20        # losses seen before a spike is judged
SPIKE_RATIO = 3.0
SPIKE_MADS = 10.0
SPIKE_EVERY = 10            # the window's median and deviation refreshed this often
# Clipping: the share of the last CLIP_WINDOW steps with a known norm whose
# norm was above max_grad_norm (each of them was cut to it).
CLIP_WINDOW = 100
CLIP_MIN_STEPS = 20
CLIP_WARN_SHARE = 0.5

# (id, title, meaning) of each rule, made Rules in traintop.engine.health.rules.RULES
STEP_RULES: tuple[tuple[str, str, str], ...] = (
    ("loss-spike", "Loss spike",
         f"A step whose loss is above {SPIKE_RATIO:g}x the median of the {SPIKE_WINDOW} "
         f"losses before it (and {SPIKE_MADS:g} median deviations above it). The finding "
         "names the step: a bad batch, a learning rate too high for that stretch, or an "
         "fp16 overflow. A warning; it stays for the run with the number of spikes."),
    ("grad-norm", "Clipping cuts most steps",
         "The total gradient norm before clipping (w.step(loss, grad_norm=...), what "
         "clip_grad_norm_ returns) against watch(max_grad_norm=...): when it is above the "
         f"threshold on {CLIP_WARN_SHARE:.0%} or more of the last {CLIP_WINDOW} steps, the "
         "clip sets the step size, not the gradient: lower the learning rate or raise the "
         "threshold. Not judged without the threshold."),
    ("misuse", "w.step misused",
         "w.step should run once per optimizer step, after it. Called inside optimizer.step "
         "(from its closure, as a Lightning training_step runs) it comes before the backward "
         "and the update; called per micro-batch under gradient accumulation it comes more "
         "often than the optimizer steps. traintop still records one step per optimizer "
         "step (the closure's call when the step ends, the micro-batches' mean loss) and "
         "says so here."),
)

MISUSE_WHERE = {"closure": "w.step in the optimizer's closure",
                "accumulation": "w.step per micro-batch"}


class StepRules:
    """The step rules' state for one run."""

    def __init__(self, config: dict):
        limit = config.get("max_grad_norm")
        self.max_norm = float(limit) if isinstance(limit, (int, float)) and limit > 0 else None
        self._losses: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self._since = SPIKE_EVERY          # steps since the level was taken
        self._level = self._spread = math.nan
        self._spike = None                 # the latest spike's Finding
        self._spikes = 0
        self._norms: deque[float] = deque(maxlen=CLIP_WINDOW)
        self._last_step = 0
        self._misuse: dict = {}            # where -> Finding

    def observe_columns(self, steps, losses, norms=None) -> None:
        """Steps in order (lists or arrays): their losses and gradient norms (None: none)."""
        if norms is not None:
            self._norms.extend(g for g in (norms.tolist() if hasattr(norms, "tolist") else norms)
                               if math.isfinite(g))
        steps = steps.tolist() if hasattr(steps, "tolist") else steps
        losses = losses.tolist() if hasattr(losses, "tolist") else losses
        for step, loss in zip(steps, losses):
            self._loss(step, loss)
        if steps:
            self._last_step = steps[-1]

    def _loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return                       # the non-finite rule speaks
        held = self._losses
        if len(held) >= SPIKE_MIN_STEPS:
            if self._since >= SPIKE_EVERY:   # a median every few steps: observe() stays cheap
                self._level = statistics.median(held)
                self._spread = statistics.median(abs(v - self._level) for v in held)
                self._since = 0
            level = self._level
            if loss > level * SPIKE_RATIO and loss > level + SPIKE_MADS * self._spread:
                self._spikes += 1
                ratio = loss / level if level > 0 else math.inf
                self._spike = Finding(
                    "loss-spike", "warn", "loss", ratio,
                    f"within {SPIKE_RATIO:g}x the median of the last {len(held)} losses",
                    f"the loss jumped to {loss:.4g} at step {step:,}, {ratio:.1f}x its median "
                    f"{level:.4g} over the {len(held)} steps before"
                    + (f" ({self._spikes} spikes so far)" if self._spikes > 1 else "")
                    + ": a bad batch, a learning rate too high for this stretch, or an fp16 "
                    "overflow; lower the learning rate or clip the gradients.", step)
        held.append(loss)
        self._since += 1

    def observe_event(self, event) -> None:
        """A watcher's "misuse" event (its data's kind: closure or accumulation)."""
        kind = str((event.data or {}).get("kind", "?"))
        where = MISUSE_WHERE.get(kind, f"w.step ({kind})")
        self._misuse.setdefault(where, Finding(
            "misuse", "warn", where, None, "one w.step per optimizer step, after it",
            event.text, event.step))

    def _clipping(self) -> list:
        if self.max_norm is None or len(self._norms) < CLIP_MIN_STEPS:
            return []
        cut = sum(g > self.max_norm for g in self._norms)
        share = cut / len(self._norms)
        if share < CLIP_WARN_SHARE:
            return []
        median = statistics.median(self._norms)
        return [Finding(
            "grad-norm", "warn", "gradient norm", share,
            f"clipped on under {CLIP_WARN_SHARE:.0%} of the steps",
            f"clipping cut {cut} of the last {len(self._norms)} steps (median norm before "
            f"clipping {median:.3g}, max_grad_norm {self.max_norm:g}): the clip sets the step "
            "size, not the gradient; lower the learning rate or raise max_grad_norm.",
            self._last_step)]

    def findings(self) -> list:
        return ([self._spike] if self._spike else []) + self._clipping() \
            + list(self._misuse.values())
