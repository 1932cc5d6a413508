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
steps no forward hook is registered at all (a torch.compile'd model's graph
never sees one: its measured forwards run eagerly), the optimizer's hooks
only count its steps, and on a GPU the loss stays a tensor until the next
batch is written: no host sync per step (on a CPU it is read at once, which
costs less than keeping it). w.step matches its calls to the optimizer's
steps (traintop.engine.watch.calls): one recorded step per optimizer step,
with a "misuse" event where the loop calls it otherwise, and a "skipped"
event for a step a GradScaler skipped.

All figures of a snapshot are computed on the device and moved to the host
in one transfer. Under torch.distributed the writer rank (0 by default)
writes; with reduce=True every rank measures and the figures are averaged
across ranks before rank 0 writes them.

The watcher never breaks the run it watches: no exception of its hooks or of
`w.step` reaches the training loop. A figure that fails is one warning of the
"traintop" logger and a "monitor-error" event (a finding of that id), the
step is written without it. Histograms count the finite values only; each
tensor's non-finite values are counted (`nonfinite_counts`).

Where a NaN or inf started: the first non-finite gradient (two small ones
are read before the update of every measured step, and of every step with
watch(check_every_step=True)), loss (read when the losses are) or figure
arms a trace of the model's next forward: every module's output is checked
in the order they finish, the first non-finite one named by its path, with
whether its input already was; the parameters holding non-finite values are
counted before the update (which would spread a NaN gradient into all of
them); where they were kept, the same forward is run once more under
no_grad with them (buffers and random streams untouched) to find the module
where it started. The "non-finite" event carries it all (the monitor's
`non-finite` finding, a marker on the loss plot). Between snapshots on a
GPU the losses, read at the next snapshot or flush, give the step, and the
place is where the NaN stands after the updates spread it.
"""

from .figures import BINS, HIST_SAMPLE, _hist   # noqa: F401  (tests read them here)
from .watcher import Watcher, family, watch

__all__ = ["Watcher", "family", "watch"]
