"""How many intra-op threads a model of this size wants.

The lecture's stack is tiny: a step is ~9 MFLOP spread over ~100 small
kernels, so it is bound by per-operation overhead and a second thread only
adds synchronisation (and collapses when another process wants the core).
Wide layers are arithmetic-bound and do gain from more threads.
"""

from __future__ import annotations

import os
import time

import torch

from traintop.engine.config import TrainConfig

# Above this many multiply-adds per step, extra threads pay for themselves.
# Measured on the project's 2-core machine, quiet (interleaved rounds, 1 vs 2
# threads, plain torch.nn loop and the fast engine): n_hidden 400 (64M) ran
# 0.8-1.0x with two threads, n_hidden 500 (99M) 1.4-1.5x, 600 (142M)
# 1.5-1.6x, 800 (250M) 1.1-1.5x; the lecture's size (4M) 0.9x.
PARALLEL_MACS = 80_000_000
MAX_THREADS = 8
SAMPLE_S = 0.2   # how long busy_cores watches the machine


def step_macs(config: TrainConfig, vocab_size: int = 27) -> int:
    """Multiply-adds of one step's matmuls: forward plus twice that backward."""
    fan_in = config.n_embd * config.block_size
    per_example = fan_in * config.n_hidden + (config.depth - 1) * config.n_hidden ** 2 \
        + config.n_hidden * vocab_size
    return 3 * config.batch_size * per_example


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_jiffies(path: str = "/proc/stat") -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in jiffies; idle
    and iowait are the only time nobody wanted (steal counts as busy)."""
    with open(path, encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_cores(cores: int, sample_s: float = SAMPLE_S, read=_cpu_jiffies) -> float:
    """How many of our `cores` other processes keep busy: the machine's
    non-idle share over a short sample (this process sleeps through it, so
    it never counts itself) times `cores`; the 1-minute load average where
    /proc/stat is missing (which counts this process too once it has run)."""
    try:
        busy0, total0 = read()
        time.sleep(sample_s)
        busy1, total1 = read()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    if total1 <= total0:
        return 0.0
    return (busy1 - busy0) / (total1 - total0) * cores


def choose_threads(config: TrainConfig, vocab_size: int = 27, cores: int | None = None,
                   load: float | None = None, runs: int = 1) -> int:
    """One thread below PARALLEL_MACS; above, one more per PARALLEL_MACS, up to
    the cores nobody else is using. Measured on a shared 2-core machine (load
    ~3.5): two threads ran 3-10x slower than one at every size from n_hidden
    100 to 800, because an intra-op thread that waits for a busy core stalls
    every operation; so a thread is added only where a core is idle. The
    machine is watched (busy_cores) only for models big enough to want more
    than one thread.

    `runs`: the runs a sweep trains as one batched step (its widest group).
    Their work splits by run (each thread multiplies whole runs' matrices),
    so even the lecture's size gains from a thread per run where cores are
    idle: the 4-run gain sweep stepped 1.8x faster on two threads than on
    one (traintop bench --sweep-only, same minute), where one run gains
    nothing."""
    cores = available_cores() if cores is None else cores
    macs = step_macs(config, vocab_size)
    if macs < PARALLEL_MACS and runs < 2:
        return 1
    load = busy_cores(cores) if load is None else load
    wanted = min(cores, MAX_THREADS, max(macs // PARALLEL_MACS + 1, runs))
    idle = int(cores - load + 0.5)
    return max(1, min(wanted, idle))


def apply_threads(threads: int) -> None:
    torch.set_num_threads(threads)
