"""What the app costs a terminal: bytes per second, start-up, refresh rates.

    python tools/measure_terminal.py [--size 120x40] [--seconds 30] [--skip 10]
                                     [-- COMMAND ...]

Runs COMMAND (default: this checkout's `traintop`) in a pseudo-terminal of
--size, as `script` would record it, and reads every byte it writes, with
the time each arrived. Prints one JSON document:

- first_frame_s: spawn to the first frame (the first output holding the
  status line, "waiting for the run to start" or "step N ·", painted with
  the first full frame);
- first_step_s: spawn to the first "step N" with N >= 1 on the status line;
- bytes_per_sec: bytes written from --skip seconds after spawn to the end
  (steady training, start-up excluded), and the same per window of 5 s;
- status_updates_per_sec: how often a new step count was written;
- loss_redraws_per_sec: how often the loss pane's title ("log10 loss") was
  written: a plot widget is repainted whole, title included.

With --other, COMMAND is any program (btop, top, htop) and only the byte
figures mean something. Nothing here is a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(rb"step ([\d,]+) \xc2\xb7")   # "step 1,234 ·" in UTF-8
WINDOW_S = 5.0


def spawn(command: list[str], cols: int, rows: int) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:   # the child: the pty is its terminal
        os.environ.update(TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return pid, fd


def record(fd: int, seconds: float, start: float) -> list[tuple[float, bytes]]:
    """(seconds since start, bytes) of every read, until `seconds` have passed."""
    chunks = []
    while (now := time.perf_counter()) - start < seconds:
        ready, _, _ = select.select([fd], [], [], min(0.1, seconds - (now - start)))
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:   # the program ended
            break
        if not data:
            break
        chunks.append((time.perf_counter() - start, data))
    return chunks


def first_time(chunks, test) -> float | None:
    seen = b""
    for t, data in chunks:
        seen = seen[-200:] + data        # a match may straddle two reads
        if test(seen):
            return t
    return None


def measure(command: list[str], cols: int, rows: int, seconds: float, skip: float,
            other: bool) -> dict:
    start = time.perf_counter()
    pid, fd = spawn(command, cols, rows)
    try:
        chunks = record(fd, seconds, start)
    finally:
        try:
            os.write(fd, b"q")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
                select.select([fd], [], [], 0.2) and _drain(fd)
            else:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)
    steady = [(t, d) for t, d in chunks if t >= skip]
    span = seconds - skip
    total = sum(len(d) for _, d in steady)
    windows = []
    t0 = skip
    while t0 + WINDOW_S <= seconds + 1e-9:
        windows.append(round(sum(len(d) for t, d in steady if t0 <= t < t0 + WINDOW_S)
                             / WINDOW_S))
        t0 += WINDOW_S
    out = {"command": " ".join(command), "size": f"{cols}x{rows}", "seconds": seconds,
           "skip_s": skip, "bytes_total": sum(len(d) for _, d in chunks),
           "bytes_per_sec": round(total / span), "bytes_per_sec_by_5s": windows}
    if other:
        return out
    out["first_frame_s"] = first_time(chunks, lambda s: b"waiting for the run" in s
                                      or STEP.search(s) is not None)
    out["first_step_s"] = first_time(
        chunks, lambda s: any(int(m.replace(b",", b"")) >= 1 for m in STEP.findall(s)))
    steps = []
    for t, data in steady:
        for m in STEP.findall(data):
            steps.append((t, int(m.replace(b",", b""))))
    changes = sum(1 for a, b in zip(steps, steps[1:]) if b[1] != a[1])
    out["status_updates_per_sec"] = round(changes / span, 2)
    out["loss_redraws_per_sec"] = round(sum(d.count(b"log10 loss") for _, d in steady) / span, 2)
    out["last_step"] = steps[-1][1] if steps else None
    return out


def _drain(fd: int) -> None:
    try:
        os.read(fd, 65536)
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40", help="COLSxROWS (default 120x40)")
    parser.add_argument("--seconds", type=float, default=30.0, help="recorded (default 30)")
    parser.add_argument("--skip", type=float, default=10.0,
                        help="start-up seconds left out of bytes/s (default 10)")
    parser.add_argument("--other", action="store_true",
                        help="COMMAND is not traintop: bytes only")
    parser.add_argument("command", nargs="*", help="default: traintop beside this python")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.lower().split("x"))
    command = args.command or [str(Path(sys.executable).with_name("traintop"))]
    if shutil.which(command[0]) is None:
        parser.error(f"{command[0]}: not found")
    print(json.dumps(measure(command, cols, rows, args.seconds, args.skip, args.other),
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
