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
- first_frame_cpu_s, first_step_cpu_s: CPU seconds the UI process and the
  busiest process under it (the trainer child) had used by then: on a
  machine shared with other work the wall times stretch, these do not;
- bytes_per_sec: bytes written from --skip seconds after spawn to the end
  (steady training, start-up excluded), and the same per window of 5 s;
- status_updates_per_sec: how often a new step count was written;
- loss_redraws_per_sec: frames (bursts of output) that write inside the
  loss pane's place on the default first screen (the left two thirds of the
  top half; panes repaint only their changed lines, so no fixed text marks
  a redraw);
- bytes_per_sec_by_area: where the steady bytes go, by the screen area the
  cursor was moved to (status line, footer, top half left/right, bottom
  half left/right), to find what to cut.

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
MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")          # cursor to row;col (1-based)
WINDOW_S = 5.0
FRAME_GAP_S = 0.03    # output further apart than this starts a new frame


def area(row: int, col: int, cols: int, rows: int) -> str:
    if row == rows:
        return "footer"
    if row == rows - 1:
        return "status line"
    half = "top" if row <= 2 + (rows - 4) // 2 else "bottom"
    if row <= 2:
        return "tabs"
    return f"{half} {'left' if col <= cols * 2 // 3 else 'right'}"


def by_area(chunks, cols: int, rows: int) -> dict[str, int]:
    """Bytes per screen area: each run of output is counted where the cursor
    move before it pointed."""
    out: dict[str, int] = {}
    where = "other"
    for _, data in chunks:
        last = 0
        for m in MOVE.finditer(data):
            out[where] = out.get(where, 0) + m.start() - last
            where, last = area(int(m.group(1)), int(m.group(2)), cols, rows), m.start()
        out[where] = out.get(where, 0) + len(data) - last
    return out


def loss_frames(chunks, cols: int, rows: int) -> int:
    """Frames with a write in the loss pane's place (top half, left two thirds,
    below the tabs and the pane's border)."""
    frames, last_t, hit = 0, -1.0, False
    for t, data in chunks:
        if t - last_t > FRAME_GAP_S:
            frames += hit
            hit = False
        last_t = t
        for m in MOVE.finditer(data):
            row, col = int(m.group(1)), int(m.group(2))
            if 4 <= row <= 2 + (rows - 4) // 2 and col < cols * 2 // 3 - 1:
                hit = True
    return frames + hit


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


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in descendants(k)]


def record(fd: int, seconds: float, start: float, pid: int | None = None,
           cpu: list | None = None) -> list[tuple[float, bytes]]:
    """(seconds since start, bytes) of every read, until `seconds` have passed;
    with `pid`, `cpu` gets (seconds, CPU seconds of pid, the most CPU seconds
    of any one process under it) at each read of the first 20 s."""
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
        if pid is not None and chunks[-1][0] < 20:
            kids = [cpu_seconds(k) for k in descendants(pid)]
            cpu.append((chunks[-1][0], cpu_seconds(pid), max(kids, default=0.0)))
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
    cpu: list = []
    try:
        chunks = record(fd, seconds, start, pid, cpu)
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
    # CPU seconds spent by then: what the start-up costs where no other
    # process takes the cores (the UI process; the busiest process under it,
    # the trainer child)
    for key in ("first_frame_s", "first_step_s"):
        at = [(ui, child) for t, ui, child in cpu if t <= (out[key] or -1)]
        out[key[:-2] + "_cpu_s"] = {"ui": at[-1][0], "trainer": at[-1][1]} \
            if at else None
    steps = []
    for t, data in steady:
        for m in STEP.findall(data):
            steps.append((t, int(m.replace(b",", b""))))
    changes = sum(1 for a, b in zip(steps, steps[1:]) if b[1] != a[1])
    out["status_updates_per_sec"] = round(changes / span, 2)
    out["loss_redraws_per_sec"] = round(loss_frames(steady, cols, rows) / span, 2)
    out["bytes_per_sec_by_area"] = {k: round(v / span) for k, v in
                                    sorted(by_area(steady, cols, rows).items())}
    out["last_step"] = steps[-1][1] if steps else None
    return out


def _drain(fd: int) -> None:
    try:
        os.read(fd, 65536)
    except OSError:
        pass


def precompile() -> None:
    """Write traintop's bytecode, as `pip install` does for a wheel. An editable
    install under PYTHONDONTWRITEBYTECODE (set on the project's machines)
    would otherwise compile ~40 modules from source at every start (~0.08 s),
    a cost no user's installed copy pays."""
    import compileall
    import importlib

    for name in ("traintop", "traintop.engine", "traintop.data", "traintop.tui"):
        folder = Path(importlib.import_module(name).__file__).parent
        compileall.compile_dir(str(folder), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40", help="COLSxROWS (default 120x40)")
    parser.add_argument("--seconds", type=float, default=30.0, help="recorded (default 30)")
    parser.add_argument("--skip", type=float, default=10.0,
                        help="start-up seconds left out of bytes/s (default 10)")
    parser.add_argument("--other", action="store_true",
                        help="COMMAND is not traintop: bytes only")
    parser.add_argument("--no-precompile", action="store_true",
                        help="leave traintop's bytecode as it is (see precompile)")
    parser.add_argument("command", nargs="*", help="default: traintop beside this python")
    args = parser.parse_args()
    if not args.other and not args.no_precompile:
        precompile()
    cols, rows = (int(v) for v in args.size.lower().split("x"))
    command = args.command or [str(Path(sys.executable).with_name("traintop"))]
    if shutil.which(command[0]) is None:
        parser.error(f"{command[0]}: not found")
    print(json.dumps(measure(command, cols, rows, args.seconds, args.skip, args.other),
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
