"""`traintop bench`: steps/s of the engine against plain PyTorch loops.

Everything runs in one process on the same data. The loops are timed in
interleaved rounds (A B C D, A B C D, ...) after a warm-up, so a burst of
load from another process hits all of them alike; each figure is the median
round, and the spread (slowest, fastest round) is kept in the JSON. It is a
benchmark, not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

from traintop.data.dataset import load_dataset
from traintop.data.errors import InputError
from .bench_loops import engine_loop, lecture_loop, plain_nn_loop
from .bench_sweep import format_sweep, memory, sweep_loops, sweep_rows
from traintop.engine.config import TrainConfig
from .options import Parser, check_device
from traintop.engine.training.threads import apply_threads, choose_threads

# (key, label, engine path, stats_every); None: a baseline loop
MAIN_ROWS = (
    # the default engine: timed once its background compile is done
    ("auto_stats100", "engine auto (default), stats every 100", "auto", 100),
    ("auto_stats1", "engine auto (default), stats every step", "auto", 1),
    ("fast_stats100", "engine fast, full stats every 100", "fast", 100),
    ("fast_stats1", "engine fast, full stats every step", "fast", 1),
    ("compiled_stats100", "engine compiled, full stats every 100", "compiled", 100),
    ("compiled_stats1", "engine compiled, full stats every step", "compiled", 1),
    ("exact_stats100", "engine exact, full stats every 100", "exact", 100),
    ("exact_stats1", "engine exact, full stats every step", "exact", 1),
    ("plain", "plain torch.nn loop, no stats", None, None),
    ("lecture", "the lecture's loop (retain_grad, ud)", None, None),
)
SCALING = ((100, 5), (200, 5), (400, 5), (800, 5), (100, 10), (100, 20))
SCALING_ROWS = ("fast_stats100", "exact_stats100", "plain")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="traintop bench",
        description="Measure steps/s of traintop's engine (fast and exact paths) against a "
                    "plain torch.nn loop and the lecture's loop, in one process.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads for every row (default: chosen by model size)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--steps", type=int, default=600, metavar="N",
                   help="timed steps per loop for the lecture's size (default 600)")
    p.add_argument("--rounds", type=int, default=5, metavar="N",
                   help="interleaved rounds the steps are split into (default 5)")
    p.add_argument("--warmup", type=int, default=30, metavar="N",
                   help="untimed steps per loop first (default 30)")
    p.add_argument("--scaling-steps", type=int, default=120, metavar="N",
                   help="timed steps per loop in the scaling table (default 120)")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    p.add_argument("--sweep-only", action="store_true",
                   help="only the sweep rows: a 4-run gain sweep against the four solo runs")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep rows")
    p.add_argument("--n-hidden", type=int, default=TrainConfig.n_hidden, metavar="N",
                   help=f"hidden units of the main rows' and the sweep's stack "
                        f"(default {TrainConfig.n_hidden}, the lecture's)")
    p.add_argument("--depth", type=int, default=TrainConfig.depth, metavar="N",
                   help=f"hidden blocks of that stack (default {TrainConfig.depth}, the lecture's)")
    p.add_argument("--data", metavar="PATH", help="word list (default: the embedded names)")
    return p


def _check(args: argparse.Namespace) -> None:
    for name in ("steps", "rounds", "scaling_steps", "n_hidden", "depth"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise InputError(f"--warmup: must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads: must be >= 1, got {args.threads}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _threads_of(step) -> None:
    threads = getattr(step, "threads", None)
    if threads is not None and threads != torch.get_num_threads():
        apply_threads(threads)


def time_loops(loops: dict, steps: int, rounds: int, warmup: int,
               device: torch.device) -> dict[str, dict]:
    """steps/s of each loop: median of `rounds` interleaved rounds."""
    # a loop may carry its own intra-op thread count (the sweep rows: a
    # batched sweep and solo runs each at theirs), set before each of its rounds
    for step in loops.values():
        _threads_of(step)
        for _ in range(warmup):
            step()
    _sync(device)
    per_round = max(1, steps // rounds)
    rates: dict[str, list[float]] = {k: [] for k in loops}
    cpu: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(rounds):
        for key, step in loops.items():
            _threads_of(step)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                step()
            _sync(device)
            rates[key].append(per_round / (time.perf_counter() - t0))
            cpu[key].append((time.process_time() - c0) * 1000 / per_round)
    out = {}
    for key, r in rates.items():
        med = statistics.median(r)
        # CPU time of this process per step: on a shared machine it moves far
        # less than wall time when other processes take the cores.
        out[key] = {"steps_per_sec": med, "ms_per_step": 1000 / med,
                    "cpu_ms_per_step": statistics.median(cpu[key]),
                    "spread": [min(r), max(r)], "steps": per_round * rounds}
    return out


def make_loops(keys, config: TrainConfig, dataset, device: torch.device,
               first_step_s: dict | None = None) -> dict:
    """The loops named by keys; a compiled loop's first (compiling) step is
    taken here and its seconds put in first_step_s."""
    first_step_s = {} if first_step_s is None else first_step_s
    loops = {}
    for key, _, engine, every in MAIN_ROWS:
        if key not in keys:
            continue
        if engine is not None:
            loops[key] = engine_loop(config, dataset, device, engine, every)
            if engine == "compiled":  # step 1 has stats, step 2 compiles: time them apart
                t0 = time.perf_counter()
                loops[key]()
                loops[key]()
                first_step_s[key] = time.perf_counter() - t0
            elif engine == "auto":  # its steady state: the compiled graphs
                t0 = time.perf_counter()
                loops[key].trainer.compiled.wait()
                first_step_s[key] = time.perf_counter() - t0
        elif key == "plain":
            loops[key] = plain_nn_loop(config, dataset, device)
        else:
            loops[key] = lecture_loop(config, dataset, device)
    return loops


def run_bench(args: argparse.Namespace) -> dict:
    device = torch.device(check_device(args.device))
    base = TrainConfig(n_hidden=args.n_hidden, depth=args.depth).validated()
    dataset = load_dataset(args.data, base.block_size, base.split_seed)
    threads = args.threads or choose_threads(base, dataset.vocab.size)
    apply_threads(threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_step_s: dict[str, float] = {}
    sweep = None
    if not args.no_sweep:
        loops = sweep_loops(base, dataset, device, args.threads)
        timed = time_loops(loops, args.steps, args.rounds, args.warmup, device)
        apply_threads(threads)
        sweep = {"rows": sweep_rows(timed, loops), "threads": threads,
                 "memory": memory(threads, args.data) if device.type == "cpu" else {}}
        del loops
    if args.sweep_only:
        return {"device": str(device), "torch": torch.__version__, "threads": threads,
                "steps": args.steps, "rounds": args.rounds, "sweep": sweep}
    loops = make_loops([k for k, *_ in MAIN_ROWS], base, dataset, device, first_step_s)
    timed = time_loops(loops, args.steps, args.rounds, args.warmup, device)
    plain = timed["plain"]["steps_per_sec"]
    plain_cpu = timed["plain"]["cpu_ms_per_step"]
    rows = []
    for key, label, engine, every in MAIN_ROWS:
        rows.append({"key": key, "label": label, "path": engine or "baseline",
                     "stats_every": every, **timed[key],
                     "ratio_to_plain": timed[key]["steps_per_sec"] / plain,
                     "cpu_ratio_to_plain": plain_cpu / timed[key]["cpu_ms_per_step"]})
    del loops
    scaling = []
    if not args.no_scaling:
        for n_hidden, depth in SCALING:
            config = base.with_changes(n_hidden=n_hidden, depth=depth)
            row_threads = args.threads or choose_threads(config, dataset.vocab.size)
            apply_threads(row_threads)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            # fewer steps for bigger models, so each row takes similar time
            cost = max(1.0, (n_hidden / 100) ** 2 * depth / 5 / 2)
            steps = max(args.rounds, int(args.scaling_steps / cost))
            loops = make_loops(SCALING_ROWS, config, dataset, device)
            timed = time_loops(loops, steps, args.rounds, min(args.warmup, 10), device)
            plain = timed["plain"]["steps_per_sec"]
            plain_cpu = timed["plain"]["cpu_ms_per_step"]
            scaling.append({
                "n_hidden": n_hidden, "depth": depth, "threads": row_threads,
                **{k: {**v, "ratio_to_plain": v["steps_per_sec"] / plain,
                       "cpu_ratio_to_plain": plain_cpu / v["cpu_ms_per_step"]}
                   for k, v in timed.items()},
                "peak_mb": _peak_mb(device),
            })
            del loops
    apply_threads(threads)
    return {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else f"cpu ({len(os.sched_getaffinity(0))} cores available)"),
        "torch": torch.__version__,
        "threads": threads,
        "threads_chosen": args.threads is None,
        "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup,
        "config": {k: base.to_dict()[k] for k in ("n_hidden", "depth", "batchnorm",
                                                  "activation", "batch_size")},
        "rows": rows,
        "first_step_s": first_step_s,
        "scaling": scaling,
        "peak_mb": _peak_mb(device),
        "peak_mb_of": "cuda max_memory_allocated" if device.type == "cuda"
        else "process peak RSS",
        "sweep": sweep,
    }


def format_text(doc: dict) -> str:
    if "rows" not in doc:   # --sweep-only
        return "\n".join([f"traintop bench --sweep-only: torch {doc['torch']}, "
                          f"{doc['threads']} intra-op thread(s), {doc['steps']} steps per loop"]
                         + format_sweep(doc["sweep"]))
    lines = [f"traintop bench: {doc['device_name']}, torch {doc['torch']}, "
             f"{doc['threads']} intra-op thread(s)"
             + (" (chosen by model size)" if doc["threads_chosen"] else " (--threads)"),
             f"lecture stack (n_hidden {doc['config']['n_hidden']}, depth "
             f"{doc['config']['depth']}, BatchNorm, batch {doc['config']['batch_size']}); "
             f"median of {doc['rounds']} interleaved rounds, {doc['steps']} steps per loop",
             "",
             f"{'loop':38s} {'path':>8s} {'steps/s':>8s} {'ms/step':>8s} {'x plain':>8s}"
             f"  {'spread steps/s':>14s} {'cpu ms':>7s} {'cpu x':>6s}"]
    for r in doc["rows"]:
        lo, hi = r["spread"]
        lines.append(f"{r['label']:38s} {r['path']:>8s} {r['steps_per_sec']:8.0f} "
                     f"{r['ms_per_step']:8.3f} {r['ratio_to_plain']:7.2f}x  "
                     f"{lo:6.0f}-{hi:<7.0f} {r['cpu_ms_per_step']:7.3f} "
                     f"{r['cpu_ratio_to_plain']:5.2f}x")
    for key, secs in doc.get("first_step_s", {}).items():
        what = ("background compile ready, waited" if key.startswith("auto")
                else "first 2 steps (torch.compile, untimed)")
        lines.append(f"{key}: {what} {secs:.1f} s")
    if doc["scaling"]:
        lines += ["", "scaling (full stats every 100 steps): steps/s, ms/step, x plain "
                      "(wall); x plain by CPU time in brackets",
                  f"{'n_hidden':>8s} {'depth':>5s} {'thr':>3s} {'fast':>29s} {'exact':>29s} "
                  f"{'plain':>15s} {'peak MB':>8s}"]
        for s in doc["scaling"]:
            def cell(k: str, ratio: bool = True) -> str:
                v = s[k]
                text = f"{v['steps_per_sec']:6.0f} {v['ms_per_step']:7.2f}"
                return text + (f" {v['ratio_to_plain']:5.2f}x ({v['cpu_ratio_to_plain']:4.2f}x)"
                               if ratio else "")
            lines.append(f"{s['n_hidden']:8d} {s['depth']:5d} {s['threads']:3d} "
                         f"{cell('fast_stats100'):>29s} {cell('exact_stats100'):>29s} "
                         f"{cell('plain', False):>15s} {s['peak_mb']:8.0f}")
    if doc.get("sweep"):
        lines += format_sweep(doc["sweep"])
    lines.append(f"\npeak memory: {doc['peak_mb']:.0f} MB ({doc['peak_mb_of']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    doc = run_bench(args)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(format_text(doc) + "\n")
    return 0
