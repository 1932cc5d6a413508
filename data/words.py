"""Read a word list: any UTF-8 text file, one item per line."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

# The token that pads the start of a context and ends every word.
END_TOKEN = "."
# Embedded default: distinct US baby names of 2017 (see make_names.py).
DEFAULT_DATA = Path(__file__).with_name("names.txt")


def split_bounds(n: int) -> tuple[int, int]:
    """Ends of the 80% train and 10% val splits of n words, as the lecture cuts them."""
    return int(0.8 * n), int(0.9 * n)


def min_words() -> int:
    """Smallest word count for which all three splits are non-empty."""
    n = 1
    while True:
        n1, n2 = split_bounds(n)
        if 0 < n1 < n2 < n:
            return n
        n += 1


def check_word_count(n: int, source: str) -> None:
    n1, n2 = split_bounds(n)
    if not 0 < n1 < n2 < n:
        raise InputError(f"{source}: {n} words is too few for the train/val/test split "
                         f"(need at least {min_words()})")


def read_checked_words(path: str | Path | None) -> tuple[str, list[str]]:
    """(source, words) of `path` (the embedded default when None), checked as
    build_dataset would check them, without torch: the app's UI process uses
    this to refuse bad data before its screen opens."""
    path = Path(path) if path is not None else DEFAULT_DATA
    words = read_words(path)
    check_word_count(len(words), str(path))
    return str(path), words


def read_words(path: str | Path) -> list[str]:
    """Words of `path`, stripped, blank lines skipped, in file order."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a text file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word:
            continue
        if END_TOKEN in word:
            # '.' is the end token; a word holding it would end itself early.
            raise InputError(
                f"{path}:{number}: word {word!r} contains {END_TOKEN!r}, "
                "which traintop reserves as the end-of-word token"
            )
        words.append(word)
    if not words:
        raise InputError(f"{path}: no words (the file is empty or blank)")
    return words
