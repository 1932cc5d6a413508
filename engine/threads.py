"""How many intra-op threads a model of this size wants.

The lecture's stack is tiny: a step is ~9 MFLOP spread over ~100 small
kernels, so it is bound by per-operation overhead and a second thread only
adds synchronisation (and collapses when another process wants the core).
Wide layers are arithmetic-bound and do gain from more threads.
"""

from __future__ import annotations

import os

import torch

from engine.config import TrainConfig

# Above this many multiply-adds per step, extra threads pay for themselves.
PARALLEL_MACS = 40_000_000
MAX_THREADS = 8


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


def busy_cores() -> float:
    """Runnable processes of others, roughly: the 1-minute load average."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_threads(config: TrainConfig, vocab_size: int = 27, cores: int | None = None,
                   load: float | None = None) -> int:
    """One thread below PARALLEL_MACS; above, one more per PARALLEL_MACS, up to
    the cores nobody else is using. Measured on a shared 2-core machine (load
    ~3.5): two threads ran 3-10x slower than one at every size from n_hidden
    100 to 800, because an intra-op thread that waits for a busy core stalls
    every operation; so a thread is added only where a core is idle."""
    cores = available_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    macs = step_macs(config, vocab_size)
    if macs < PARALLEL_MACS:
        return 1
    wanted = min(cores, MAX_THREADS, macs // PARALLEL_MACS + 1)
    idle = int(cores - load + 0.5)
    return max(1, min(wanted, idle))


def apply_threads(threads: int) -> None:
    torch.set_num_threads(threads)
