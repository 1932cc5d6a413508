"""The terminal gone means traintop gone (issue 22).

A closed terminal (tmux kill-session, an SSH window closed, a dead link)
reaches the app as SIGHUP, or, with SIGHUP ignored (`nohup`, `trap '' HUP`),
only as a hung-up tty: end of file on reads, EIO on writes. Textual's input
thread then loops on read(0) = 0 at full speed (a known upstream bug), and
an app whose quit was under way when it happened could wait forever for that
thread: an orphan eating a core, and a trainer child training for nobody.

So one guard per process watches, from the moment the app is launched until
the process ends:

- a thread blocked in poll() on the terminal's fds (0, 1, 2 where they are a
  tty, or a tty hung up already: any character device) for
  POLLHUP/POLLERR/POLLNVAL only: poll reports those without reading, so no
  key is taken from Textual, and the thread sleeps in the kernel until the
  hangup (no periodic wake-up);
- SIGHUP (until Textual installs its own handler, which quits as `q` does;
  the tty's hangup still wakes this thread);
- standard input at its end where it is no tty (/dev/null, a file, a pipe),
  looked at every PROBE_SECONDS once the app reads it (`guarded`).

On any of them it ends the process itself, not through Textual: the source
it owns is closed (a recording closed whole, with its final status; the
trainer child asked to quit, killed if it has not left within 0.4 s: the
source's `hurry`), the terminal is put back if it is still there,
and the process leaves with `os._exit(129)`. A second thread's deadline
(GRACE_SECONDS) kills the process's children and leaves the same way if the
clean part is stuck, and an alarm() a second later (SIGALRM's default action
ends the process) is the kernel's floor under both: the process is gone
within 2 s whatever it was doing.
The app's calls into the source go through a lock the guard holds while it
closes it (GuardedSource): the UI thread never polls a closing source.

Nothing here imports Textual or torch.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import select
import signal
import stat
import struct
import sys
import termios
import threading
from pathlib import Path

HANGUP_CODE = 128 + signal.SIGHUP   # 129, as for a SIGHUP
STDIN_ENDED_CODE = 2                 # no terminal to read keys from: a usage error
GRACE_SECONDS = 1.2     # the clean ending's time; then children killed, process gone
PROBE_SECONDS = 0.25    # a non-tty stdin is looked at this often (a tty needs no probe)
GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL
# What Textual's driver writes on its way out, for an ending with the terminal
# still there (a SIGHUP sent by hand before the first frame, stdin at its end):
# keyboard protocol, mouse, bracketed paste and focus reports off, line wrap
# on, the main screen back, the cursor shown.
RESET = ("\x1b[<u\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l"
         "\x1b[?7h\x1b[?1049l\x1b[?25h")

_guard: "TerminalGuard | None" = None
_guard_lock = threading.Lock()


def install() -> "TerminalGuard":
    """The process's guard, started on first use (idempotent)."""
    global _guard
    with _guard_lock:
        if _guard is None:
            _guard = TerminalGuard()
            _guard.start()
        return _guard


def guarded(source):
    """`source` as the app should see it: owned by the process's guard (closed
    by it if the terminal goes) and behind its lock; from now on a
    standard input that is no tty is watched for its end too (the app reads
    keys from it)."""
    if isinstance(source, GuardedSource):
        return source
    guard = install()
    if guard.source is not source:
        guard.own(source, getattr(source, "hurry", None))
    guard.watch_stdin()
    return GuardedSource(source, guard)


