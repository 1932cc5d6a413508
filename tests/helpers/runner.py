"""A live session's command protocol without the spawn: the child's Runner
(traintop.engine.live.runner) serving in a thread of the test process, on
plain queues, behind LiveSession's start/poll/send/close.

For the tests of what the Runner answers (steps, pause, lr, restart,
evaluate, errors as events): a spawned child adds ~3 s of torch import per
test and nothing to what they check. What only the spawn proves (the pipe,
the child's own build errors, close ending a busy child, a dead viewer
ending its trainer) stays on LiveSession (tests/test_session.py, test_faults_*)."""

from __future__ import annotations

import os
import queue
import threading

from traintop.engine.live.child import build
from traintop.engine.live.runner import Runner
from traintop.engine.live.spec import SessionSpec


class InProcessSession:
    def __init__(self, spec: SessionSpec):
        self.spec = spec
        self.commands: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        # what the Runner calls on a multiprocessing queue's end
        self.messages.close = self.messages.cancel_join_thread = lambda: None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        runner = Runner(build(self.spec), self.spec, self.commands, self.messages, os.getppid())

        def serve() -> None:
            try:
                runner.serve()
            except BaseException as exc:  # noqa: BLE001 - handed to the test at close
                self.error = exc
                runner.fatal(exc)

        self.thread = threading.Thread(target=serve, name="in-process-runner", daemon=True)
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def poll(self, limit: int = 1000) -> list:
        out = []
        while len(out) < limit:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                break
        return out

    def send(self, command) -> None:
        self.commands.put(command)

    def close(self, timeout: float = 30.0) -> list:
        """Quit the runner; the messages it sent that were not polled yet."""
        from traintop.engine.feed.messages import Command

        if self.thread is not None and self.thread.is_alive():
            self.send(Command("quit"))
            self.thread.join(timeout)
            assert not self.thread.is_alive(), "the runner did not quit"
        if self.error is not None:
            raise AssertionError(f"the runner raised {self.error!r}") from self.error
        return self.poll(10 ** 9)
