"""Measure the start of the lecture's run in the live app: the default
engine against `--engine fast`, side by side (run by hand, not in tests).

    python tools/measure_start.py [--seconds 30] [--repeats 3] [--size 120x40]
                                  [--variants fast,cold,warm] [--json]

Each repeat opens the real app (`traintop`, the lecture's default run) in a
tmux terminal once per variant, one after another (with --together: each
variant at the same time as a `fast` app of its own, so that whatever else
loads the machine loads both alike):

- `fast`: `--engine fast`; `fast2` the same again: how far two runs of one
  engine differ on this machine now (the noise floor of every ratio);
- `cold`: the default engine with an empty package cache (TRAINTOP_AOT_CACHE
  pointed at a fresh folder): the first start on a machine, compiling;
- `warm`: the default engine with the package cache as the machine has it
  (the start of every later run, once one run got as far as its switch);
- `switch`: the default engine with an empty package cache, into which the
  package `warm` uses is copied --switch-at seconds after the first step: the
  trainer takes a package another process wrote as it takes its own compile
  process's (which it then ends), so this is the switch in the app at a
  chosen moment, also where the machine has no idle time for the compile;
- `thread`: the default engine with TRAINTOP_AUTO_COMPILE=thread (the
  compile on a thread of the trainer, as before the handover), inductor's
  disk cache as the machine has it; for comparison.

From the first step on the status line, for `--seconds`, it samples the
status line's step count (tmux capture-pane, every 0.1 s; every 0.02 s while
a key waits for its answer), sends `]` and `[` in turn every 2.5 s and times
each until the status line shows the new learning rate, and watches the
trainer process's memory map for the moment it maps an inductor library
(the switch to the compiled step). Prints, per second from the first step,
each variant's steps/s and its ratio to `fast` of the same repeat; then per
variant the minimum ratio over the window (against the same second of
`fast`, and against `fast`'s median second), the longest time the step
count stood still (over the window and within 2 s of the switch), the key
latencies, and the uptime load average. Needs tmux.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the status line (a pane's title may say "step 1,800 · ..." too)
STEP = re.compile(r"^\s*(?:\S+ )?step ([\d,]+) · lr ", re.MULTILINE)
LR = re.compile(r"^\s*(?:\S+ )?step [\d,]+ · lr (\S+) ·", re.MULTILINE)
KEY_EVERY = 2.5     # seconds between two lr keys
KEY_TIMEOUT = 5.0
WINDOW = 5          # seconds: ratios over windows this long as well as per second


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def maps_inductor(pid: int) -> bool:
    """Whether the process has mapped a library inductor compiled (the switch)."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any(line.endswith(".so") and ("aotinductor" in line or "torchinductor" in line)
               for line in text.splitlines())


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0 where it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compile_processes(pid: int | None) -> list[int]:
    return [p for p in descendants(pid) if "aot_build" in cmdline(p)] if pid else []


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_run(variant: str, args, cold_dir: Path) -> dict:
    width, height = args.size.split("x")
    socket = f"traintop-start-{os.getpid()}-{variant}"
    env = {"PYTHONPATH": str(ROOT)}
    engine = []
    if variant in ("fast", "fast2"):
        engine = ["--engine", "fast"]
    elif variant in ("cold", "switch"):
        shutil.rmtree(cold_dir, ignore_errors=True)
        cold_dir.mkdir(parents=True)
        env["TRAINTOP_AOT_CACHE"] = str(cold_dir)
    elif variant == "thread":
        env["TRAINTOP_AUTO_COMPILE"] = "thread"
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    command = (f"cd {ROOT} && env {exports} {sys.executable} -m traintop {' '.join(engine)}")

    def tmux(*a: str) -> str:
        return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *a], check=True,
                              capture_output=True, text=True).stdout

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "m")

    launched = time.perf_counter()
    tmux("new-session", "-d", "-s", "m", "-x", width, "-y", height, command)
    samples: list[tuple[float, int]] = []
    latencies: list[float] = []
    switch_at = None
    left: list[str] = []
    trainer_cpu = 0.0
    compile_cpu: dict[int, float] = {}
    try:
        shell = int(tmux("display-message", "-p", "-t", "m", "#{pane_pid}").strip())
        while True:
            m = STEP.search(screen())
            if m and int(m.group(1).replace(",", "")) > 0:
                break
            if time.perf_counter() - launched > 120:
                raise RuntimeError(f"{variant}: no step on screen after 120 s")
            time.sleep(0.05)
        t0 = time.perf_counter()
        first_step_s = t0 - launched
        tree = descendants(shell)
        trainer = next((p for p in tree if "spawn_main" in cmdline(p)
                        and "resource_tracker" not in cmdline(p)), None)
        trainer_cpu0 = cpu_seconds(trainer)
        compile_cpu = {}
        next_key = t0 + 1.0
        key_sent = None
        key_lr = None
        k = 0
        copied = False
        while True:
            now = time.perf_counter()
            if now - t0 > args.seconds + (3 if args.together else 0):   # room to align
                break
            text = screen()
            now = time.perf_counter()
            m = STEP.search(text)
            if m:
                samples.append((now - t0, int(m.group(1).replace(",", ""))))
            lr = LR.search(text)
            if key_sent is not None:
                if lr and lr.group(1) != key_lr:
                    latencies.append(now - key_sent)
                    key_sent = None
                elif now - key_sent > KEY_TIMEOUT:
                    latencies.append(float("inf"))
                    key_sent = None
            elif now >= next_key and lr:
                key_lr = lr.group(1)
                tmux("send-keys", "-t", "m", "]" if k % 2 == 0 else "[")
                key_sent = time.perf_counter()
                k += 1
                next_key = key_sent + KEY_EVERY
            if variant == "switch" and not copied and now - t0 >= args.switch_at:
                package = warm_package()
                tmp = cold_dir / "copying.tmp"
                shutil.copyfile(package, tmp)
                os.replace(tmp, cold_dir / package.name)
                copied = True
            if switch_at is None and trainer is not None and maps_inductor(trainer):
                switch_at = now - t0
            for p in compile_processes(trainer):
                compile_cpu[p] = cpu_seconds(p)
            time.sleep(0.02 if key_sent is not None else 0.1)
        trainer_cpu = cpu_seconds(trainer) - trainer_cpu0
        tmux("send-keys", "-t", "m", "q")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in tree):
            time.sleep(0.1)
        left = [f"{p} {cmdline(p)[:80]}" for p in tree if os.path.exists(f"/proc/{p}")
                and cmdline(p)]
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    return {"variant": variant, "first_step_s": first_step_s, "samples": samples, "t0": t0,
            "key_latency_s": latencies, "switch_s": switch_at, "left_after_quit": left,
            "trainer_cpu_s": trainer_cpu, "compile_cpu_s": sum(compile_cpu.values()),
            "load": load()}


