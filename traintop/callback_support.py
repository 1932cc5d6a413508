"""What the Lightning and Hugging Face callbacks share: their options, the
optimizer watch() hooks, the gradient norm before clipping, the lr in force.

The standard library at import (torch where a function needs it): importing a
callback without its framework fails at once, before torch loads.
"""

from __future__ import annotations

import contextlib
import inspect
import logging

log = logging.getLogger("traintop")


def missing(module: str, extra: str, package: str) -> ImportError:
    """The one line a user sees who imports a callback without its framework."""
    return ImportError(f"traintop.{module} needs {package}: pip install 'traintop[{extra}]' "
                       f"(or pip install {package})")


def watch_options(options: dict) -> dict:
    """Every option of watch() but the model, path and optimizer (which the
    framework gives), checked now: a misspelt option fails where it is written,
    not when training starts."""
    from traintop.engine.watch import watch
    params = inspect.signature(watch).parameters
    allowed = [n for n in params if n not in ("model", "path", "optimizer")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"TraintopCallback: unknown option {unknown[0]!r} "
                        f"(watch() takes {', '.join(allowed)})")
    return dict(options)


def with_framework(options: dict, **known) -> dict:
    """The user's options, plus what the framework knows that watch() takes
    (its clip threshold, its GradScaler) where the user set none and this
    watch() has the option."""
    from traintop.engine.watch import watch
    params = inspect.signature(watch).parameters
    extra = {k: v for k, v in known.items()
             if k in params and k not in options and v is not None}
    return {**options, **extra}


def hookable(optimizer):
    """The torch optimizer whose step hooks watch() registers: accelerate's
    AcceleratedOptimizer (and Lightning's LightningOptimizer) wrap one as
    `.optimizer` and lack the hooks' registry themselves."""
    seen = 0
    while optimizer is not None and not hasattr(optimizer, "_optimizer_step_pre_hooks") \
            and hasattr(optimizer, "optimizer") and seen < 8:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def total_norm(params):
    """The 2-norm of all the gradients, as torch.nn.utils.clip_grad_norm_
    computes it before it clips (a tensor: no host sync). None: no gradient."""
    import torch
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    with torch.no_grad():
        get = getattr(torch.nn.utils, "get_total_norm", None)   # torch >= 2.6
        if get is not None:
            return get(grads, 2.0, error_if_nonfinite=False)
        return torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.detach()).to(grads[0].device) for g in grads]))


def lr_now(optimizer):
    """The first group's lr as it stands (a copy where it is a tensor: a
    scheduler may change that tensor in place)."""
    try:
        lr = optimizer.param_groups[0]["lr"]
    except Exception:
        return None
    return lr.detach().clone() if hasattr(lr, "detach") else lr


@contextlib.contextmanager
def lr_shown(optimizer, lr):
    """The optimizer's first group shows `lr` for the duration (then its own
    again): watch() reads the lr of a step from the optimizer, and a framework
    may have stepped its scheduler before the callback records the step."""
    if lr is None or optimizer is None:
        yield
        return
    group = optimizer.param_groups[0]
    own = group["lr"]
    group["lr"] = lr
    try:
        yield
    finally:
        group["lr"] = own


def fault(watcher, what: str, exc: BaseException) -> None:
    """A failure in a callback: as watch()'s own (one warning, a monitor-error
    event), never an exception in the training loop."""
    try:
        watcher._fault(what, exc)
    except Exception:
        log.warning("traintop: %s failed (%s); the run goes on without it", what, exc)


def close_quietly(watcher) -> None:
    """Close a watcher; nothing of traintop's reaches the training loop."""
    if watcher is None:
        return
    try:
        watcher.close()
    except Exception as exc:   # close() itself never raises; this is the last guard
        log.warning("traintop: closing the recording failed (%s)", exc)
