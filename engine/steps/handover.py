"""The "auto" engine's compile in a process of its own, handed over as a file.

Compiling on a thread of the trainer's process (as the auto engine first
did) shares the interpreter with the training loop: dynamo's tracing and
inductor's code generation are Python, so they hold the GIL for most of
their ~30 s, and on the project's 2-core machine, where the app's UI process
holds the other core, the first ~8 s of the lecture's run went at 30-140
steps/s against ~900 on the fast engine, and the switch itself stalled the
loop for about a second (tools/measure_start.py measures it).

So here a process of its own (traintop.engine.steps.aot_build), at idle
priority, compiles the batched plain step (batched_graph.plain_step, a pure
function of tensors; one run is a batch of one) with AOTInductor into a
package file, while the trainer steps on the fast engine at its own speed.
The trainer polls the process (a waitpid, at most every POLL_SECONDS) and,
once the file is there, loads it through torch's C++ loader: a few
milliseconds, no Python compiler, no dynamo, so the switch does not stall.
Packages are kept (cache_dir()), keyed by the step's shapes, the thread
count, torch's version and this code: a later run of the same shapes loads
one at its first step and compiles nothing.

Nothing outlives the trainer: the process is the leader of its own process
group, killed with it when the trainer exits (atexit, exit_now_if_compiling)
or when nobody wants its package any more, and it kills itself and its
group when its parent dies (traintop.engine.steps.aot_build).
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

POLL_SECONDS = 0.1      # how often a waiting step looks at the compile process
# The compile process; tests replace it (a failing command) to see the fallback.
BUILD_COMMAND = [sys.executable, "-c",
                 "from traintop.engine.steps.aot_build import main; main()"]
MODE_ENV = "TRAINTOP_AUTO_COMPILE"   # "process" (default on CPU), "thread", "off"
CACHE_ENV = "TRAINTOP_AOT_CACHE"
FORMAT = 1              # bump when the package's calling convention changes


def mode(device: torch.device) -> str:
    """How the auto engine compiles: "process" (here; CPU only), "thread"
    (torch.compile on a thread of the trainer: other devices, or asked for
    with TRAINTOP_AUTO_COMPILE=thread), or "off" (never: the fast engine)."""
    asked = os.environ.get(MODE_ENV, "").strip().lower()
    if asked in ("off", "thread"):
        return asked
    return "process" if torch.device(device).type == "cpu" else "thread"


def cache_dir() -> Path:
    """Where packages are kept: $TRAINTOP_AOT_CACHE, else beside inductor's
    own cache ($TORCHINDUCTOR_CACHE_DIR, or torchinductor_<user> in the
    temporary directory, as torch places it)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not base:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        base = os.path.join(tempfile.gettempdir(),
                            "torchinductor_" + "".join(c if c.isalnum() else "_" for c in user))
    return Path(base) / "traintop-aot"


_digest: str | None = None


def _code_digest() -> str:
    """This code's part of a package's key: the step it compiles and how."""
    global _digest
    if _digest is None:
        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for name in ("batched_graph.py", "aot_build.py"):
            h.update((here / name).read_bytes())
        _digest = h.hexdigest()
    return _digest


def package_path(plan, batch: int, block: int, dtype: torch.dtype, threads: int) -> Path:
    key = repr((FORMAT, torch.__version__, _code_digest(), plan, batch, block, str(dtype),
                threads))
    return cache_dir() / f"step-{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt2"


# Held compiles (hold()): asked for, started only once the run is idle.
_hold = False


def hold(on: bool = True) -> None:
    """From now on a compile asked for waits for start_held(), which the app's
    trainer child calls when its run is paused or finished. Measured on the
    project's 2-core machine (tools/measure_start.py, README "The first 30
    seconds"): with the app's UI on one core and the trainer on the other, a
    compile even at idle priority got ~3.5 s of CPU in the run's first 30 s
    (it needs 30-70 s: the package came minutes later, after a short run had
    ended) and still slowed the trainer to 0.21-0.31x of --engine fast in its
    worst second. Where no core is free for it, it waits for idle time."""
    global _hold
    _hold = on


def start_held() -> None:
    """Start every held compile: the run is paused or finished, so the cores
    are free (a resumed run lets a started compile go on, at idle priority)."""
    with _lock:
        for build in list(_builds.values()):
            build.start_held()