class TerminalGuard:
    def __init__(self, fds=(0, 1, 2), grace: float = GRACE_SECONDS):
        self.grace = grace
        self.lock = threading.RLock()   # held by the app's calls into the source and by the ending
        self.source = None              # what the ending closes
        self.hurry = None               # called before it is closed by the ending
        self.closed = False             # the ending closed the source: the app's calls do nothing
        self.ending = False
        self.ttys = [fd for fd in fds if _isatty(fd)]
        # Watched for their hangup: the ttys, and any character device: a tty
        # hung up before the guard started is no tty any more (isatty() says
        # no) but poll() still says POLLHUP; /dev/null never does.
        self.watched = [fd for fd in fds if fd in self.ttys or _kind(fd) == "device"]
        self._saved = None              # the terminal's modes before the app changed them
        for fd in self.ttys:
            try:
                self._saved = termios.tcgetattr(fd)
                break
            except termios.error:
                continue
        self._stdin = False             # watch a non-tty stdin for its end
        self._signalled = False
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._previous_handler = None
        self._thread: threading.Thread | None = None

    # ----- set-up ---------------------------------------------------------------
    def start(self) -> None:
        try:
            self._previous_handler = signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:
            pass   # not the main thread: the tty is still watched
        self._thread = threading.Thread(target=self._watch, name="traintop-terminal-guard",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (tests); a guard is otherwise kept to the process's end."""
        global _guard
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._previous_handler is not None:
            try:
                signal.signal(signal.SIGHUP, self._previous_handler)
            except (ValueError, TypeError):
                pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        with _guard_lock:
            if _guard is self:
                _guard = None

    def own(self, source, hurry=None) -> None:
        """Close `source` when the terminal goes (the last one given: the
        outermost, whose close closes what it wraps); `hurry()`, if given,
        is called first (a live session waits less for its child)."""
        with self.lock:
            self.source = source
            self.hurry = hurry

    def watch_stdin(self) -> None:
        if not self._stdin and 0 not in self.watched:
            self._stdin = True
            self._wake()

    # ----- signals and the watching thread -------------------------------------
    def _on_sighup(self, signum, frame) -> None:
        self._signalled = True   # the thread does the rest: no lock is taken here
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass   # full (already woken) or closed

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for fd in self.watched:
            poller.register(fd, 0)   # no events asked: only a hangup, an error or a closed fd
        stdin = None   # how a non-tty stdin is watched, once asked
        while True:
            if self._stdin and stdin is None:
                stdin = _StdinEnd(poller)
            timeout = None if stdin is None or not stdin.probing else PROBE_SECONDS * 1000
            try:
                ready = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, mask in ready:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 512)
                    except OSError:
                        pass
                    if self._stopping:
                        return
                    if self._signalled:
                        self.end(HANGUP_CODE)
                elif fd in self.watched and mask & GONE:
                    self.end(HANGUP_CODE, terminal_gone=True)
                elif stdin is not None and fd == 0:
                    stdin.hung_up()
            if stdin is not None and stdin.ended():
                self.end(STDIN_ENDED_CODE,
                         say="traintop: standard input ended (the app reads its keys "
                             "from a terminal): quitting")

    # ----- the ending -----------------------------------------------------------
    def end(self, code: int = HANGUP_CODE, terminal_gone: bool = False,
            say: str | None = None) -> None:
        """Close the owned source, put the terminal back if it is still
        there, and leave with `code`; a deadline thread makes sure of it."""
        if self.ending:
            return
        self.ending = True
        threading.Thread(target=self._deadline, args=(code,), name="traintop-guard-deadline",
                         daemon=True).start()
        if signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None):
            # The floor under the deadline thread, kept by the kernel: a
            # process whose threads cannot run (the interpreter's lock held
            # for good) still ends, killed by SIGALRM.
            signal.alarm(math.ceil(self.grace) + 1)
        try:
            with self.lock:   # the app's own calls into the source are done or wait
                self.closed = True
                if self.hurry is not None:
                    self.hurry()
                if self.source is not None:
                    self.source.close()
            _finalize_multiprocessing()
        except BaseException:  # noqa: BLE001 - leaving regardless
            pass
        kill_children()
        if not terminal_gone:
            self._restore(say)
        os._exit(code)

    def _deadline(self, code: int) -> None:
        threading.Event().wait(self.grace)
        kill_children()
        os._exit(code)

    def _restore(self, say: str | None) -> None:
        """The terminal's modes and main screen back, where it is still there."""
        try:
            if say and 2 not in self.ttys:
                os.write(2, (say + "\n").encode())   # a log file, a pipe
            if self._saved is None or self._gone():
                return
            # Taken from the app first: what Textual still writes (to fd 2; a
            # print to fd 1) goes to /dev/null, not over the restored screen.
            out = os.dup(next(fd for fd in (2, 1, 0) if fd in self.ttys))
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(null, fd)
            termios.tcsetattr(out, termios.TCSANOW, self._saved)
            os.write(out, RESET.encode())
            if say and 2 in self.ttys:
                os.write(out, (say + "\r\n").encode())
        except (OSError, termios.error):
            pass

    def _gone(self) -> bool:
        poller = select.poll()
        for fd in self.watched:
            poller.register(fd, 0)
        try:
            return any(mask & GONE for _, mask in poller.poll(0))
        except OSError:
            return True


class GuardedSource:
    """The app's view of the guard's source: every call holds the guard's
    lock; once the guard has closed the source, poll() returns nothing and
    send() and start() do nothing. Anything else is the source's own."""

    def __init__(self, source, guard: TerminalGuard):
        self._source = source
        self._guard = guard

    def start(self, *args, **kwargs):
        with self._guard.lock:
            if not self._guard.closed:
                return self._source.start(*args, **kwargs)

    def poll(self, *args, **kwargs):
        with self._guard.lock:
            return [] if self._guard.closed else self._source.poll(*args, **kwargs)

    def send(self, *args, **kwargs):
        with self._guard.lock:
            if not self._guard.closed:
                return self._source.send(*args, **kwargs)

    def close(self, *args, **kwargs):
        with self._guard.lock:
            return self._source.close(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._source, name)


class _StdinEnd:
    """When a standard input that is no tty has reached its end: a pipe or a
    socket hangs up (with nothing left unread), a file is read to its size,
    /dev/null always is."""

    def __init__(self, poller):
        self.poller = poller
        self.probing = False
        self.kind = _kind(0)
        if self.kind == "stream":
            poller.register(0, 0)
        elif self.kind in ("file", "null"):
            self.probing = True

    def hung_up(self) -> None:
        # The writer is gone: probe until what it left has been read.
        self.poller.unregister(0)
        self.probing = True

    def ended(self) -> bool:
        if not self.probing:
            return False
        try:
            if self.kind == "null":
                return True
            if self.kind == "file":
                return os.lseek(0, 0, os.SEEK_CUR) >= os.fstat(0).st_size
            return _unread(0) == 0
        except OSError as exc:
            return exc.errno == errno.EBADF


def _kind(fd: int) -> str | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return "stream"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISCHR(st.st_mode):
        return "null" if st.st_rdev == os.makedev(1, 3) else "device"
    return None


def _unread(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _finalize_multiprocessing() -> None:
    """Run multiprocessing's exit-time finalizers (os._exit skips them): the
    queues' semaphores are unlinked here rather than by the resource tracker,
    which would say so on the terminal."""
    module = sys.modules.get("multiprocessing.util")
    run = getattr(module, "_run_finalizers", None)
    if run is not None:
        run(0)


def kill_children() -> None:
    """SIGKILL every process below this one except multiprocessing's resource
    tracker: it leaves by itself once the processes that share it are gone,
    unlinking what they left."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.resource_tracker" in cmdline:
            continue
        todo.extend(children.get(pid, []))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

