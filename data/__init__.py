"""Word lists and the lecture's data pipeline. Plain Python and torch."""

from data.dataset import DEFAULT_DATA, Dataset, Split, Vocab, build_dataset, load_dataset
from data.errors import InputError
from data.words import END_TOKEN, read_words

__all__ = [
    "DEFAULT_DATA", "END_TOKEN", "Dataset", "InputError", "Split", "Vocab",
    "build_dataset", "load_dataset", "read_words",
]
