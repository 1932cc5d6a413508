"""What every export reads: a recording file (read line by line as it is
written out, through traintop.engine.recording.opener), a Recording already
read, or any feed messages; and the folder it writes into."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterable, Iterator, Union

from traintop.data.errors import InputError
from traintop.engine.feed.messages import Message, Sweep
from traintop.engine.recording.opener import Recording, read

Source = Union[Recording, str, Path, Iterable[Message]]


def messages_of(source: Source) -> Iterator[Message]:
    """The messages of a recording already read, of a recording file (read
    line by line as they are used: a long run in bounded memory) or of any
    iterable of feed messages."""
    if isinstance(source, Recording):
        return iter(source.messages)
    if isinstance(source, (str, Path)):
        return read(source)
    return iter(source)


def first_and_all(source: Source) -> tuple[Sweep | None, Iterator[Message]]:
    """(the recording's Sweep if it is a sweep's, all its messages): the
    first is read here, so a missing or foreign file is said before any
    folder or file is made."""
    messages = messages_of(source)
    first = next(messages, None)
    if first is None:
        return None, iter(())
    return (first if isinstance(first, Sweep) else None), itertools.chain((first,), messages)


def target_dir(directory: str | Path, option: str) -> tuple[Path, list[Path]]:
    """The folder, and the folders made for it (removed again if the export fails)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{option} {directory}: exists and is not a directory")
    made = [p for p in (directory, *directory.parents) if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {directory}: cannot create: {exc.strerror or exc}") from None
    return directory, made


def unmake(made: list[Path]) -> None:
    """A failed export leaves no folder it made (innermost first; never a non-empty one)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return
