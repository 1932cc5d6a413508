"""Shared fixtures: the lecture's reference files and small data sets.

Fixtures only: what tests import (ROOT, the tmux driver, comparisons) lives in
tests/helpers/, imported by name; no test imports conftest or another test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import REFERENCE


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_xdist_worker():
    """Under pytest-xdist each worker is given one intra-op thread: N workers
    of torch's default (a thread per core) oversubscribe the cores, and a
    tiny model's steps then run 10-50x slower (see one_thread). Serial runs
    keep torch's default; what a test's own code chooses (traintop run, the
    bench) it still sets itself."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch  # here, not at the top: the viewer's tests run without torch

        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "names.txt").exists():
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE


@pytest.fixture(scope="session")
def small_words() -> list[str]:
    """The first 400 names of the embedded default: quick to train on."""
    from traintop.data.words import read_words
    from traintop.data.dataset import DEFAULT_DATA

    return read_words(DEFAULT_DATA)[:400]


@pytest.fixture(scope="session")
def small_dataset(small_words):
    from traintop.data.dataset import build_dataset

    return build_dataset(small_words, block_size=3, split_seed=42, source="small")


@pytest.fixture
def one_thread():
    """One intra-op thread, as traintop picks for the lecture's size: on a
    shared machine two threads per process oversubscribe the cores (10-50x
    slower); the previous count comes back after the test."""
    import torch  # here, not at the top: the viewer's tests run without torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under `--dist loadgroup` (pytest-xdist), a module's tests share one
    worker: its module fixtures (a trained run, a built wheel, a torchrun job)
    are made once, not once per worker. Tests already in a group keep it
    (helpers.TIMING: the tmux and timing tests, one after the other).
    Runs before xdist's own hook, which reads the groups into the test ids."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            name = item.module.__name__
            item.add_marker(pytest.mark.xdist_group(
                "compile" if name in SHARED_COMPILES else name))
    # The longest groups first (pyproject: --no-loadscope-reorder, so xdist hands
    # them out in this order): started last, one of them ran alone for two
    # minutes at the end while the other worker had nothing left.
    rank = {group: k for k, group in enumerate(LONGEST_FIRST)}
    order = {name: k for k, name in enumerate(SHARED_COMPILES)}
    items.sort(key=lambda item: (rank.get(_group(item), len(rank)),
                                 order.get(item.module.__name__, 0)))


# Modules that compile the same graphs and packages (n_hidden 40, depth 5;
# the gain sweep of bench_sweep.GAINS): one worker, one after the other in
# this order, so the bench finds in inductor's and traintop's caches what the
# others compiled (on a cold cache it compiled them again: ~65 s), and the
# handover tests load the package test_compiled_step's auto run built (in a
# group of their own they could start while it was building, and both built
# it at once at idle priority: 47 s and 82 s instead of ~9 s and ~31 s).
SHARED_COMPILES = ("test_compiled_step", "test_compile_handover", "test_sweep_batched",
                   "test_bench")
# The groups that take longest on a cold machine (their compiles; the tmux
# tests one after the other), longest first: `--durations` shows them.
# test_lecture_reference follows the tmux tests on purpose: its compiled runs
# then find the graph the compile group compiles first in inductor's cache.
LONGEST_FIRST = ("compile", "timing", "test_lecture_reference")


def _group(item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name", "")) if marker else ""
