"""`traintop run --sweep ...`: the runs of a sweep trained together, headless.

`--json` prints {"runs": [...]}: per run, in sweep order, the document
`traintop run --json` prints for that run's config (its "label" added), then
the sweep's own "timing". The text report is each run's report under a header
naming its label, then a comparison table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from traintop.data.errors import InputError
from traintop.engine.atomic import WriteError, check_writable
from traintop.engine.health.monitor import HealthMonitor
from traintop.engine.feed.messages import RunStarted, Steps, Sweep
from traintop.engine.recording.recorder import Recorder
from traintop.engine.report import fmt, report_dict, report_text
from traintop.engine.sweep.spec import SweepRun
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.recording.recorder import LIVE_STATUS_STEPS
from traintop.engine.sweep.build import build_sweep_trainer
from traintop.commands.loss_log import loss_log_text
from traintop.commands.options import check_device
from traintop.commands.progress import Progress, stopping
from traintop.commands.run_end import (exit_code, final_events, final_status, live_status,
                                       say_report, timing_dict)



def refuse_options(args: argparse.Namespace) -> None:
    """Options of `traintop run` that have no meaning for a sweep, as one line."""
    if args.resume:
        raise InputError("--resume: not with --sweep (a checkpoint holds one run; "
                         "resume it with traintop run --resume alone)")
    if args.checkpoint:
        raise InputError("--checkpoint: not with --sweep yet (a checkpoint holds one run; "
                         "train the run to keep alone with its values)")
    if args.record:
        check_writable(args.record, "--record")


def main_sweep(args: argparse.Namespace, runs: tuple[SweepRun, ...],
               splits: tuple[str, ...]) -> int:
    sweep = build_sweep_trainer(runs, args.data, check_device(args.device), args.engine,
                                args.threads)

    recorder = start_recording(args.record, sweep) if args.record else None
    errors: list[str] = []
    progress = Progress(max(t.config.steps for t in sweep.trainers))
    monitors = [HealthMonitor(t.info()) for t in sweep.trainers]
    started = time.monotonic()
    with stopping(progress) as (stop, caught):
        while not sweep.finished and not stop.is_set():
            results = sweep.step()
            for monitor, result in zip(monitors, results):
                if result is not None:
                    monitor.observe(result)
            if recorder is not None and not record(recorder, results, errors, started,
                                                   sweep.trainers):
                stop.set()   # the recording cannot be written: stop after this step
            shown = next((r for r in results if r is not None), None)
            if shown is not None:
                progress.update(shown.step, shown.loss)
    seconds = time.monotonic() - started

    ends = [run_doc(sweep, i, monitors[i], splits, args.samples, seconds, bool(caught))
            for i in range(len(runs))]
    docs = [doc for doc, _ in ends]
    if recorder is not None and recorder.failed is None:
        try:
            for run, (_, end) in enumerate(ends):
                for event in end:
                    recorder.consume(dataclasses.replace(event, run=run))
            recorder.close([final_status(t, seconds, run, interrupted=bool(caught))
                            for run, t in enumerate(sweep.trainers)])
        except WriteError as exc:
            errors.append(str(exc))
    run_steps = sum(t.steps_done for t in sweep.trainers)
    timing = {"engine": args.engine, "engine_at_end": sweep.engine_now,
              "runs": len(runs), "groups": len(set(shape_groups(sweep))),
              "run_steps": run_steps, "wall_s": round(seconds, 3),
              "run_steps_per_sec": round(run_steps / seconds, 1) if seconds > 0 else 0.0}
    doc = {"runs": docs, "timing": timing}
    if caught:
        doc["interrupted"] = True
    say_report(doc, lambda d: sweep_text(d["runs"], d["timing"]), args.json, errors)
    return exit_code(caught, errors, any(t.stopped is not None for t in sweep.trainers))


def start_recording(path: str, sweep: SweepTrainer) -> Recorder:
    """The recording of every run: the Sweep, then each run's start."""
    keys = tuple(sweep.runs[0].changes)
    recorder = Recorder(path, meta={"data": sweep.trainers[0].dataset.source,
                                    "writer": "traintop run"})
    recorder.consume(Sweep(tuple(sweep.labels), keys))
    for run, trainer in enumerate(sweep.trainers):
        recorder.consume(RunStarted(trainer.info(), run=run))
    return recorder


def record(recorder: Recorder, results: list, errors: list[str], started: float,
           trainers=()) -> bool:
    """Each run's step of this sweep step, its lr changes (the decay) and now
    and then that it runs; False once the file cannot be written."""
    try:
        for run, result in enumerate(results):
            if result is not None:
                recorder.consume(Steps((result,), run=run))
                if run < len(trainers):
                    for event in trainers[run].take_lr_events():
                        recorder.consume(dataclasses.replace(event, run=run))
                if result.step % LIVE_STATUS_STEPS == 0:
                    recorder.consume(live_status(result, 0, started, run))
    except WriteError as exc:
        errors.append(str(exc))
        return False
    return True


def shape_groups(sweep: SweepTrainer) -> list[tuple]:
    from traintop.engine.sweep.group import shape_key  # the key the groups were formed by
    return [shape_key(t) for t in sweep.trainers]


def run_doc(sweep: SweepTrainer, i: int, monitor: HealthMonitor, splits, samples: int,
            seconds: float, interrupted: bool) -> dict:
    """Run i's `traintop run --json` document, its label first."""
    trainer = sweep.trainers[i]
    eval_losses = trainer.evaluate(splits) if splits else None
    words = trainer.sample(samples) if samples else None
    timing = timing_dict(trainer, trainer.steps_done, seconds)
    timing["engine"], timing["engine_at_end"] = sweep.engine, sweep.engine_now
    doc = report_dict(trainer, trainer.last_stats, trainer.last, eval_losses, words,
                      health=[f.to_dict() for f in monitor.findings()], timing=timing)
    if interrupted:
        doc["interrupted"] = True
    end = final_events(trainer, None, eval_losses, words, doc.get("health"), interrupted, timing)
    return {"label": sweep.labels[i], **doc}, end


def sweep_text(docs: list[dict], timing: dict) -> str:
    """Each run's lecture printout under its label, then one line per run."""
    parts = []
    for doc in docs:
        parts.append(f"=== {doc['label']} ===")
        parts.append(report_text(doc))
        parts.append("")
    width = max(len("run"), *(len(d["label"]) for d in docs))
    has_val = any("val" in d.get("eval", {}) for d in docs)
    head = f"{'run':<{width}}  {'last loss':>9}" + (f"  {'val loss':>8}" if has_val else "") \
        + f"  {'steps/s':>7}  stopped"
    how = "one after another" if timing["engine_at_end"] == "exact" else \
        f"{timing['groups']} batched group(s)"
    runs = timing['runs']
    lines = [f"sweep of {runs} run{'s' if runs != 1 else ''}, engine {timing['engine_at_end']} "
             f"({how}): {timing['run_steps']:,} run-steps in "
             f"{timing['wall_s']:.1f} s, {timing['run_steps_per_sec']:,.0f} run-steps/s", head]
    for d in docs:
        row = f"{d['label']:<{width}}  {fmt(d['last_loss']):>9}"
        if has_val:
            row += f"  {fmt(d.get('eval', {}).get('val')):>8}"
        row += f"  {d['timing']['steps_per_sec']:>7,.0f}  {d['stopped'] or '-'}"
        lines.append(row)
    log = loss_log_text(docs)   # a sweep over --stage ends on the lecture's loss log
    return "\n".join(parts + lines + (["", log] if log else []))
