"""The auto engine's compile process (traintop.engine.steps.handover): it
runs at idle priority, never outlives the trainer (exit, kill -9, a compile
in the middle), and the trainer takes its package over without a stall,
computing what the fast engine computes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from traintop.engine.config import TrainConfig
from traintop.engine.steps import handover
from traintop.engine.training.trainer import Trainer
from helpers.compare import close

# A stand-in for the compile: the real process's priority and parent watch,
# then a grandchild (as the C++ compiler is) and a long wait.
FAKE_BUILD = textwrap.dedent("""
    import pickle, subprocess, sys, time
    from traintop.engine.steps import aot_build
    aot_build._lower_priority()
    job = pickle.load(sys.stdin.buffer)
    aot_build._die_with(job["parent"], job["death_signal"])
    subprocess.Popen(["sleep", "60"])
    print("started", flush=True)
    time.sleep(60)
""")

# The trainer's side: ask for a package (the fake compile), say the pids, then
# end as asked: "exit" (a normal exit), "os_exit" (exit_now_if_compiling's
# way out) or "wait" (until the test kills it).
PARENT = textwrap.dedent("""
    import os, sys, time
    import torch
    from traintop.engine.steps import handover
    from traintop.engine.steps.compiled import exit_now_if_compiling
    handover.BUILD_COMMAND = [sys.executable, "-c", sys.argv[2]]
    build = handover.request(("plan", time.time()), 32, 3, torch.float32, 1)
    time.sleep(1.5)
    print(build.process.pid, flush=True)
    sys.stdin.readline()   # the test has looked at the processes
    how = sys.argv[1]
    if how == "os_exit":
        exit_now_if_compiling(0)
    elif how == "wait":
        time.sleep(60)
""")


def _group(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                    if fields[0] != "Z":
                        out.append(int(entry))
            except (OSError, ProcessLookupError):
                pass
    return out


@pytest.mark.parametrize("how", ["exit", "os_exit", "kill"])
def test_the_compile_process_never_outlives_its_trainer(tmp_path, how):
    env = dict(os.environ, TRAINTOP_AOT_CACHE=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "wait" if how == "kill" else how,
                               FAKE_BUILD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        build_pid = int(parent.stdout.readline())
        group = _group(build_pid)   # the compile process leads its own group
        assert build_pid in group and len(group) == 2   # it and its "compiler"
        # idle priority: it takes only CPU time nobody else wants
        assert (os.sched_getscheduler(build_pid) == os.SCHED_IDLE
                or os.getpriority(os.PRIO_PROCESS, build_pid) == 19)
        if how == "kill":
            parent.kill()
        else:
            parent.stdin.write("go\n")
            parent.stdin.flush()
        parent.wait(20)
        deadline = time.monotonic() + 3
        while _group(build_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group(build_pid) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_failed_compile_says_why_and_the_run_stays_fast(small_dataset, monkeypatch, tmp_path):
    monkeypatch.setattr(handover, "BUILD_COMMAND", [
        sys.executable, "-c", "import sys; sys.stderr.write('OSError: no room\\n'); sys.exit(1)"])
    monkeypatch.setenv(handover.CACHE_ENV, str(tmp_path))
    config = TrainConfig(n_hidden=40, steps=100_000).validated()
    auto, fast = (Trainer(config, small_dataset, engine=e) for e in ("auto", "fast"))
    assert auto.compiled.wait(60)
    for _ in range(3):
        assert auto.step().loss == fast.step().loss
    assert auto.engine_now == "fast" and auto.compiled.error == "OSError: no room"


def test_off_never_compiles(small_dataset, monkeypatch):
    monkeypatch.setenv(handover.MODE_ENV, "off")
    config = TrainConfig(n_hidden=40, steps=100_000).validated()
    assert Trainer(config, small_dataset, engine="auto").compiled is None


def test_the_switch_loads_the_package_in_one_short_step(small_dataset, one_thread):
    """One package build (seconds, once per machine: later runs find it on
    disk); the step that takes it over costs milliseconds (no compiler runs
    in the trainer's process), and the compiled steps compute the fast
    engine's figures."""
    config = TrainConfig(n_hidden=40, steps=100_000, stats_every=10).validated()
    auto, fast = (Trainer(config, small_dataset, engine=e) for e in ("auto", "fast"))
    c = auto.compiled
    if c._build is not None:     # not on disk yet: let it compile
        assert c._build.wait(600)
    times = []   # CPU time of each step (the machine may be shared: wall time waits for it)
    for step in range(1, 31):
        start = time.thread_time()
        a = auto.step()
        times.append(time.thread_time() - start)
        f = fast.step()
        assert close(a.loss, f.loss, 1e-4)
        assert all(abs(x - y) < 1e-3 for x, y in zip(a.update_ratio_log10, f.update_ratio_log10))
        assert (a.stats is None) == (f.stats is None)
    assert auto.engine_now == "compiled" and c.compiled is True and c.error is None
    assert max(times) < 0.1, times
    # the loader unpacked the package into a folder of ours, already removed
    assert not any(p.name.startswith("traintop-aoti-") for p in Path(tempfile.gettempdir()).iterdir())
    for p, q in zip(auto.stack.params, fast.stack.params):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)
    for (_, a), (_, b) in zip(auto.stack.batchnorms(), fast.stack.batchnorms()):
        assert torch.allclose(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-5)
        assert torch.allclose(a.running_var, b.running_var, rtol=1e-4, atol=1e-5)


