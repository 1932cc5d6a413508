"""Vocabulary, contexts and the seeded 80/10/10 split of the lecture."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from data.errors import InputError
from data.words import END_TOKEN, read_words

# Embedded default: distinct US baby names of 2017 (see make_names.py).
DEFAULT_DATA = Path(__file__).with_name("names.txt")


@dataclass(frozen=True)
class Vocab:
    """Characters of the data; token 0 is the end token '.'."""

    chars: tuple[str, ...]  # sorted distinct characters, token i + 1 each

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def stoi(self) -> dict[str, int]:
        table = {ch: i + 1 for i, ch in enumerate(self.chars)}
        table[END_TOKEN] = 0
        return table

    def itos(self) -> dict[int, str]:
        return {i: ch for ch, i in self.stoi().items()}


@dataclass(frozen=True, eq=False)
class Split:
    """Examples of one split: X (n, block_size) contexts, Y (n,) next tokens."""

    X: torch.Tensor
    Y: torch.Tensor

    def __len__(self) -> int:
        return self.Y.shape[0]


@dataclass(frozen=True, eq=False)
class Dataset:
    source: str
    vocab: Vocab
    block_size: int
    split_seed: int
    words: int
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split {name!r}: choose train, val or test")
        return getattr(self, name)


def build_vocab(words: list[str]) -> Vocab:
    return Vocab(chars=tuple(sorted(set("".join(words)))))


def build_examples(words: list[str], vocab: Vocab, block_size: int) -> Split:
    stoi = vocab.stoi()
    xs: list[list[int]] = []
    ys: list[int] = []
    for word in words:
        context = [0] * block_size
        for ch in word + END_TOKEN:
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    X = torch.tensor(xs, dtype=torch.long).reshape(len(xs), block_size)
    return Split(X=X, Y=torch.tensor(ys, dtype=torch.long))


def split_bounds(n: int) -> tuple[int, int]:
    return int(0.8 * n), int(0.9 * n)


def min_words() -> int:
    """Smallest word count for which all three splits are non-empty."""
    n = 1
    while True:
        n1, n2 = split_bounds(n)
        if 0 < n1 < n2 < n:
            return n
        n += 1


def build_dataset(words: list[str], block_size: int = 3, split_seed: int = 42,
                  source: str = "<words>") -> Dataset:
    n1, n2 = split_bounds(len(words))
    if not 0 < n1 < n2 < len(words):
        raise InputError(
            f"{source}: {len(words)} words is too few for the train/val/test split "
            f"(need at least {min_words()})"
        )
    vocab = build_vocab(words)  # over all words, before the shuffle, as the lecture does
    shuffled = list(words)
    random.Random(split_seed).shuffle(shuffled)  # same draws as random.seed(42); random.shuffle
    return Dataset(
        source=source,
        vocab=vocab,
        block_size=block_size,
        split_seed=split_seed,
        words=len(words),
        train=build_examples(shuffled[:n1], vocab, block_size),
        val=build_examples(shuffled[n1:n2], vocab, block_size),
        test=build_examples(shuffled[n2:], vocab, block_size),
    )


def load_dataset(path: str | Path | None = None, block_size: int = 3,
                 split_seed: int = 42) -> Dataset:
    """Read `path` (the embedded default when None) and build its splits."""
    path = Path(path) if path is not None else DEFAULT_DATA
    return build_dataset(read_words(path), block_size, split_seed, source=str(path))
