"""Intra-op threads chosen by model size and by the cores left idle."""

from __future__ import annotations

from traintop.engine.config import TrainConfig
from traintop.engine.training.threads import PARALLEL_MACS, busy_cores, choose_threads, step_macs


def test_step_macs_counts_the_matmuls():
    c = TrainConfig()  # 30 -> 100, 4 x 100 -> 100, 100 -> 27; forward + 2x backward
    assert step_macs(c) == 3 * 32 * (30 * 100 + 4 * 100 * 100 + 100 * 27)


def test_lecture_size_gets_one_thread_even_on_an_idle_machine():
    assert step_macs(TrainConfig()) < PARALLEL_MACS
    assert choose_threads(TrainConfig(), cores=16, load=0.0) == 1


def test_wide_layers_get_more_threads_when_cores_are_idle():
    big = TrainConfig(n_hidden=800)
    assert step_macs(big) > 3 * PARALLEL_MACS
    # n_hidden 400 measured no faster with two threads; 500 was
    assert choose_threads(TrainConfig(n_hidden=400), cores=2, load=0.0) == 1
    assert choose_threads(TrainConfig(n_hidden=500), cores=2, load=0.0) == 2
    assert choose_threads(big, cores=2, load=0.0) == 2
    assert choose_threads(big, cores=16, load=0.0) == 4    # one per 80M MACs, plus one
    assert choose_threads(TrainConfig(n_hidden=4000), cores=64, load=0.0) == 8  # capped


def test_a_batched_sweep_gets_a_thread_per_run_on_idle_cores():
    small = TrainConfig()
    assert choose_threads(small, cores=2, load=0.0, runs=4) == 2
    assert choose_threads(small, cores=16, load=0.0, runs=4) == 4
    assert choose_threads(small, cores=16, load=0.0, runs=1) == 1
    assert choose_threads(small, cores=2, load=1.8, runs=4) == 1     # the other core is busy


def test_widest_group_counts_runs_of_one_shape():
    from traintop.engine.sweep.group import widest_group
    from traintop.engine.sweep.spec import parse_sweep
    base = TrainConfig().validated()
    runs = [r.config for r in parse_sweep(["gain=1,3", "batchnorm=on,off"], base)]
    assert widest_group(runs, "auto") == 2      # two shapes, two runs each
    assert widest_group(runs, "exact") == 1     # every run steps alone
    gains = [r.config for r in parse_sweep(["gain=0.5,1,5/3,3"], base)]
    assert widest_group(gains, "fast") == 4


def test_busy_cores_are_left_alone():
    big = TrainConfig(n_hidden=800)
    assert choose_threads(big, cores=2, load=3.5) == 1
    assert choose_threads(big, cores=16, load=12.2) == 4
    assert choose_threads(big, cores=16, load=40.0) == 1


def test_busy_cores_is_the_machines_busy_share_of_our_cores():
    # (busy, total) jiffies: 30 of 40 busy during the sample
    samples = iter([(1000, 5000), (1030, 5040)])
    assert busy_cores(2, sample_s=0.0, read=lambda: next(samples)) == 2 * 30 / 40
    frozen = iter([(1000, 5000), (1000, 5000)])
    assert busy_cores(4, sample_s=0.0, read=lambda: next(frozen)) == 0.0


def test_busy_cores_falls_back_to_the_load_average_without_proc_stat():
    import os

    def missing():
        raise FileNotFoundError("/proc/stat")

    assert busy_cores(2, sample_s=0.0, read=missing) == os.getloadavg()[0]


def test_busy_cores_reads_this_machine():
    load = busy_cores(2, sample_s=0.05)
    assert 0.0 <= load <= 2.0
