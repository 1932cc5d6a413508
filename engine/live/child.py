"""The trainer child's side of a live session: the spawned process's entry
point builds the trainer from its SessionSpec and serves it (runner.Runner)
until the viewer quits or goes. Torch comes only with the trainer."""

from __future__ import annotations

import os
import queue
import signal

from traintop.engine.feed.messages import Event
from traintop.engine.live.runner import Runner, describe_error
from traintop.engine.live.spec import SessionSpec


def child_main(spec: SessionSpec, commands, messages, parent: int | None = None) -> None:
    """Entry point of the spawned process: build, then serve until quit.

    `parent` is the viewer's pid, taken before the spawn: if the viewer dies
    while the child is still starting, getppid() already names init."""
    # A hangup or Ctrl-C reaches the whole process group: the viewer decides
    # when this child ends (it asks, or it dies and orphaned() notices).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer = build(spec)
    except Exception as exc:  # noqa: BLE001 - every failure goes to the viewer
        messages.put(Event("error", 0, describe_error(exc)))
        _wait_for_quit(commands, os.getppid() if parent is None else parent)
        messages.cancel_join_thread()   # the viewer may be gone: do not wait to flush
        return
    runner = Runner(trainer, spec, commands, messages, parent)
    code = 0
    try:
        runner.serve()
    except Exception as exc:  # noqa: BLE001 - said to the viewer, not as a traceback on its screen
        runner.fatal(exc)
        code = 1
    from traintop.engine.steps.compiled import compiling, exit_now_if_compiling

    if compiling():   # the "auto" engine's compile would abort a normal exit
        messages.close()
        messages.join_thread()   # the viewer gets every last message first
        exit_now_if_compiling(code)
    if code:
        raise SystemExit(code) from None


def build(spec: SessionSpec):
    """The child's trainer: one run's, or a sweep's (the builders `traintop run` uses too)."""
    if spec.sweep:
        from traintop.engine.sweep.build import build_sweep_trainer   # torch: only in the child
        return build_sweep_trainer(spec.sweep, spec.data, spec.device, spec.engine, spec.threads)
    from traintop.engine.training.build import build_trainer   # torch: only in the child
    return build_trainer(spec.config, spec.data, spec.device, spec.engine, spec.threads,
                         spec.resume)


def _wait_for_quit(commands, parent: int) -> None:
    while os.getppid() == parent:
        try:
            if commands.get(timeout=0.5).name == "quit":
                return
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
