"""One constructor per Event kind: every writer (the app's live session,
`traintop run --record`, watch()) builds its events here, so the one reader
(run_state.RunState) finds the same fields whoever wrote them."""

from __future__ import annotations

import math

from traintop.engine.report import timing_text
from traintop.engine.feed.messages import Event


def lr_changed(step: int, old: float, new: float, why: str | None = None) -> Event:
    """A change of the lr in force: by a key or set_lr (why None) or by the
    schedule (why "decay": the lr divided by --lr / --lr-after)."""
    if why is None:
        return Event("lr", step, f"lr {old:g} -> {new:g}", {"old": old, "lr": new})
    return Event("lr", step, f"lr {old:g} -> {new:g} ({why})", {"old": old, "lr": new, "why": why})


def evaluated(step: int, losses: dict[str, float]) -> Event:
    text = "evaluate: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
    return Event("evaluate", step, text, {"losses": dict(losses)})


def sampled(step: int, samples) -> Event:
    samples = list(samples)
    return Event("sample", step, f"sampled {len(samples)} names", {"samples": samples})


def calibrated(step: int, cal, losses: tuple[str, float, float] | None = None) -> Event:
    """`losses`: (split, loss on the running estimates, loss on the exact
    statistics) where the exact ones were applied and the split re-evaluated."""
    data = {"layers": list(cal.layers), "mean_max_diff": list(cal.mean_max_diff),
            "std_max_rel_diff": list(cal.std_max_rel_diff), "applied": cal.applied}
    if cal.layers:
        text = (f"calibrate: {len(cal.layers)} BatchNorm layers, running vs exact: "
                f"max |mean diff| {max(cal.mean_max_diff):.3g}, "
                f"max std rel diff {max(cal.std_max_rel_diff):.3g}")
    else:
        text = "calibrate: no BatchNorm layers in this run"
    if losses is not None and cal.layers:
        split, running, exact = losses
        data.update(split=split, loss_running=running, loss_exact=exact)
        text += f"; applied: {split} loss {running:.4f} -> {exact:.4f}"
    return Event("calibrate", step, text, data)


def folded(step: int, fold, split: str = "val") -> Event:
    """Each BatchNorm folded into its Linear (a results.FoldCheck of `split`)."""
    data = fold_dict(fold, split)
    if fold.folded_layers:
        text = (f"fold: {fold.folded_layers} BatchNorm layers into their Linear; {split} loss "
                f"{fold.loss:.4f} -> {fold.loss_folded:.4f} folded, largest |logit diff| "
                f"{fold.max_abs_diff:.2e}")
    else:
        text = "fold: no BatchNorm layers in this run, nothing to fold"
    return Event("fold", step, text, data)


def fold_dict(fold, split: str = "val") -> dict:
    """A FoldCheck as plain values: `--json`'s "fold" and the "fold" event's data."""
    def plain(x: float) -> float | None:   # JSON has no NaN: a diverged run's figures
        return x if math.isfinite(x) else None

    return {"split": split, "folded_layers": fold.folded_layers, "loss": plain(fold.loss),
            "loss_folded": plain(fold.loss_folded),
            "max_abs_logit_diff": plain(fold.max_abs_diff)}


def checkpointed(step: int, path) -> Event:
    return Event("checkpoint", step, f"checkpoint written: {path}", {"path": str(path)})


def stopped(nonfinite) -> Event:
    """Training stopped on a non-finite value (a results.NonFinite)."""
    return Event("stopped", nonfinite.step, f"stopped: {nonfinite.message()}",
                 {"where": nonfinite.where, "what": nonfinite.what})


def interrupted(step: int) -> Event:
    return Event("stopped", step, "interrupted", {"interrupted": True})


def resumed(step: int, first_loss: float | None) -> Event:
    return Event("note", step, f"resumed at step {step:,}", {"first_loss": first_loss})


def health(step: int, findings: list[dict]) -> Event:
    return Event("health", step, f"{len(findings)} findings", {"findings": list(findings)})


def timed(step: int, timing: dict) -> Event:
    return Event("timing", step, timing_text(timing), dict(timing))
