"""Write files so that a reader or a crash never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

from traintop.data.errors import InputError


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it
    back would, for a moment, give files made by other threads (inductor's
    cache) no mask at all."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_beside(directory: Path, name: str) -> tuple[int, str]:
    """(fd, path) of a new temp file in `directory` for `name`, with the
    permissions a plain open() would give the file (mkstemp makes it 0600,
    which the rename would keep)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass    # a file system without modes: what it gives
    return fd, tmp


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(f) on a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = temp_beside(directory, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)   # the rename itself survives a crash
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` survive a crash, where the file system can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass    # some file systems cannot sync a folder; the file itself is synced
    finally:
        os.close(fd)


class WriteError(InputError):
    """A file could not be written (disk full, permission, a removed folder,
    an I/O error), said in one line that names the file."""


def write_error(path: str | Path, exc: OSError, what: str = "cannot write") -> WriteError:
    """`run.jsonl: cannot write: No space left on device`."""
    return WriteError(f"{path}: {what}: {exc.strerror or exc}")


def check_writable(path: str | Path, option: str) -> None:
    """Refuse a file that cannot be written, before any work is done
    (`--record run.jsonl: no such directory out`)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"{option} {path}: is a directory")
    if not folder.is_dir():
        raise InputError(f"{option} {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists()
                                                    and not os.access(target, os.W_OK)):
        raise InputError(f"{option} {path}: not writable (permission denied)")


def check_writable_dir(path: str | Path, option: str) -> None:
    """The same for a folder files will be written into."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{option} {path}: no such directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: not writable (permission denied)")
