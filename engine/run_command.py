"""`traintop run`: train headless and print the lecture-style report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import torch

from data.dataset import load_dataset
from data.errors import InputError
from engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from engine.config import TrainConfig
from engine.feed import RunStarted, Status
from engine.health import HealthMonitor
from engine.options import add_train_options, check_device, config_from_args
from engine.progress import Progress
from engine.recorder import Recorder
from engine.report import report_dict, report_text, timing_text
from engine.threads import apply_threads, choose_threads
from engine.trainer import Trainer

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
    """Trainer for the options (shared by the app): config, data, device, resume."""
    base = None
    if getattr(args, "resume", None):
        saved = read_checkpoint(args.resume)["config"]
        base = TrainConfig.from_dict(saved)
    config = config_from_args(args, base)
    device = check_device(args.device)
    apply_threads(args.threads or choose_threads(config))
    dataset = load_dataset(args.data, config.block_size, config.split_seed)
    trainer = Trainer(config, dataset, device=device, engine=getattr(args, "engine", "exact"))
    if getattr(args, "resume", None):
        steps = config.steps
        load_checkpoint(trainer, args.resume)
        trainer.config = trainer.config.with_changes(steps=steps)
    return trainer


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
    return 130 if stop.is_set() else (1 if trainer.stopped else 0)


def start_recording(path: str, trainer: Trainer) -> Recorder:
    recorder = Recorder(path, meta={"data": trainer.dataset.source, "writer": "traintop run"})
    recorder.consume(RunStarted(trainer.info()))
    if trainer.steps_done:
        recorder.event("note", trainer.steps_done, f"resumed at step {trainer.steps_done:,}",
                       {"first_loss": trainer.first_loss})
    return recorder


def timing_dict(trainer: Trainer, steps: int, seconds: float) -> dict:
    """How this process ran: the path, threads, wall time (eval and samples
    excluded, a compiled path's compiling included), the memory the history
    holds and the process's peak RSS."""
    return {"engine": trainer.engine, "threads": torch.get_num_threads(),
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
    if trainer.stopped is not None:
        recorder.event("stopped", step, trainer.stopped.message())
    if interrupted:
        recorder.event("stopped", step, "interrupted", {"interrupted": True})
    if eval_losses is not None:
        recorder.event("evaluate", step, "evaluate " + ", ".join(
            f"{k} {v:.4f}" for k, v in eval_losses.items()), {"losses": eval_losses})
    if samples is not None:
        recorder.event("sample", step, f"{len(samples)} samples", {"samples": list(samples)})
    if args.checkpoint:
        recorder.event("checkpoint", step, f"checkpoint {args.checkpoint}",
                       {"path": str(args.checkpoint)})
    if health is not None:
        recorder.event("health", step, f"{len(health)} findings", {"findings": health})
    if timing is not None:
        recorder.event("timing", step, timing_text(timing), timing)
    recorder.close(Status(step=step, lr=trainer.lr, running=False, finished=trainer.finished,
                          steps_per_sec=step / seconds if seconds > 0 else 0.0,
                          stopped=trainer.stopped.message() if trainer.stopped else None))
