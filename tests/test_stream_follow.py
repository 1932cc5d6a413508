"""FollowSource and `traintop attach` on a stream a child process is writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from traintop.engine.feed.messages import Event, RunStarted, Status, Steps
from traintop.engine.recording.follow_source import FollowSource

# The writer: a child process that does what the test tells it on stdin and
# answers "ok" once the file holds it.
CHILD = r"""
import os, sys
from traintop.engine.feed.messages import Event, RunStarted, Status
from traintop.engine.recording.recorder import Recorder
from traintop.engine.results import RunInfo, StepResult
from traintop.engine.recording.encode import dumps, encode

path = sys.argv[1]

def info(gain):
    return RunInfo({"gain": gain}, "ab", ("w",), ((2, 2),), ("Linear",), 1.0)

rec = None
line = dumps(encode(Event("note", 7, "written in two halves", {})))
for cmd in sys.stdin:
    word, *args = cmd.split()
    if word == "start":
        rec = Recorder(path)
        rec.consume(RunStarted(info(args[0])))
    elif word == "steps":
        for i in range(int(args[0]), int(args[1]) + 1):
            rec.step(StepResult(i, 1.0 / i, 0.1, (-3.0,)))
        rec.flush()
    elif word == "half":
        rec.flush()
        rec._writer._raw.write(line[:20]); rec._writer._raw.flush()
    elif word == "rest":
        rec._writer._raw.write(line[20:]); rec._writer._raw.flush()
    elif word == "replace":
        rec.close()
        tmp = path + ".new"
        new = Recorder(tmp)
        new.consume(RunStarted(info(args[0])))
        new.close()
        os.replace(tmp, path)
    elif word == "finish":
        rec.close(Status(int(args[0]), 0.1, False, True, 1.0))
    print("ok", flush=True)
"""


class Writer:
    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=20) == 0


@pytest.fixture
def clock():
    now = [0.0]
    return now


def steps_of(messages) -> list[int]:
    return [r.step for m in messages if isinstance(m, Steps) for r in m.results]


def notes(messages) -> list[dict]:
    return [m.data for m in messages if isinstance(m, Event) and m.kind == "note"]


def test_follows_a_live_writer_through_partial_lines_quiet_and_restarts(tmp_path, clock):
    path = tmp_path / "live.jsonl"
    source = FollowSource(path, quiet_after=10.0, clock=lambda: clock[0])
    source.start()
    assert notes(source.poll()) == [{"waiting": True}]
    write = Writer(path)
    try:
        write("start 5/3")
        (started,) = source.poll()
        assert isinstance(started, RunStarted) and started.info.config == {"gain": "5/3"}
        write("steps 1 150")
        assert steps_of(source.poll()) == list(range(1, 151))
        write("half")
        assert source.poll() == []                 # half a line is not a message yet
        write("rest")
        assert source.poll() == [Event("note", 7, "written in two halves", {})]

        clock[0] = 11.0                            # nothing new for 11 s
        assert notes(source.poll()) == [{"quiet": True}] and source.quiet
        assert source.poll() == []                 # said once
        write("steps 151 160")
        again = source.poll()
        assert notes(again) == [{"quiet": False}] and steps_of(again) == list(range(151, 161))

        write("start 3")                           # the writer restarts: same file, truncated
        restarted = source.poll()
        assert notes(restarted) == [{"restarted": True}]
        assert [m.info.config for m in restarted if isinstance(m, RunStarted)] == [{"gain": "3"}]
        write("steps 1 400")                       # longer than before: still read from 0
        assert steps_of(source.poll(limit=100_000)) == list(range(1, 401))

        write("start 4")                           # restarts and outgrows the old file
        write("steps 1 600")                       # before we look: only the header differs
        grown = source.poll(limit=100_000)
        assert notes(grown) == [{"restarted": True}] and steps_of(grown) == list(range(1, 601))

        write("replace 2")                         # a new file renamed over the old one
        replaced = source.poll()
        assert notes(replaced) == [{"restarted": True}]
        assert [m.info.config for m in replaced if isinstance(m, RunStarted)] == [{"gain": "2"}]

        write("start 1")
        write("steps 1 5")
        write("finish 5")
        tail = source.poll()
        assert steps_of(tail) == [1, 2, 3, 4, 5] and isinstance(tail[-1], Status)
        assert source.finished
        clock[0] = 1000.0
        assert source.poll() == []                 # a finished writer is not "quiet"
    finally:
        write.close()
        source.close()


def test_follows_gzip_while_written(tmp_path, clock):
    path = tmp_path / "live.jsonl.gz"
    write = Writer(path)
    source = FollowSource(path, clock=lambda: clock[0])
    try:
        write("start 1")
        write("steps 1 30")
        got = source.poll()
        assert isinstance(got[0], RunStarted) and steps_of(got) == list(range(1, 31))
        write("steps 31 40")
        assert steps_of(source.poll()) == list(range(31, 41))
    finally:
        write.close()
        source.close()


def test_corrupt_line_while_following_is_an_error_event(tmp_path, clock):
    path = tmp_path / "bad.jsonl"
    write = Writer(path)
    source = FollowSource(path, clock=lambda: clock[0])
    try:
        write("start 1")
        source.poll()
        with open(path, "ab") as f:
            f.write(b"{oops\n")
        (error,) = source.poll()
        assert error.kind == "error" and "bad.jsonl:2: corrupt line" in error.text
        assert source.poll() == []
    finally:
        write.close()


def test_attach_json_prints_what_the_run_printed(tmp_path):
    path = tmp_path / "attached.jsonl"
    attach = subprocess.Popen([sys.executable, "-m", "traintop", "attach", str(path),
                               "--json", "--quiet", "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    run = subprocess.run([sys.executable, "-m", "traintop", "run", "--steps", "400",
                          "--stats-every", "50", "--n-hidden", "12", "--depth", "2", "--json",
                          "--record", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out, err = attach.communicate(timeout=60)
    assert attach.returncode == 0, err
    assert json.loads(out) == json.loads(run.stdout)


def test_joining_a_file_its_writer_left_long_ago_is_quiet_at_once(tmp_path, clock):
    """The writer was last heard when it last wrote the file: a recording
    whose writer died ten minutes ago is not shown as live for quiet_after."""
    path = tmp_path / "old.jsonl"
    write = Writer(path)
    try:
        write("start 5/3")
        write("steps 1 150")
    finally:
        write.close()
    os.utime(path, (os.path.getatime(path), os.path.getmtime(path) - 600))
    source = FollowSource(path, quiet_after=10.0, clock=lambda: clock[0])
    source.start()
    assert steps_of(source.poll()) == list(range(1, 151))
    said = [m for m in source.poll() if isinstance(m, Event)]   # at once: no clock moved
    assert [m.data for m in said] == [{"quiet": True}] and source.quiet
    assert said[0].text.startswith("writer quiet for 6")        # ~600 s, its real age