class Build:
    """One package: on disk already, being compiled by a process, or held
    (its compile starts at start_held())."""

    def __init__(self, path: Path, job: dict | None):
        self.path = path
        self.error: str | None = None
        self.users = 1
        self.process: subprocess.Popen | None = None
        self._log: Path | None = None
        self._held: dict | None = None
        if job is not None:
            if _hold:
                self._held = job
            else:
                self._start(job)

    @property
    def held(self) -> bool:
        return self._held is not None

    def start_held(self) -> None:
        if self._held is not None:
            job, self._held = self._held, None
            self._start(job)

    def _start(self, job: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.path.with_name(f"{self.path.stem}.{os.getpid()}.log")
            env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS="1")   # no worker pool
            with open(self._log, "wb") as log:
                self.process = subprocess.Popen(
                    BUILD_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=log, env=env, process_group=0, close_fds=True)
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.close()
        except (OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def finished(self) -> bool:
        """Whether it is over (the package written, or the compile failed).
        A package another process wrote meanwhile (another run of the same
        shapes) ends this compile, or a held one: it is taken at once."""
        if self._held is not None:
            if not self.path.exists():
                return False
            self._held = None
            return True
        if self.process is None:
            return True
        code = self.process.poll()
        if code is None:
            if not self.path.exists():
                return False
            self.kill()
            return True
        self._ended(code)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        self.start_held()   # whoever waits for it (a test, the bench) wants it now
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return self.finished()

    def _ended(self, code: int) -> None:
        if self.error is None and not self.path.exists():
            self.error = self._why(code)
        if self.process is not None:   # a compile killed at its end leaves its part-file
            try:
                self.path.with_name(f"{self.path.stem}.{self.process.pid}.tmp.pt2").unlink()
            except OSError:
                pass
        if self._log is not None:
            try:
                self._log.unlink()
            except OSError:
                pass
            self._log = None

    def _why(self, code: int) -> str:
        last = ""
        try:
            lines = [ln for ln in self._log.read_text(errors="replace").splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else ""
        except (OSError, AttributeError):
            pass
        if last:
            return last
        if code < 0:
            return f"the compile process was killed by signal {-code}"
        return f"the compile process exited with code {code}"

    def load(self):
        """The package's step: f(flat, flat_grad, running, Xb, Yb, lr) ->
        (head, moments, ratios), as batched_graph.plain_step."""
        if self.error is not None:
            raise RuntimeError(self.error)
        try:
            loader = _load(self.path)
        except Exception:
            try:   # a damaged or outdated file: compiled afresh next time
                self.path.unlink()
            except OSError:
                pass
            raise
        run = loader.run

        def step(flat, flat_grad, running, Xb, Yb, lr):
            head, m0, m1, m2, ratios = run([flat, flat_grad, *running, Xb, Yb, lr])
            return head, (m0, m1, m2), ratios

        step.loader = loader   # keeps the library loaded
        return step

    def kill(self) -> None:
        self._held = None
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(2.0)
            except subprocess.TimeoutExpired:
                pass
        if process is not None and process.returncode is not None:
            self._ended(process.returncode)


def _load(path: Path):
    """torch's C++ loader of `path`. It unpacks the package into a folder of
    the temporary directory that only its destructor removes, which a
    process ending without one (a signal, os._exit, the interpreter's
    teardown) leaves behind: so it unpacks into a folder of ours, removed as
    soon as the library is loaded (it stays mapped)."""
    private = tempfile.mkdtemp(prefix="traintop-aoti-")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = private    # where the loader's temp_directory_path() points
    try:
        # A copy, read in one go: another run of the same shapes may replace the
        # file (os.replace of its own build) while the loader opens it more than once.
        local = os.path.join(private, "step.pt2")
        shutil.copyfile(path, local)
        return torch._C._aoti.AOTIModelPackageLoader(local, "model", False, 1, -1)
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        shutil.rmtree(private, ignore_errors=True)


_builds: dict[Path, Build] = {}
_lock = threading.Lock()
_atexit = False


def request(plan, batch: int, block: int, dtype: torch.dtype, threads: int) -> Build:
    """The package of these shapes: on disk, being compiled (shared with
    whoever asked for it before), or a compile started now. Compiles nobody
    wants any more (a restart changed the shapes) are ended first: one
    compile at a time."""
    global _atexit
    path = package_path(plan, batch, block, dtype, threads)
    with _lock:
        build = _builds.get(path)
        if build is not None and (build.running or build.held
                                  or (build.error is None and path.exists())):
            build.users += 1
            return build
        if path.exists():
            return Build(path, None)
        for other in list(_builds.values()):
            if other.users <= 0:
                other.kill()
        job = dict(plan=plan, batch=batch, block=block, dtype=str(dtype).split(".")[-1],
                   threads=threads, path=str(path), parent=os.getpid(),
                   death_signal=threading.current_thread() is threading.main_thread())
        build = Build(path, job)
        for done in [k for k, b in _builds.items() if not b.running]:
            del _builds[done]
        _builds[path] = build
        if not _atexit:
            atexit.register(kill_all)
            _atexit = True
        return build


def release(build: Build) -> None:
    """Its asker no longer waits for it (a restart): the compile goes on
    (a restart of the same shapes asks again) until another is started."""
    with _lock:
        build.users -= 1


def compiling() -> bool:
    return any(b.running for b in list(_builds.values()))


def kill_all() -> None:
    """End every compile process (the trainer is exiting)."""
    for build in list(_builds.values()):
        build.kill()
