"""`traintop run`: train headless and print the lecture-style report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import torch

from ..data.errors import InputError
from ..engine.health.monitor import HealthMonitor
from ..engine.config import DEFAULT_ENGINE
from ..engine.recording import events
from ..engine.recording.feed import RunStarted, Status
from ..engine.recording.recorder import Recorder
from ..engine.report import report_dict, report_text
from ..engine.training.build import build_trainer
from ..engine.steps.compiled import exit_now_if_compiling
from ..engine.training.checkpoint import save_checkpoint
from ..engine.training.trainer import Trainer
from .options import add_train_options, check_device, config_for
from .progress import Progress

SPLITS = ("train", "val", "test")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    trainer = make_trainer(args)
    recorder = start_recording(args.record, trainer) if args.record else None

    # Ctrl-C asks the loop to stop after the step in flight, so the report
    # below describes a whole step and the checkpoint is consistent.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    progress = Progress(trainer.config.steps)
    monitor = HealthMonitor(trainer.info())
    started, first_step = time.monotonic(), trainer.steps_done

    def on_step(result) -> None:
        progress.update(result.step, result.loss)
        monitor.observe(result)
        if recorder is not None:
            recorder.step(result)

    try:
        trainer.run(stop=stop, on_step=on_step)
    finally:
        progress.close()
        signal.signal(signal.SIGINT, previous)

    eval_losses = trainer.evaluate(splits) if splits else None
    samples = trainer.sample(args.samples) if args.samples else None
    if args.checkpoint:
        save_checkpoint(trainer, args.checkpoint)
    health = [f.to_dict() for f in monitor.findings()]
    seconds = time.monotonic() - started
    timing = timing_dict(trainer, trainer.steps_done - first_step, seconds)
    doc = report_dict(trainer, trainer.last_stats, trainer.last, eval_losses, samples,
                      health=health, timing=timing)
    if stop.is_set():
        doc["interrupted"] = True
    if recorder is not None:
        finish_recording(recorder, trainer, args, eval_losses, samples, health,
                         stop.is_set(), seconds, timing)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(report_text(doc) + "\n")
    code = 130 if stop.is_set() else (1 if trainer.stopped else 0)
    exit_now_if_compiling(code)   # a run that ends mid-compile must not abort at exit
    return code


def start_recording(path: str, trainer: Trainer) -> Recorder:
    recorder = Recorder(path, meta={"data": trainer.dataset.source, "writer": "traintop run"})
    recorder.consume(RunStarted(trainer.info()))
    if trainer.steps_done:
        recorder.consume(events.resumed(trainer.steps_done, trainer.first_loss))
    return recorder


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


def finish_recording(recorder: Recorder, trainer: Trainer, args, eval_losses, samples, health,
                     interrupted: bool, seconds: float, timing: dict | None = None) -> None:
    """The end of the run as events, then a final Status that says where it stopped."""
    step = trainer.steps_done
    ends = [events.stopped(trainer.stopped) if trainer.stopped is not None else None,
            events.interrupted(step) if interrupted else None,
            events.evaluated(step, eval_losses) if eval_losses is not None else None,
            events.sampled(step, samples) if samples is not None else None,
            events.checkpointed(step, args.checkpoint) if args.checkpoint else None,
            events.health(step, health) if health is not None else None,
            events.timed(step, timing) if timing is not None else None]
    for event in ends:
        if event is not None:
            recorder.consume(event)
    recorder.close(Status(step=step, lr=trainer.lr, running=False, finished=trainer.finished,
                          steps_per_sec=step / seconds if seconds > 0 else 0.0,
                          stopped=trainer.stopped.message() if trainer.stopped else None))
