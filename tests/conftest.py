"""Shared fixtures: the lecture's reference files and small data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"


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
