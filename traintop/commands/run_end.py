"""The end of a headless run, one run's or each of a sweep's: what its
recording says last, its final and live Status, its timing, how the report
is printed and the exit code. `traintop run` and `traintop run --sweep` both
end here."""

from __future__ import annotations

import json
import sys
import time

import torch

from traintop.engine.feed import events
from traintop.engine.feed.messages import Status
from traintop.engine.training.trainer import Trainer


def exit_code(caught: list[int], errors: list[str], stopped: bool) -> int:
    """128 + the signal that stopped it; 2 when something could not be written;
    1 when training stopped itself (a non-finite loss); else 0."""
    if caught:
        return 128 + caught[0]
    return 2 if errors else (1 if stopped else 0)


def say_report(doc: dict, as_text, as_json: bool, errors: list[str]) -> None:
    """The report on stdout (JSON or text), then each error as one line on stderr."""
    try:
        if as_json:
            sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        else:
            sys.stdout.write(as_text(doc) + "\n")
        sys.stdout.flush()
    except OSError:
        pass    # stdout is gone (a hangup closed the terminal): the recording has it all
    for text in errors:
        sys.stderr.write(f"traintop: error: {text}\n")


def timing_dict(trainer: Trainer, steps: int, seconds: float) -> dict:
    """How this process ran: the path, threads, wall time (eval and samples
    excluded, a compiled path's compiling included), the memory the history
    holds and the process's peak RSS."""
    return {"engine": trainer.engine, "engine_at_end": trainer.engine_now,
            "threads": torch.get_num_threads(),
            "steps": steps, "wall_s": round(seconds, 3),
            "steps_per_sec": round(steps / seconds, 1) if seconds > 0 else 0.0,
            "history_mb": round(trainer.history.nbytes() / 1e6, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def peak_rss_mb() -> float:
    import resource  # Unix only; elsewhere the figure is 0
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def final_events(trainer: Trainer, checkpoint, eval_losses, samples, health, interrupted: bool,
                 timing: dict | None) -> list:
    """What a recording says after a run's last step (a sweep: of each run)."""
    step = trainer.steps_done
    ends = [events.stopped(trainer.stopped) if trainer.stopped is not None else None,
            events.interrupted(step) if interrupted else None,
            events.evaluated(step, eval_losses) if eval_losses is not None else None,
            events.sampled(step, samples) if samples is not None else None,
            events.checkpointed(step, checkpoint) if checkpoint else None,
            events.health(step, health) if health is not None else None,
            events.timed(step, timing) if timing is not None else None]
    return [event for event in ends if event is not None]


def final_status(trainer: Trainer, seconds: float, run: int = 0,
                 interrupted: bool = False) -> Status:
    step = trainer.steps_done
    stopped = trainer.stopped.message() if trainer.stopped else None
    return Status(step=step, lr=trainer.lr, running=False, finished=trainer.finished,
                  steps_per_sec=step / seconds if seconds > 0 else 0.0,
                  stopped=stopped or ("interrupted" if interrupted else None), run=run)


def live_status(result, first_step: int, started: float, run: int = 0) -> Status:
    seconds = time.monotonic() - started
    rate = (result.step - first_step) / seconds if seconds > 0 else 0.0
    return Status(step=result.step, lr=result.lr, running=True, finished=False,
                  steps_per_sec=rate, run=run)
