"""Read a word list: any UTF-8 text file, one item per line."""

from __future__ import annotations

from pathlib import Path

from data.errors import InputError

# The token that pads the start of a context and ends every word.
END_TOKEN = "."


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
