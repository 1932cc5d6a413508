"""`traintop bench`'s sweep rows: a 4-run gain sweep against the four solo runs.

The issue's target workload: gain 0.5, 1, 5/3, 3 on the BatchNorm stack,
full stats every 100 steps. Each loop call is one step of all four runs (the
sweep's batched step, or the four solo Trainers one after another), timed in
the same interleaved rounds as the other rows; throughput is in run-steps per
second. Each side runs with the intra-op threads `traintop run` gives it
(sweep_threads): the batched sweep a thread per run where cores are idle,
a solo run of the lecture's size one (a second thread gains it nothing);
--threads sets both. Memory is measured in a fresh child process per variant (so neither
sees the other's allocations): its peak RSS, and the bytes of every tensor
storage alive after the steps (parameters, gradients, buffers, the last
step's kept tensors), each above a child that loads torch and the data and
trains nothing. The state of one run is ~0.5 MB, below RSS's resolution next
to torch's own ~250 MB, so the tensor bytes are the figure the target is
judged on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from traintop.engine.config import TrainConfig
from traintop.engine.sweep.spec import parse_sweep
from traintop.engine.sweep.trainer import SweepTrainer
from traintop.engine.training.threads import apply_threads, choose_threads
from traintop.engine.training.trainer import Trainer

GAINS = "gain=0.5,1,5/3,3"
# engine of the sweep, engine of the solo runs, label
PAIRS = (("fast", "fast", "engine fast"), ("auto", "auto", "engine auto (default)"))
MEMORY_STEPS = 300


def sweep_runs(base: TrainConfig):
    return parse_sweep([GAINS], base.with_changes(stats_every=100, steps=10**12))


def sweep_threads(base: TrainConfig, threads: int | None) -> tuple[int, int]:
    """(the sweep's, a solo run's) intra-op threads: --threads for both, else
    what `traintop run` chooses for each (a thread per batched run where
    cores are idle; one for a solo run of the lecture's size)."""
    if threads:
        return threads, threads
    return choose_threads(base, runs=len(sweep_runs(base))), choose_threads(base)


def sweep_loops(base: TrainConfig, dataset, device: torch.device,
                threads: int | None = None) -> dict:
    """{key: step()} for each PAIRS row: the batched sweep and the solo runs,
    each carrying the thread count it runs (and compiled) with."""
    runs = sweep_runs(base)
    sweep_t, solo_t = sweep_threads(base, threads)
    loops = {}
    for sweep_engine, solo_engine, _ in PAIRS:
        apply_threads(sweep_t)   # inductor writes its loops for the threads at compile time
        sweep = SweepTrainer(runs, dataset, device=str(device), engine=sweep_engine)
        for _, group in sweep.groups:
            if group is not None and group.compiled is not None:
                sweep.step()
                group.compiled.wait()   # the default engine's steady state: compiled
        apply_threads(solo_t)
        solos = [Trainer(run.config, dataset, device=str(device), engine=solo_engine)
                 for run in runs]
        for t in solos:
            if t.compiled is not None:   # the default engine's steady state: compiled
                t.step()
                t.compiled.wait()

        def step_sweep(sweep=sweep) -> None:
            sweep.step()

        def step_solos(solos=solos) -> None:
            for t in solos:
                t.step()

        step_sweep.engine_now = lambda sweep=sweep: sweep.engine_now
        step_solos.engine_now = lambda solos=solos: solos[0].engine_now
        step_sweep.threads, step_solos.threads = sweep_t, solo_t
        loops[f"sweep_{sweep_engine}"] = step_sweep
        loops[f"solos_{solo_engine}"] = step_solos
    return loops


def sweep_rows(timed: dict, loops: dict, runs: int = 4) -> list[dict]:
    rows = []
    for sweep_engine, solo_engine, label in PAIRS:
        s, o = timed[f"sweep_{sweep_engine}"], timed[f"solos_{solo_engine}"]
        rows.append({"label": label,
                     "sweep_path": loops[f"sweep_{sweep_engine}"].engine_now(),
                     "solo_path": loops[f"solos_{solo_engine}"].engine_now(),
                     "sweep_threads": loops[f"sweep_{sweep_engine}"].threads,
                     "solo_threads": loops[f"solos_{solo_engine}"].threads,
                     "sweep_run_steps_per_sec": runs * s["steps_per_sec"],
                     "solos_run_steps_per_sec": runs * o["steps_per_sec"],
                     "speedup": s["steps_per_sec"] / o["steps_per_sec"],
                     "sweep_spread": [runs * v for v in s["spread"]],
                     "solos_spread": [runs * v for v in o["spread"]],
                     "cpu_speedup": o["cpu_ms_per_step"] / s["cpu_ms_per_step"]})
    return rows


def memory(threads: int, data: str | None) -> dict:
    """Peak RSS (MB) of a child that trains nothing, one solo run, and the sweep."""
    out = {}
    for what in ("none", "solo", "sweep"):
        code = ("import sys; from traintop.commands.bench_sweep import memory_child; "
                f"memory_child({what!r}, {threads}, {data!r})")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        out[what] = json.loads(proc.stdout)
    mem = {"steps": MEMORY_STEPS}
    for key in ("peak_rss_mb", "tensor_mb"):
        base = out["none"][key]
        mem[key] = {w: out[w][key] for w in out}
        solo, sweep = out["solo"][key] - base, out["sweep"][key] - base
        mem[key].update(solo_above_base=solo, sweep_above_base=sweep,
                        ratio=sweep / solo if solo > 0 else None)
    return mem


def memory_child(what: str, threads: int, data: str | None) -> None:
    """Train `what` (none, solo: the first run, sweep: all four) MEMORY_STEPS steps
    on the fast engine; print the process's peak RSS as JSON."""
    from traintop.data.dataset import load_dataset
    from traintop.commands.run_end import peak_rss_mb

    torch.set_num_threads(threads)
    base = TrainConfig().validated()
    dataset = load_dataset(data, base.block_size, base.split_seed)
    runs = sweep_runs(base)
    if what == "solo":
        trainer = Trainer(runs[2].config, dataset, engine="fast")
        for _ in range(MEMORY_STEPS):
            trainer.step()
    elif what == "sweep":
        sweep = SweepTrainer(runs, dataset, engine="fast")
        for _ in range(MEMORY_STEPS):
            sweep.step()
    sys.stdout.write(json.dumps({"peak_rss_mb": peak_rss_mb(),
                                 "tensor_mb": live_tensor_bytes() / 1e6}) + "\n")


def live_tensor_bytes() -> int:
    """Bytes of every distinct tensor storage the process holds (views share one)."""
    import gc
    import warnings
    seen: dict[int, int] = {}
    with warnings.catch_warnings():   # isinstance touches deprecated torch aliases
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
                storage = obj.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def format_sweep(sweep: dict) -> list[str]:
    lines = ["", f"sweep ({GAINS}, BatchNorm stack, full stats every 100): run-steps/s, "
                 "median of the same interleaved rounds",
             f"{'':24s} {'sweep':>9s} {'4 solo runs':>12s} {'x':>6s} {'cpu x':>6s}  paths"]
    for r in sweep["rows"]:
        lines.append(f"{r['label']:24s} {r['sweep_run_steps_per_sec']:9.0f} "
                     f"{r['solos_run_steps_per_sec']:12.0f} {r['speedup']:5.2f}x "
                     f"{r['cpu_speedup']:5.2f}x  sweep {r['sweep_path']} batched "
                     f"({r['sweep_threads']} thr), solo {r['solo_path']} ({r['solo_threads']} thr)")
    m = sweep.get("memory", {})
    if "error" in m:
        lines.append(f"memory: not measured ({m['error']})")
    elif m:
        for key, what in (("tensor_mb", "live tensor storage"), ("peak_rss_mb", "peak RSS")):
            v = m[key]
            ratio = "n/a (below resolution)" if v["ratio"] is None else f"{v['ratio']:.2f}x"
            lines.append(f"memory, {what} of a child after {m['steps']} steps: nothing trained "
                         f"{v['none']:.2f} MB; one run +{v['solo_above_base']:.2f} MB; the "
                         f"sweep +{v['sweep_above_base']:.2f} MB: {ratio} one run's")
    return lines
