"""Bounded history: whole runs of any length in fixed memory."""

from __future__ import annotations

import math

import pytest

from traintop.engine.training.history import LOSS_WINDOW, History, Series


def test_series_keeps_exact_values_until_full():
    s = Series(capacity=8)
    for i in range(5):
        s.add(i, float(i))
    assert s.points() == ([0, 1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0, 4.0])


def test_series_halves_and_keeps_means():
    s = Series(capacity=8)
    for i in range(1000):
        s.add(i, float(i))
    ticks, values = s.points()
    assert len(values) < 8 + 1
    assert ticks[0] == 0 and s.stride in (128, 256)
    # Every closed bucket is the exact mean of the steps it covers.
    for t, v in zip(ticks[:-1], values[:-1]):
        assert v == pytest.approx(t + (s.stride - 1) / 2)


def test_series_skips_nonfinite_in_means():
    s = Series(capacity=8)
    s.stride = 2
    s.add(0, 1.0)
    s.add(1, math.nan)
    assert s.points()[1] == [1.0]


def test_history_memory_is_bounded():
    h = History(capacity=256)
    h.start_run({"gain": "5/3"}, n_params=3)
    # 6 series (loss, windows, lr, 3 ratios) of at most 256 buckets of 16 bytes.
    bound = 6 * 256 * 16
    for i in range(100_000):
        h.add(-0.3, 0.1, (-3.0, -2.5, -3.5))
        if i % 9_999 == 0:
            assert h.nbytes() <= bound
    assert h.tick == 100_000
    assert len(h.loss_windows.points()[1]) == 100_000 // LOSS_WINDOW


def test_loss_windows_are_lecture_means():
    h = History()
    h.start_run({}, n_params=0)
    for i in range(2 * LOSS_WINDOW):
        h.add(float(i // LOSS_WINDOW), 0.1, ())
    assert h.loss_windows.points() == ([0, LOSS_WINDOW], [0.0, 1.0])


def test_markers_and_runs():
    h = History()
    h.start_run({"gain": "5/3"}, n_params=1)
    h.add(0.5, 0.1, (-3.0,))
    h.start_run({"gain": "3"}, n_params=1, why="restart: gain 3")
    assert h.runs == [(0, {"gain": "5/3"}), (1, {"gain": "3"})]
    assert h.markers[-1].tick == 1 and h.markers[-1].text == "restart: gain 3"
