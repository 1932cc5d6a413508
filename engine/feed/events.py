"""One constructor per Event kind: every writer (the app's live session,
`traintop run --record`, watch()) builds its events here, so the one reader
(run_state.RunState) finds the same fields whoever wrote them."""

from __future__ import annotations

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


def calibrated(step: int, cal) -> Event:
    data = {"layers": list(cal.layers), "mean_max_diff": list(cal.mean_max_diff),
            "std_max_rel_diff": list(cal.std_max_rel_diff), "applied": cal.applied}
    if cal.layers:
        text = (f"calibrate: {len(cal.layers)} BatchNorm layers, running vs exact: "
                f"max |mean diff| {max(cal.mean_max_diff):.3g}, "
                f"max std rel diff {max(cal.std_max_rel_diff):.3g}")
    else:
        text = "calibrate: no BatchNorm layers in this run"
    return Event("calibrate", step, text, data)


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
