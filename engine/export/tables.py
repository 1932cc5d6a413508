"""A recording as tidy CSV tables, or as TensorBoard scalars and histograms.

CSV (one row per observation; the recording read line by line, every table
written to a temporary file and all renamed in once all are complete):
  steps.csv          run, step, loss, log10_loss, lr
  update_ratios.csv  run, step, param, update_ratio_log10   (steps that measured them)
  layers.csv         run, step, layer, kind, mean, std, saturation_pct, dead, units,
                     grad_mean, grad_std                    (per snapshot, per layer)
  weights.csv        run, step, name, shape, grad_mean, grad_std, grad_data_ratio
  events.csv         run, step, kind, text
`run` counts runs in the recording from 1 (a restart begins the next).
A sweep's recording (several runs side by side) adds a first column `sweep`,
the run's swept values ("gain=5/3 batchnorm=off"), and `run` counts each
sweep run's restarts on its own; TensorBoard gets one log per sweep run.
Floats are written as Python writes them (shortest exact form; nan, inf).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import operator
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator, Union

from traintop.data.errors import InputError
from traintop.engine.atomic import WriteError, temp_beside, fsync_dir
from traintop.engine.step_block import StepBlock
from traintop.engine.feed.messages import Event, Message, RunStarted, Steps, Sweep
from traintop.engine.recording.stream import Recording, read

TABLES = {
    "steps.csv": ("run", "step", "loss", "log10_loss", "lr"),
    "update_ratios.csv": ("run", "step", "param", "update_ratio_log10"),
    "layers.csv": ("run", "step", "layer", "kind", "mean", "std", "saturation_pct", "dead",
                   "units", "grad_mean", "grad_std"),
    "weights.csv": ("run", "step", "name", "shape", "grad_mean", "grad_std", "grad_data_ratio"),
    "events.csv": ("run", "step", "kind", "text"),
}


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


def _first(source: Source) -> tuple[Sweep | None, Iterator[Message]]:
    """(the recording's Sweep if it is a sweep's, all its messages): the
    first is read here, so a missing or foreign file is said before any
    folder or file is made."""
    messages = messages_of(source)
    first = next(messages, None)
    if first is None:
        return None, iter(())
    return (first if isinstance(first, Sweep) else None), itertools.chain((first,), messages)


def table_text(messages: Iterable[Message], sweep: Sweep | None = None
               ) -> Iterator[tuple[str, str]]:
    """(table, CSV lines) as the messages come: each table's rows in their
    order, none kept. A sweep's rows start with the run's label: (label, run,
    ...). A recording's steps (StepBlock columns) are written by whole
    columns, as csv.writer writes the rows a StepResult gives (floats by repr)."""
    csv_text = _CsvText()
    counts: dict[int, int] = {}       # sweep run -> runs begun (1 + its restarts)
    names_of: dict[int, tuple] = {}
    for m in messages:
        if isinstance(m, Sweep):
            continue
        if isinstance(m, RunStarted):
            counts[m.run] = counts.get(m.run, 0) + 1
            names_of[m.run] = m.info.param_names
            continue
        head = ((sweep.labels[m.run],) if sweep is not None else ()) + (counts.get(m.run, 0),)
        if isinstance(m, Event):
            yield "events.csv", csv_text.rows(((*head, m.step, m.kind, m.text),))
        elif isinstance(m, Steps):
            names = names_of.get(m.run, ())
            if isinstance(m.results, StepBlock) and m.results.width is not None:
                yield from _block_text(m.results, head, names, csv_text)
            else:
                yield from _result_text(m.results, head, names, csv_text)


class _CsvText:
    """Rows to CSV text, as csv.writer writes them to a file."""

    def __init__(self):
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self._fields: dict = {}

    def rows(self, rows: Iterable[tuple]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(rows)
        return self._buffer.getvalue()

    def field(self, value) -> str:
        """One field as it stands in a row of several (quoted where it must be)."""
        if value not in self._fields:
            self._fields[value] = self.rows(((value, ""),))[:-len(",\r\n")]
        return self._fields[value]


def _block_text(block: StepBlock, head: tuple, names: tuple, csv_text: _CsvText
                ) -> Iterator[tuple[str, str]]:
    """A block's steps and ratios built as strings from its columns (no
    StepResult, no row tuple), its snapshots as rows."""
    n = len(block)
    if not n:
        return
    prefix = "".join(csv_text.field(h) + "," for h in head)
    steps = block.steps.tolist()                       # Python ints and floats, as a
    loss = block.loss.tolist()                         # StepResult holds them
    log10 = [math.log10(x) if x > 0 and math.isfinite(x) else math.nan for x in loss]
    yield "steps.csv", "".join([f"{prefix}{s},{x!r},{g!r},{r!r}\r\n" for s, x, g, r
                                in zip(steps, loss, log10, block.lr.tolist())])
    k = min(block.width, len(names))     # a StepResult's rows: zip(names, ratios)
    if k:
        ratios = block.ratios if k == block.width else block.ratios[:, :k]
        mids = [f",{csv_text.field(name)}," for name in names[:k]]
        starts = [f"{prefix}{s}{mid}" for s in steps for mid in mids]
        yield "update_ratios.csv", "\r\n".join(map(operator.add, starts,
                                                    map(repr, ratios.ravel().tolist()))) + "\r\n"
    for i in sorted(block.stats):
        yield from _snapshot_text(block.stats[i], head, csv_text)


def _result_text(results, head: tuple, names: tuple, csv_text: _CsvText
                 ) -> Iterator[tuple[str, str]]:
    """Step results one by one (a live run's tuple, a version-1 recording,
    a block whose rows differ in width)."""
    for r in results:
        yield "steps.csv", csv_text.rows(((*head, r.step, r.loss, r.log10_loss, r.lr),))
        yield "update_ratios.csv", csv_text.rows((*head, r.step, n, x)
                                                 for n, x in zip(names, r.update_ratio_log10))
        if r.stats is not None:
            yield from _snapshot_text(r.stats, head, csv_text)


def _snapshot_text(s, head: tuple, csv_text: _CsvText) -> Iterator[tuple[str, str]]:
    yield "layers.csv", csv_text.rows(
        (*head, s.step, l.index, l.kind, l.mean, l.std, l.saturation_pct, l.dead, l.units,
         l.grad_mean, l.grad_std) for l in s.layers)
    yield "weights.csv", csv_text.rows(
        (*head, s.step, w.name, "x".join(map(str, w.shape)), w.grad_mean, w.grad_std,
         w.grad_data_ratio) for w in s.weights)


def _target_dir(directory: str | Path, option: str) -> tuple[Path, list[Path]]:
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


def _unmake(made: list[Path]) -> None:
    """A failed export leaves no folder it made (innermost first; never a non-empty one)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


