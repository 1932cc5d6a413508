"""The lecture's loss log as the end of a `--sweep stage=...`: each stage's
train and val loss beside the ones the lecture printed after 200,000 steps."""

from __future__ import annotations

from traintop.engine.config import STAGE_LOSS_LOG, STAGES
from traintop.engine.report import report_text


def is_stage_sweep(configs) -> bool:
    """Whether every run of a sweep is the lecture's first network."""
    return bool(configs) and all(c.stage is not None for c in configs)


def loss_log_text(docs: list[dict]) -> str:
    """The table, one row per run ('' when a run is not a stage)."""
    stages = [d["config"].get("stage") for d in docs]
    if not docs or None in stages:
        return ""
    steps = {d["steps"] for d in docs}
    after = f"{steps.pop():,} steps" if len(steps) == 1 else "their steps"
    width = max(len("stage"), *(len(s) for s in stages))
    lines = [f"the lecture's loss log: train / val after {after} here, and as the lecture "
             "printed them after 200,000 steps",
             f"{'stage':<{width}}  {'train':>7}  {'val':>7}   lecture train / val"]
    for stage, doc in sorted(zip(stages, docs), key=lambda p: STAGES.index(p[0])):
        losses = doc.get("eval", {})
        printed = STAGE_LOSS_LOG[stage]
        lines.append(f"{stage:<{width}}  {_loss(losses.get('train')):>7}  "
                     f"{_loss(losses.get('val')):>7}   {printed[0]:>13.4f} / {printed[1]:.4f}")
    return "\n".join(lines)


def lecture_losses(stage: str) -> dict:
    """What the lecture printed for `stage` after 200,000 steps, as --json says it."""
    train, val = STAGE_LOSS_LOG[stage]
    return {"stage": stage, "steps": 200_000, "train": train, "val": val}


def text_with_loss_log(doc: dict) -> str:
    """`traintop run`'s report; a stage's evaluation followed by the lecture's figures."""
    text = report_text(doc)
    log = doc.get("lecture_loss_log")
    if log is None:
        return text
    line = (f"the lecture's loss log, stage {log['stage']}: train {log['train']:.4f}  "
            f"val {log['val']:.4f} after {log['steps']:,} steps")
    return _after_loss(text, line)


def _after_loss(text: str, line: str) -> str:
    """`line` right after the report's "loss: train ..." line."""
    lines = text.split("\n")
    at = next((i for i, l in enumerate(lines) if l.startswith("loss: ")), len(lines) - 1)
    return "\n".join(lines[:at + 1] + [line] + lines[at + 1:])


def _loss(value) -> str:
    return "-" if value is None else f"{value:.4f}"