def test_a_held_compile_starts_only_when_the_run_is_idle(small_dataset, monkeypatch, tmp_path):
    """Where no core is free (the app on 2 cores) the compile is held: the run
    steps on the fast engine with no compile process beside it, and the
    compile starts when the run pauses or ends (the runner's on_idle)."""
    marker = tmp_path / "started"
    monkeypatch.setattr(handover, "BUILD_COMMAND", [
        sys.executable, "-c", f"open({str(marker)!r}, 'w').close(); import sys; sys.exit(1)"])
    monkeypatch.setenv(handover.CACHE_ENV, str(tmp_path))
    handover.hold(True)
    try:
        config = TrainConfig(n_hidden=40, steps=100_000).validated()
        auto = Trainer(config, small_dataset, engine="auto")
        for _ in range(20):
            auto.step()
        build = auto.compiled._build
        assert build.held and build.process is None and not handover.compiling()
        assert not auto.compiled.ready and not marker.exists()
        handover.start_held()
        assert build.process is not None and not build.held
        assert auto.compiled.wait(60) and marker.exists()
        assert auto.engine_now == "fast"    # the stand-in compile failed: the run stays fast
    finally:
        handover.hold(False)


def test_the_app_holds_compiles_on_a_machine_without_a_free_core(monkeypatch):
    from traintop.engine.live import child

    monkeypatch.delenv(handover.MODE_ENV, raising=False)
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
        assert child.hold_compiles_without_a_free_core() and handover._hold
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
        assert not child.hold_compiles_without_a_free_core() and not handover._hold
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
        monkeypatch.setenv(handover.MODE_ENV, "process")   # asked for beside the run
        assert not child.hold_compiles_without_a_free_core()
    finally:
        handover.hold(False)


def test_the_runner_calls_on_idle_when_the_run_pauses(tmp_path):
    import queue as queue_module
    import threading

    from traintop.engine.feed.messages import Command
    from traintop.engine.live.child import build
    from traintop.engine.live.runner import Runner
    from traintop.engine.live.spec import SessionSpec
    from tui_fakes import write_words

    spec = SessionSpec(config=TrainConfig(n_hidden=16, steps=1_000_000),
                       data=str(write_words(tmp_path / "w.txt")), engine="fast", threads=1)
    idle = []
    commands, messages = queue_module.Queue(), queue_module.Queue()
    messages.close = messages.cancel_join_thread = lambda: None
    runner = Runner(build(spec), spec, commands, messages, os.getppid(),
                    on_idle=lambda: idle.append(runner.trainer.steps_done))
    thread = threading.Thread(target=runner.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while runner.trainer.steps_done < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert idle == []                       # stepping: no idle time
    commands.put(Command("pause"))
    while not idle and time.monotonic() < deadline:
        time.sleep(0.02)
    commands.put(Command("quit"))
    thread.join(10)
    assert len(idle) == 1 and idle[0] >= 50