def write_csv(source: Source, directory: str | Path) -> list[Path]:
    """The tables above in `directory` (created); returns the files written.

    `source`: a recording file (read as it is written out: memory stays
    bounded however long the run), a Recording or messages. Every table is
    written to a temporary file beside its target and all are renamed in
    only when all are complete: a failure (a corrupt line, a full disk)
    leaves no table half-written and the folder's previous tables as they were.
    """
    sweep, messages = _first(source)
    directory, made = _target_dir(directory, "--csv")
    tables = _TempTables(directory)
    done = False
    try:
        tables.open((("sweep",) if sweep is not None else ()))
        for name, text in table_text(messages, sweep):
            tables.write(name, text)
        written = tables.commit()
        done = True
        return written
    finally:
        tables.discard()
        if not done:
            _unmake(made)


class _TempTables:
    """Each table's temporary file in the target folder, renamed over the
    table by commit(); discard() removes whatever was not renamed."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.files: dict[str, tuple[str, io.TextIOWrapper]] = {}   # table -> (temp path, file)

    def _error(self, name: str, exc: OSError) -> WriteError:
        return WriteError(f"--csv {self.directory / name}: cannot write: {exc.strerror or exc}")

    def open(self, first_columns: tuple) -> None:
        for name, columns in TABLES.items():
            try:
                fd, tmp = temp_beside(self.directory, name)
            except OSError as exc:
                raise self._error(name, exc) from None
            self.files[name] = (tmp, self._file(fd, name))
            self.write(name, _CsvText().rows((first_columns + columns,)))

    @staticmethod
    def _file(fd: int, name: str) -> io.TextIOWrapper:
        return open(fd, "w", encoding="utf-8", newline="", buffering=1 << 20)

    def write(self, name: str, text: str) -> None:
        try:
            self.files[name][1].write(text)
        except OSError as exc:
            raise self._error(name, exc) from None

    def commit(self) -> list[Path]:
        for name, (_, f) in self.files.items():
            try:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            except OSError as exc:
                raise self._error(name, exc) from None
        written = []
        for name, (tmp, _) in list(self.files.items()):
            try:
                os.replace(tmp, self.directory / name)
            except OSError as exc:
                raise self._error(name, exc) from None
            del self.files[name]
            written.append(self.directory / name)
        fsync_dir(self.directory)   # the renames survive a crash
        return written

    def discard(self) -> None:
        for tmp, f in self.files.values():
            try:
                f.close()
            except OSError:
                pass    # a full disk: the buffered rest is not written, the file goes anyway
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        self.files.clear()


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def write_tensorboard(source: Source, directory: str | Path) -> list[Path]:
    """Scalars per step and per snapshot, histograms per snapshot, one
    SummaryWriter log per run (run-1, run-2, ... when the recording restarts).

    `source` as for write_csv: a recording file is read as it is written out.
    The event files are written to a temporary directory and moved in when
    complete, so TensorBoard never reads half of an export.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard: the tensorboard package is not installed "
                         "(pip install 'traintop[tensorboard]'); --csv needs nothing") from None
    sweep, messages = _first(source)
    directory, made = _target_dir(directory, "--tensorboard")
    done = False
    try:
        with _quiet_writer_threads():
            written = _tensorboard_into(messages, sweep, directory, SummaryWriter)
        done = True
        return written
    except OSError as exc:   # a full disk, raised again from the event writer's thread
        raise WriteError(f"--tensorboard {directory}: cannot write: "
                         f"{exc.strerror or exc}") from None
    finally:
        if not done:
            _unmake(made)


