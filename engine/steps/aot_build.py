"""The compile process of the "auto" engine (traintop.engine.steps.handover
starts it): AOTInductor compiles the batched plain step
(traintop.engine.steps.batched_graph.plain_step, a pure function of tensors)
for one Plan into a package file the trainer loads in milliseconds.

It runs at idle priority (SCHED_IDLE, else nice 19), so it takes only CPU
time nobody else wants: the trainer and the app keep their speed while it
works. It dies with its parent: a parent-death signal where the starting
thread is the parent's main thread, and a watch on the parent's pid in any
case; either kills its whole process group (the C++ compiler it runs too).

Reads its job as a pickled dict on stdin; writes the package by rename (a
reader never sees half a file); on failure the last line of its stderr says
why, as `Type: first line of the message`.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _lower_priority() -> None:
    try:
        os.nice(19)
    except OSError:
        pass
    try:   # below every nice level: only idle CPU time
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _die(*_args) -> None:
    try:
        if os.getpgrp() == os.getpid():   # a group of its own: the compiler's processes too
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(1)


def _die_with(parent: int, death_signal: bool) -> None:
    """End (with the process group) when `parent` is gone."""
    signal.signal(signal.SIGTERM, _die)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # the parent decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if death_signal:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        _die()

    if os.getppid() != parent:   # gone before the signal was asked for
        _die()
    threading.Thread(target=watch, daemon=True, name="traintop-parent-watch").start()


def build(job: dict) -> None:
    import torch

    torch.set_num_threads(job["threads"])   # the kernels' thread count is fixed at compile time
    from traintop.engine.steps.batched_graph import plain_step

    plan = job["plan"]
    R, B, block = plan.R, job["batch"], job["block"]
    dtype = getattr(torch, job["dtype"])
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn((R, plan.total), generator=gen, dtype=dtype) * 0.1
    flat_grad = torch.zeros((R, plan.total), dtype=dtype)
    running = []
    for blk in plan.blocks:
        if blk.gamma is not None:
            running += [torch.zeros(R * blk.fan_out, dtype=dtype),
                        torch.ones(R * blk.fan_out, dtype=dtype)]
    Xb = torch.randint(0, plan.vocab, (R, B, block), generator=gen)
    Yb = torch.randint(0, plan.vocab, (R, B), generator=gen)
    lr = torch.full((R, 1), 0.1, dtype=torch.float64)

    class Step(torch.nn.Module):
        def forward(self, flat, flat_grad, running, Xb, Yb, lr):
            return plain_step(plan, flat, flat_grad, running, Xb, Yb, lr)

    with torch.no_grad():
        program = torch.export.export(Step(), (flat, flat_grad, running, Xb, Yb, lr),
                                      strict=False)
        tmp = f"{job['path'][:-len('.pt2')]}.{os.getpid()}.tmp.pt2"
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=tmp)
            os.replace(tmp, job["path"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def main() -> None:
    _lower_priority()
    job = pickle.load(sys.stdin.buffer)
    _die_with(job["parent"], job["death_signal"])
    try:
        build(job)
    except BaseException as exc:  # noqa: BLE001 - the parent reads why from the last line
        lines = str(exc).strip().splitlines()
        sys.stderr.write(f"\n{type(exc).__name__}: {lines[0] if lines else ''}\n")
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)   # no teardown: the package is written


if __name__ == "__main__":
    main()
