"""`traintop run`: train headless and print the lecture-style report."""

from __future__ import annotations

import argparse
import sys
import time

from traintop.data.errors import InputError
from traintop.engine.atomic import WriteError, check_writable
from traintop.engine.health.monitor import HealthMonitor
from traintop.engine.config import DEFAULT_ENGINE
from traintop.engine.feed import events
from traintop.engine.feed.messages import RunStarted, Status
from traintop.engine.recording.recorder import Recorder
from traintop.engine.report import report_dict, report_text
from traintop.engine.training.build import build_trainer
from traintop.engine.steps.compiled import exit_now_if_compiling
from traintop.engine.training.checkpoint import save_checkpoint
from traintop.engine.training.trainer import Trainer
from traintop.engine.recording.recorder import LIVE_STATUS_STEPS
from traintop.commands.run_end import (exit_code, final_events, final_status, live_status,
                                       say_report, timing_dict)
from traintop.commands.loss_log import is_stage_sweep, lecture_losses, text_with_loss_log
from traintop.commands.options import Parser, add_train_options, check_device, config_for, sweep_for
from traintop.commands.progress import Progress, stopping
from traintop.commands.run_sweep import main_sweep, refuse_options

SPLITS = ("train", "val", "test")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="traintop run",
        description="Train the lecture's deep Linear/BatchNorm/Tanh stack headless and "
                    "print its health report.")
    add_train_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--eval", metavar="SPLITS",
                     help="comma-separated splits to evaluate at the end: train,val,test")
    out.add_argument("--samples", type=int, default=0, metavar="N",
                     help="sample N words at the end")
    out.add_argument("--json", action="store_true",
                     help="print one JSON document on stdout instead of text")
    out.add_argument("--fold", action="store_true",
                     help="after training, fold each BatchNorm into the Linear before it "
                          "and report the val loss with and without folding and the "
                          "largest logit difference (the lecture's exercise)")
    out.add_argument("--checkpoint", metavar="PATH",
                     help="write a checkpoint here at the end (also after Ctrl-C)")
    out.add_argument("--resume", metavar="PATH",
                     help="continue the run saved in this checkpoint")
    out.add_argument("--record", metavar="PATH",
                     help="record the run to this JSON-lines file (.jsonl, or .jsonl.gz) "
                          "for traintop replay/attach/export")
    return parser


def parse_splits(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise InputError(f"--eval: unknown split {', '.join(bad)}; choose from train,val,test")
    if not splits:
        raise InputError("--eval: name at least one of train,val,test")
    return splits


def make_trainer(args: argparse.Namespace) -> Trainer:
    """Trainer for the options: config (over a resumed checkpoint's), data, device."""
    return build_trainer(config_for(args), args.data, check_device(args.device),
                         getattr(args, "engine", DEFAULT_ENGINE), args.threads,
                         getattr(args, "resume", None))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    splits = parse_splits(args.eval)
    if args.samples < 0:
        raise InputError(f"--samples: must be >= 0, got {args.samples}")
    if args.sweep and args.fold:
        raise InputError("--fold: not with --sweep yet (fold one run: traintop run --fold)")
    if args.sweep:
        refuse_options(args)   # before --resume's checkpoint is read for a config
    runs = sweep_for(args, config_for(args))
    if runs:
        if is_stage_sweep([run.config for run in runs]) and not splits:
            splits = ("train", "val")   # the loss log the sweep ends on
        return main_sweep(args, runs, splits)
    # Paths that cannot be written are refused before any training.
    for option, path in (("--record", args.record), ("--checkpoint", args.checkpoint)):
        if path:
            check_writable(path, option)
    trainer = make_trainer(args)
    recorder = start_recording(args.record, trainer) if args.record else None

    # A signal (see progress.stopping) or a recording that cannot be written
    # stops the loop after the step in flight: the report describes whole
    # steps and the checkpoint is consistent.
    errors: list[str] = []
    progress = Progress(trainer.config.steps)
    monitor = HealthMonitor(trainer.info())
    started, first_step = time.monotonic(), trainer.steps_done
    with stopping(progress) as (stop, caught):
        def on_step(result) -> None:
            progress.update(result.step, result.loss)
            monitor.observe(result)
            if recorder is not None and recorder.failed is None:
                try:
                    recorder.step(result)
                    for event in trainer.take_lr_events():   # the decay, a marker on replay
                        recorder.consume(event)
                    if result.step % LIVE_STATUS_STEPS == 0:
                        recorder.consume(live_status(result, first_step, started))
                except WriteError as exc:
                    errors.append(str(exc))
                    stop.set()

        trainer.run(stop=stop, on_step=on_step)

    interrupted = bool(caught)
    eval_losses = trainer.evaluate(splits) if splits else None
    samples = trainer.sample(args.samples) if args.samples else None
    fold = trainer.check_fold("val") if args.fold else None
    checkpoint = None
    if args.checkpoint:
        try:
            checkpoint = save_checkpoint(trainer, args.checkpoint)
        except InputError as exc:
            errors.append(str(exc))
    health = [f.to_dict() for f in monitor.findings()]
    seconds = time.monotonic() - started
    timing = timing_dict(trainer, trainer.steps_done - first_step, seconds)
    doc = report_dict(trainer, trainer.last_stats, trainer.last, eval_losses, samples,
                      health=health, timing=timing)
    if fold is not None:
        doc["fold"] = events.fold_dict(fold, "val")
    if interrupted:
        doc["interrupted"] = True
    if recorder is not None and recorder.failed is None:
        try:
            finish_recording(recorder, trainer, checkpoint, eval_losses, samples, health,
                             interrupted, seconds, timing)
        except WriteError as exc:
            errors.append(str(exc))
    if errors:
        doc["errors"] = list(errors)
    if eval_losses and trainer.config.stage is not None:
        doc["lecture_loss_log"] = lecture_losses(trainer.config.stage)
    say_report(doc, text_with_loss_log, args.json, errors)
    code = exit_code(caught, errors, trainer.stopped is not None)
    exit_now_if_compiling(code)   # a run that ends mid-compile must not abort at exit
    return code


def start_recording(path: str, trainer: Trainer) -> Recorder:
    recorder = Recorder(path, meta={"data": trainer.dataset.source, "writer": "traintop run"})
    recorder.consume(RunStarted(trainer.info()))
    if trainer.steps_done:
        recorder.consume(events.resumed(trainer.steps_done, trainer.first_loss))
    return recorder


def finish_recording(recorder: Recorder, trainer: Trainer, checkpoint, eval_losses, samples, health,
                     interrupted: bool, seconds: float, timing: dict | None = None) -> None:
    """The end of the run as events, then a final Status that says where it stopped."""
    for event in final_events(trainer, checkpoint, eval_losses, samples, health, interrupted,
                              timing):
        recorder.consume(event)
    recorder.close(final_status(trainer, seconds, interrupted=interrupted))