@contextlib.contextmanager
def _quiet_writer_threads():
    """The event writer's thread re-raises its OSError in the caller, which
    says it in one line: the thread's own traceback is not printed."""
    previous = threading.excepthook

    def hook(args):
        if not issubclass(args.exc_type, OSError):
            previous(args)
    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _tensorboard_into(messages: Iterable[Message], sweep: Sweep | None, directory: Path,
                      SummaryWriter) -> list:
    tmp = Path(tempfile.mkdtemp(prefix=".traintop-export-", dir=directory))
    try:
        counts: dict[int, int] = {}
        writers: dict[int, object] = {}    # sweep run -> its writer now
        names_of: dict[int, tuple] = {}
        for m in messages:
            if isinstance(m, Sweep):
                continue
            if isinstance(m, RunStarted):
                if m.run in writers:
                    writers[m.run].close()
                counts[m.run] = counts.get(m.run, 0) + 1
                names_of[m.run] = m.info.param_names
                writers[m.run] = SummaryWriter(str(_log_dir(tmp, sweep, m.run, counts[m.run])))
                writers[m.run].add_text("config", repr(m.info.config), 0)
            elif isinstance(m, Event):
                writers[m.run].add_text(f"events/{m.kind}", m.text, m.step)
            elif isinstance(m, Steps):
                for r in m.results:
                    _tb_step(writers[m.run], r, names_of[m.run])
        for writer in writers.values():
            writer.close()
        # A single run that never restarted goes in the folder itself; the
        # number of runs is known only now, the recording read once.
        root = tmp / "run-1" if sweep is None and counts.get(0, 0) == 1 else tmp
        moved = []
        for path in sorted(root.rglob("*")):
            if path.is_file():
                target = directory / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log_dir(tmp: Path, sweep: Sweep | None, run: int, count: int) -> Path:
    """run-2 (a restart) of one run (run-1 moves up into the folder itself
    where it is the only one); a sweep's run k in `k-gain=5_3` (its restarts
    in run-2, ... below it): TensorBoard names curves by folder."""
    if sweep is None:
        return tmp / f"run-{count}"
    base = tmp / (f"{run}-" + sweep.labels[run].replace("/", "_").replace(" ", ","))
    return base / f"run-{count}" if count > 1 else base


def _tb_step(writer, r, names) -> None:
    writer.add_scalar("loss", r.loss, r.step)
    writer.add_scalar("lr", r.lr, r.step)
    for n, x in zip(names, r.update_ratio_log10):
        writer.add_scalar(f"update_ratio_log10/{n}", x, r.step)
    s = r.stats
    if s is None:
        return
    for l in s.layers:
        tag = f"layer{l.index}_{l.kind}"
        for f in ("mean", "std", "saturation_pct", "grad_mean", "grad_std"):
            writer.add_scalar(f"{tag}/{f}", getattr(l, f), s.step)
        _tb_hist(writer, f"{tag}/activations", l.hist, l.mean, l.std, s.step)
        _tb_hist(writer, f"{tag}/gradients", l.grad_hist, l.grad_mean, l.grad_std, s.step)
    for w in s.weights:
        writer.add_scalar(f"weight_{w.name}/grad_data_ratio", w.grad_data_ratio, s.step)
        writer.add_scalar(f"weight_{w.name}/grad_std", w.grad_std, s.step)
        _tb_hist(writer, f"weight_{w.name}/gradients", w.hist, w.grad_mean, w.grad_std, s.step)


def _tb_hist(writer, tag: str, hist, mean: float, std: float, step: int) -> None:
    """A recorded density histogram as TensorBoard's raw one; its counts are
    the bins' shares of the values (they sum to 1: the recording keeps densities)."""
    n = len(hist.density)
    if not n:
        return
    width = (hist.hi - hist.lo) / n
    shares = [d * width for d in hist.density]
    if not all(x == x for x in shares):   # NaN densities: nothing to draw
        return
    writer.add_histogram_raw(tag, min=hist.lo, max=hist.hi, num=1.0, sum=mean,
                             sum_squares=std * std + mean * mean,
                             bucket_limits=[hist.lo + width * (i + 1) for i in range(n)],
                             bucket_counts=shares, global_step=step)
