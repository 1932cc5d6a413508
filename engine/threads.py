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


def step_macs(config: TrainConfig, vocab_size: int = 27) -> int:
    """Multiply-adds of one step's matmuls: forward plus twice that backward."""
    fan_in = config.n_embd * config.block_size
    per_example = fan_in * config.n_hidden + (config.depth - 1) * config.n_hidden ** 2 \
        + config.n_hidden * vocab_size
    return 3 * config.batch_size * per_example


def choose_threads(config: TrainConfig, vocab_size: int = 27) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if step_macs(config, vocab_size) < PARALLEL_MACS:
        return 1
    return max(1, min(cores or 1, 8))


def apply_threads(threads: int) -> None:
    torch.set_num_threads(threads)
