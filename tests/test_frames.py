"""The viewer's read of the trainer child's queue never blocks: half a message
(a child killed in the middle of a put) waits for its rest, whole ones come
through in order, big ones too (the long-length header's frames), and a frame
that does not unpickle is skipped."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import struct
import time

from traintop.engine.feed.messages import Event
from traintop.engine.live.frames import FrameReader


def frame(obj) -> bytes:
    data = pickle.dumps(obj)
    return struct.pack("!i", len(data)) + data


def test_half_a_message_waits_and_never_blocks():
    read_end, write_end = os.pipe()
    conn = mp.connection.Connection(read_end, writable=False)
    reader = FrameReader(conn)
    one, two = frame(Event("lr", 3, "lr 0.1 -> 0.2")), frame(list(range(5_000)))
    os.write(write_end, one + two[:1000])      # the second cut off, as by a kill -9
    started = time.monotonic()
    assert reader.read() == [Event("lr", 3, "lr 0.1 -> 0.2")]
    assert reader.read() == []                  # and again: nothing whole, no wait
    assert time.monotonic() - started < 0.5
    os.write(write_end, two[1000:])
    assert reader.read() == [list(range(5_000))]
    os.close(write_end)
    assert reader.read() == [] and reader.closed
    conn.close()


def test_a_queue_s_own_frames_read_whole_in_order():
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    reader = FrameReader(q._reader)
    sent = [Event("eval", i, f"step {i}") for i in range(200)] + [b"x" * 300_000]
    for item in sent:
        q.put(item)
    got, deadline = [], time.monotonic() + 10
    while len(got) < len(sent) and time.monotonic() < deadline:
        got += reader.read(limit=37)
        time.sleep(0.01)
    assert got == sent
    q.close()


def test_a_frame_that_does_not_unpickle_is_skipped():
    read_end, write_end = os.pipe()
    conn = mp.connection.Connection(read_end, writable=False)
    reader = FrameReader(conn)
    os.write(write_end, struct.pack("!i", 5) + b"nope!" + frame("after"))
    assert reader.read() == ["after"] and reader.skipped == 1
    os.close(write_end)
    conn.close()


def test_a_live_session_polls_past_half_a_message():
    """The viewer's poll, not only the reader: half a frame in the session's
    pipe (a child killed in the middle of a put) must not hold the poll (a
    multiprocessing.Queue's get waited for the rest forever)."""
    import threading

    from traintop.engine.config import TrainConfig
    from traintop.engine.live.session import LiveSession
    from traintop.engine.live.spec import SessionSpec

    session = LiveSession(SessionSpec(config=TrainConfig()))   # not started: no child
    writer = session._messages._writer
    os.write(writer.fileno(), frame(Event("lr", 1, "whole")) + struct.pack("!i", 1000) + b"x" * 10)
    got = []
    poller = threading.Thread(target=lambda: got.append(session.poll()), daemon=True)
    poller.start()
    poller.join(2.0)
    assert not poller.is_alive(), "poll() blocked on half a message"
    assert got == [[Event("lr", 1, "whole")]]
    session.close()