_warm: Path | None = None


def warm_package() -> Path:
    """The package of the lecture's run in the machine's cache (compiled
    now, at idle priority, where it is not there yet)."""
    global _warm
    if _warm is None:
        import torch

        from traintop.engine.config import TrainConfig
        from traintop.engine.model.stack import build_stack
        from traintop.engine.steps import handover
        from traintop.engine.steps.compiled import single_plan
        from traintop.engine.steps.fast import FastStep
        from traintop.engine.training.threads import choose_threads

        config = TrainConfig().validated()
        threads = choose_threads(config)
        torch.set_num_threads(threads)
        fast = FastStep(build_stack(config, 27, torch.Generator().manual_seed(0)),
                        config.batch_size, torch.device("cpu"))
        plan = single_plan(fast)
        build = handover.request(plan, config.batch_size, config.block_size, fast.flat.dtype,
                                 threads)
        if not build.wait(1800) or build.error:
            raise RuntimeError(f"no package for the lecture's run: {build.error}")
        _warm = build.path
    return _warm


def per_second(samples: list[tuple[float, int]], seconds: int) -> list[float]:
    """Steps in each whole second from the first step, interpolated between samples."""
    def at(t: float) -> float:
        prev = samples[0]
        for s in samples:
            if s[0] >= t:
                if s[0] == prev[0]:
                    return s[1]
                return prev[1] + (s[1] - prev[1]) * (t - prev[0]) / (s[0] - prev[0])
            prev = s
        return samples[-1][1]
    counts = [at(float(k)) for k in range(seconds + 1)]
    return [b - a for a, b in zip(counts, counts[1:])]


