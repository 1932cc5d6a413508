"""Recordings the app tests replay: messages written through traintop.engine.recording.recorder."""

from __future__ import annotations

from pathlib import Path

from traintop.engine.recording.recorder import Recorder


def record(messages, path: Path) -> Path:
    """Write `messages` (RunStarted first) as a recording, as a live session would."""
    with Recorder(path, meta={"data": "small", "writer": "tests"}) as recorder:
        for message in messages:
            recorder.consume(message)
    return path
