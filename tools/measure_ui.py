"""Measure the live app against the issue's targets (run by hand, not in tests).

    python tools/measure_ui.py [--seconds 30] [--steps 20000] [--size 120x40] [--repeats 3]

1. headless `traintop run --steps N` steps/s (startup subtracted via a
   --steps 0 run), before and after each live run (the machine may be shared);
2. the live app in a real terminal (tmux, --size): the trainer child's steps/s
   over the window (steps read from the status line) per wall second and per
   CPU second of the trainer process (the machine may be shared: CPU time
   says what the trainer costs, wall time what it got), key-to-screen latency (`]`/`[` sent with tmux send-keys,
   the status line polled with capture-pane until the new lr shows), pane
   redraws per second, and the UI process's CPU (utime+stime from /proc).

Prints one JSON document. Needs tmux.
"""

from __future__ import annotations

import argparse
import json
import resource
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LR = re.compile(r"· lr (\S+) ·")
STEP = re.compile(r"step ([\d,]+) ·")


def headless_rate(steps: int) -> dict:
    """Wall and CPU steps/s of `traintop run`, its start-up subtracted."""
    def timed(n: int) -> tuple[float, float]:
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "traintop", "run", "--steps", str(n), "--json"],
                       cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        return time.perf_counter() - start, cpu
    wall0, cpu0 = timed(0)
    wall, cpu = timed(steps)
    return {"wall": steps / (wall - wall0), "cpu": steps / (cpu - cpu0)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def screen_step(screen: str) -> int:
    return int(STEP.search(screen).group(1).replace(",", ""))


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def inner(out: str) -> int:
    """The app as `traintop` runs it, writing its counters at exit."""
    from traintop.engine.config import TrainConfig
    from traintop.engine.live.session import LiveSession, SessionSpec
    from traintop.tui.app import TraintopApp

    session = LiveSession(SessionSpec(config=TrainConfig()))

    class Measured(TraintopApp):
        # Textual calls TraintopApp's own on_mount/on_unmount as well (it
        # walks the MRO), so these must not call super(): that would start
        # every redraw timer twice.
        def on_mount(self) -> None:
            self.t0 = time.perf_counter()
            self.counts0 = None
            self.set_timer(5.0, self.mark_start)   # past start-up

        def mark_start(self) -> None:
            self.t0 = time.perf_counter()
            self.counts0 = self.counts()

        def counts(self) -> dict:
            return {"loss": self.loss.redraws, "ratio": self.ratio.redraws,
                    "saturation": self.saturation.redraws, "tick": self.state.history.tick}

        def on_unmount(self) -> None:
            elapsed = time.perf_counter() - self.t0
            end = self.counts()
            begin = self.counts0 or {k: 0 for k in end}
            Path(out).write_text(json.dumps({
                "seconds": elapsed,
                "trainer_steps_per_sec": (end["tick"] - begin["tick"]) / elapsed,
                "redraws_per_sec": {k: (end[k] - begin[k]) / elapsed for k in end
                                    if k != "tick"},
            }))

    app = Measured(session)
    try:
        app.run()
    finally:
        session.close()
    return 0


def outer(args) -> dict:
    """Alternate headless and live runs: the machine may be shared, so each
    live run is compared with the headless runs just before and after it."""
    rows = []
    headless = [headless_rate(args.steps)]
    for _ in range(args.repeats):
        live = live_run(args)
        headless.append(headless_rate(args.steps))
        before, after = headless[-2], headless[-1]
        live["live_vs_headless"] = {
            k: live["trainer_steps_per_sec"][k] / ((before[k] + after[k]) / 2)
            for k in ("wall", "cpu")}
        rows.append(live)
    ratios = {k: sorted(r["live_vs_headless"][k] for r in rows) for k in ("wall", "cpu")}
    latencies = sorted(x for r in rows for x in r["key_to_screen_ms"])
    return {
        "size": args.size,
        "machine_cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "headless_steps_per_sec": headless,
        "runs": rows,
        "live_vs_headless_median": {k: v[len(v) // 2] for k, v in ratios.items()},
        "key_to_screen_ms_median": latencies[len(latencies) // 2],
        "key_to_screen_ms_p90": latencies[int(len(latencies) * 0.9)],
    }


def live_run(args) -> dict:
    width, height = args.size.split("x")
    tmp = Path(tempfile.mkdtemp())
    out = tmp / "inner.json"
    socket = f"traintop-measure-{os.getpid()}"

    def tmux(*a: str) -> str:
        return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *a], check=True,
                              capture_output=True, text=True).stdout

    before = headless_rate(args.steps)
    command = f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} {__file__} --inner {out}"
    tmux("new-session", "-d", "-s", "m", "-x", width, "-y", height, command)
    try:
        shell = int(tmux("display-message", "-p", "-t", "m", "#{pane_pid}").strip())
        time.sleep(1.0)
        app_pid = next(p for p in [shell, *children(shell)] if "--inner" in cmdline(p))
        while not STEP.search(tmux("capture-pane", "-p", "-t", "m")):
            time.sleep(0.2)
        time.sleep(5.0)
        trainer_pid = next(p for p in children(app_pid) if "spawn_main" in cmdline(p)
                           and "resource_tracker" not in cmdline(p))
        step0 = screen_step(tmux("capture-pane", "-p", "-t", "m"))
        cpu0, t0 = cpu_seconds(app_pid), time.perf_counter()
        tcpu0 = cpu_seconds(trainer_pid)
        latencies = []
        for k in range(10):
            screen = tmux("capture-pane", "-p", "-t", "m")
            lr = LR.search(screen).group(1)
            sent = time.perf_counter()
            tmux("send-keys", "-t", "m", "]" if k % 2 == 0 else "[")
            while True:
                m = LR.search(tmux("capture-pane", "-p", "-t", "m"))
                if m and m.group(1) != lr:
                    latencies.append(time.perf_counter() - sent)
                    break
                if time.perf_counter() - sent > 5:
                    latencies.append(float("inf"))
                    break
            time.sleep(1.0)
        remaining = args.seconds - (time.perf_counter() - t0)
        time.sleep(max(0.0, remaining))
        wall = time.perf_counter() - t0
        cpu = (cpu_seconds(app_pid) - cpu0) / wall
        steps = screen_step(tmux("capture-pane", "-p", "-t", "m")) - step0
        trainer = {"wall": steps / wall, "cpu": steps / (cpu_seconds(trainer_pid) - tcpu0)}
        tmux("send-keys", "-t", "m", "q")
        deadline = time.monotonic() + 20
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    return {
        "live": json.loads(out.read_text()),
        "key_to_screen_ms": [1000 * x for x in latencies],
        "ui_process_cpu_cores": cpu,
        "trainer_steps_per_sec": trainer,
    }

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return inner(args.inner)
    print(json.dumps(outer(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