def longest_still(samples: list[tuple[float, int]], lo: float = 0.0,
                  hi: float = float("inf")) -> float:
    """The longest time the step count stood still between samples in [lo, hi]:
    from the first sample of a value to the first sample of the next."""
    best, since, value = 0.0, None, None
    for t, s in samples:
        if s != value:
            if since is not None and lo <= t and since <= hi:
                best = max(best, t - since)
            since, value = t, s
    return best


def summarise(runs: list[dict], seconds: int) -> dict:
    by_repeat: dict[int, dict[str, dict]] = {}
    for r in runs:
        by_repeat.setdefault(r["repeat"], {})[r["variant"]] = r
    out: dict = {"repeats": []}
    for rep, variants in by_repeat.items():
        # side by side at the same time: the same seconds of the clock, from
        # the later of their first steps
        start = max(r["t0"] for r in variants.values())
        for r in variants.values():
            shift = start - r["t0"]
            r["samples"] = [(t - shift, n) for t, n in r["samples"] if t >= shift] \
                if shift and len(variants) == 2 and "beside" in str(rep) else r["samples"]
            if r["switch_s"] is not None and shift and "beside" in str(rep):
                r["switch_s"] -= shift
        fast = per_second(variants["fast"]["samples"], seconds)
        fast_median = statistics.median(fast)
        row = {"repeat": rep, "fast_steps_per_s": fast, "variants": {}}
        for name, r in variants.items():
            rates = per_second(r["samples"], seconds)
            ratio = [a / b if b else float("nan") for a, b in zip(rates, fast)]
            sw = r["switch_s"]
            w = WINDOW
            windows = [sum(rates[k:k + w]) / sum(fast[k:k + w]) if sum(fast[k:k + w]) else
                       float("nan") for k in range(0, seconds - w + 1, w)]
            row["variants"][name] = {
                "steps_per_s": rates,
                "ratio_to_fast": ratio,
                "min_ratio": min(ratio),
                "min_ratio_5s": min(windows),
                "min_ratio_to_fast_median": min(rates) / fast_median if fast_median else
                float("nan"),
                "mean_steps_per_s": sum(rates) / len(rates),
                "first_step_s": r["first_step_s"],
                "switch_s": sw,
                "longest_still_s": longest_still(r["samples"], 0, seconds),
                "longest_still_at_switch_s": (longest_still(r["samples"], sw - 2, sw + 2)
                                              if sw is not None else None),
                "key_latency_s": r["key_latency_s"],
                "trainer_cpu_s": r["trainer_cpu_s"],
                "compile_cpu_s": r["compile_cpu_s"],
                "left_after_quit": r["left_after_quit"],
                "load": r["load"],
            }
        out["repeats"].append(row)
    return out


