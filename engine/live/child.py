"""The trainer child's side of a live session: the spawned process's entry
point builds the trainer from its SessionSpec and serves it (runner.Runner)
until the viewer quits or goes. Torch comes only with the trainer."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time

from traintop.engine.feed.messages import Event
from traintop.engine.live.runner import Runner, describe_error
from traintop.engine.live.spec import SessionSpec

PARENT_CHECK_SECONDS = 0.1   # the viewer's death ends this process this soon
ORPHANED_CODE = 0            # nobody is left to read it
FLUSH_SECONDS = 2.0          # longest the last messages wait for the viewer to read them


def child_main(spec: SessionSpec, commands, messages, parent: int | None = None) -> None:
    """Entry point of the spawned process: build, then serve until quit.

    `parent` is the viewer's pid, taken before the spawn: if the viewer dies
    while the child is still starting, getppid() already names init."""
    # A hangup or Ctrl-C reaches the whole process group: the viewer decides
    # when this child ends (it asks, or it dies and orphaned() notices).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(os.getppid() if parent is None else parent)
    try:
        hold_compiles_without_a_free_core()
        trainer = build(spec)
    except Exception as exc:  # noqa: BLE001 - every failure goes to the viewer
        messages.put(Event("error", 0, describe_error(exc)))
        _wait_for_quit(commands, os.getppid() if parent is None else parent)
        messages.cancel_join_thread()   # the viewer may be gone: do not wait to flush
        return
    runner = Runner(trainer, spec, commands, messages, parent, on_idle=start_held_compiles)
    code = 0
    try:
        runner.serve()
    except Exception as exc:  # noqa: BLE001 - said to the viewer, not as a traceback on its screen
        runner.fatal(exc)
        code = 1
    from traintop.engine.steps.compiled import exit_now_if_compiling

    # The viewer gets every last message first (a viewer gone or no longer
    # reading is not waited for past FLUSH_SECONDS).
    messages.close()
    feeder = getattr(messages, "_thread", None)   # no public join with a timeout
    if feeder is not None:
        feeder.join(FLUSH_SECONDS)
    exit_now_if_compiling(code)   # the "auto" engine's compile would abort a normal exit
    if multiprocessing.parent_process() is not None:
        # Then leave at once: the interpreter's own exit tears torch down,
        # 0.3-1.5 s on a busy 2-core machine, while the viewer waits to close
        # its recording (after a closed terminal, tui/terminal_guard.py gives
        # all of it 1.2 s).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise SystemExit(code) from None


def watch_parent(parent: int, period: float = PARENT_CHECK_SECONDS) -> threading.Thread:
    """End this process within `period` of the viewer's death, whatever its
    main thread is doing: importing torch and building (seconds, before the
    loop's own check), a long evaluation, a pipe the viewer no longer reads.
    The runner's loop notices first when it can and leaves cleanly; this is
    the floor. A sleeping thread: ~10 wake-ups a second, no CPU to speak of."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        # Nobody reads the pipe any more, nobody is owed a last message.
        handover = sys.modules.get("traintop.engine.steps.handover")
        try:
            if handover is not None:
                handover.kill_all()   # a compile process goes with its trainer
        finally:
            os._exit(ORPHANED_CODE)

    thread = threading.Thread(target=watch, name="traintop-parent-watch", daemon=True)
    thread.start()
    return thread


# The app's UI process and this trainer each take a core: a background compile
# needs one more to run beside them without slowing the trainer.
CORES_FOR_APP = 2


def hold_compiles_without_a_free_core() -> bool:
    """The "auto" engine's compile waits for idle time (the run paused or
    finished) where no core is free for it: see handover.hold. A package
    already on disk is loaded at the first step all the same, and
    TRAINTOP_AUTO_COMPILE=process asks for the compile beside the run anyway."""
    from traintop.engine.steps import handover   # torch: only in the child
    asked = os.environ.get(handover.MODE_ENV, "").strip().lower()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    held = asked != "process" and (cores or 1) <= CORES_FOR_APP
    handover.hold(held)
    return held


def start_held_compiles() -> None:
    handover = sys.modules.get("traintop.engine.steps.handover")
    if handover is not None:
        handover.start_held()


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
