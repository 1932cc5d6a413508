"""A disk that fills: a small tmpfs where this process may mount one (root
on Linux), else the tests that need it are skipped (tests/test_faults_disk.py
also fills a file object that refuses writes, which runs everywhere)."""

from __future__ import annotations

import errno
import io
import os
import subprocess

import pytest

DISK_BYTES = 1024 * 1024   # room for the first lines even when a busy machine batches many steps into one flush


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder, leave: int = 0) -> None:
    """Fill the disk of `folder` until `leave` bytes or fewer are free."""
    path = folder / ".filler"
    with open(path, "wb") as f:
        chunk = b"\0" * 4096
        while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave + len(chunk):
            try:
                f.write(chunk)
                f.flush()
            except OSError:
                break


class _Limited(io.RawIOBase):
    """A real file that takes `room` bytes, then fails every write with
    `error` (the write that crosses the line is taken in part, as a disk
    filling mid-write does)."""

    def __init__(self, path, room: int, error: int = errno.ENOSPC):
        self.file = io.FileIO(path, "wb")
        self.room = room
        self.error = error

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.room <= 0:
            raise OSError(self.error, os.strerror(self.error))
        taken = bytes(b[:self.room])
        self.room -= len(taken)
        return self.file.write(taken)

    def close(self) -> None:
        self.file.close()
        super().close()


def failing_file(path, room: int, error: int = errno.ENOSPC):
    return io.BufferedWriter(_Limited(path, room, error))