def print_table(summary: dict, seconds: int) -> None:
    for row in summary["repeats"]:
        names = list(row["variants"])
        print(f"\nrepeat {row['repeat']}: steps/s per second from the first step "
              f"(ratio to fast of the same second)")
        print("  s " + "".join(f"{n:>16}" for n in names))
        for k in range(seconds):
            cells = []
            for n in names:
                v = row["variants"][n]
                rate = v["steps_per_s"][k]
                cells.append(f"{rate:8.0f}" + ("        " if n == "fast" else
                                               f" ({v['ratio_to_fast'][k]:4.2f})"))
            print(f"{k:3d} " + "".join(f"{c:>16}" for c in cells))
        for n in names:
            v = row["variants"][n]
            lat = [x for x in v["key_latency_s"]]
            sw = "-" if v["switch_s"] is None else f"{v['switch_s']:.1f} s"
            at_sw = "-" if v["longest_still_at_switch_s"] is None \
                else f"{v['longest_still_at_switch_s']:.2f} s"
            print(f"  {n}: mean {v['mean_steps_per_s']:.0f} steps/s, min ratio "
                  f"{v['min_ratio']:.2f} (over {WINDOW} s windows {v['min_ratio_5s']:.2f}; to "
                  f"fast's median second {v['min_ratio_to_fast_median']:.2f}),"
                  f" trainer CPU {v['trainer_cpu_s']:.1f} s, compile process CPU "
                  f"{v['compile_cpu_s']:.1f} s,"
                  f" first step at {v['first_step_s']:.1f} s, switch at {sw}, longest still "
                  f"{v['longest_still_s']:.2f} s (at the switch {at_sw}), keys "
                  f"{len(lat)} max {max(lat) if lat else float('nan'):.2f} s median "
                  f"{statistics.median(lat) if lat else float('nan'):.2f} s, load {v['load']}"
                  + (f", LEFT: {v['left_after_quit']}" if v["left_after_quit"] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--variants", default="fast,cold,warm",
                        help="comma-separated: fast (always run), fast2, cold, warm, switch, thread")
    parser.add_argument("--switch-at", type=float, default=10.0,
                        help="seconds after the first step the `switch` variant gets its package")
    parser.add_argument("--together", action="store_true",
                        help="run each variant at the same time as a fast run of its own (two "
                             "apps share the machine, but its other load hits both alike)")
    parser.add_argument("--json", action="store_true", help="also print every sample")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("measure_start: needs tmux", file=sys.stderr)
        return 2
    variants = ["fast"] + [v for v in args.variants.split(",") if v and v != "fast"]
    cold_dir = Path(tempfile.mkdtemp(prefix="traintop-aot-cold-"))
    if "switch" in variants or "warm" in variants:
        print(f"lecture's package: {warm_package()}", flush=True)
    runs = []
    print(f"uptime load at start: {load()}  cores: {os.cpu_count()}", flush=True)
    try:
        for rep in range(args.repeats):
            if args.together:   # each variant beside a fast run of its own, at the same time
                for v in variants[1:]:
                    pair: dict[str, dict] = {}
                    threads = [threading.Thread(target=lambda n=n: pair.__setitem__(
                        n, one_run(n, args, cold_dir))) for n in ("fast", v)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    for n, r in pair.items():
                        r["repeat"] = f"{rep} ({v} beside fast)"
                        runs.append(r)
                        print(f"  repeat {rep} {n} beside {v}: {r['samples'][-1][1]:,} steps in "
                              f"{args.seconds} s, load {r['load']}", flush=True)
                continue
            for v in variants:
                r = one_run(v, args, cold_dir)
                r["repeat"] = rep
                runs.append(r)
                print(f"  repeat {rep} {v}: {r['samples'][-1][1] if r['samples'] else 0:,} steps"
                      f" in {args.seconds} s, load {r['load']}", flush=True)
    finally:
        shutil.rmtree(cold_dir, ignore_errors=True)
    summary = summarise(runs, args.seconds)
    print_table(summary, args.seconds)
    mins = {}
    for row in summary["repeats"]:
        for n, v in row["variants"].items():
            mins.setdefault(n, []).append(v)
    print("\nover repeats (min / median):")
    for n, vs in mins.items():
        def mm(key):
            xs = [v[key] for v in vs if v[key] is not None]
            return f"{min(xs):.2f} / {statistics.median(xs):.2f}" if xs else "-"
        lat = [x for v in vs for x in v["key_latency_s"]]
        print(f"  {n}: min ratio {mm('min_ratio')}, over {WINDOW} s windows {mm('min_ratio_5s')}, "
              f"to fast's median {mm('min_ratio_to_fast_median')}, "
              f"mean steps/s {mm('mean_steps_per_s')}, longest still {mm('longest_still_s')} s, "
              f"at the switch {mm('longest_still_at_switch_s')} s, key latency max "
              f"{max(lat) if lat else float('nan'):.2f} s")
    print(f"uptime load at end: {load()}")
    if args.json:
        print(json.dumps({"runs": runs, "summary": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
