"""What can be wrong with a recording, worded once for every reader (the
replay, attach, the summaries and the export): each names the file, and a
line's fault names its line, so the user sees one line saying where."""

from __future__ import annotations

from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.recording import format as stream_format


def no_such_file(path: str | Path) -> InputError:
    return InputError(f"{path}: no such file")


def cannot_read(path: str | Path, exc: OSError) -> InputError:
    return InputError(f"{path}: cannot read: {exc.strerror or exc}")


def bad_bytes(path: str | Path, exc: ValueError) -> InputError:
    """Bytes that are no stream (a broken gzip member)."""
    return InputError(f"{path}: {exc}")


def empty(path: str | Path) -> InputError:
    return InputError(f"{path}: empty recording (no complete header line)")


def at_line(name: str, line: int, why: str) -> InputError:
    return InputError(f"{name}:{line}: {why}")


def corrupt_line(name: str, line: int, what: str) -> InputError:
    """`what`: why, e.g. "not JSON" or the decoder's exception."""
    return at_line(name, line, f"corrupt line ({what})")


def not_a_recording(name: str, line: int) -> InputError:
    return at_line(name, line, f"not a traintop recording (no {stream_format.FORMAT!r} header)")


def newer_version(name: str, line: int, version) -> InputError:
    return at_line(name, line, f"stream format version {version!r} is newer than this "
                               f"traintop reads (versions {stream_format.READS[0]} to "
                               f"{stream_format.READS[-1]}); "
                               "upgrade traintop")


def corrupt_header(name: str, line: int, what: str) -> InputError:
    return at_line(name, line, f"corrupt header ({what})")


def why(exc: Exception) -> str:
    """A decoder's exception as the parenthesis of a corrupt line."""
    return f"{type(exc).__name__}: {exc}"
