"""A recording as tidy CSV tables (TensorBoard: traintop.engine.export.tensorboard).

CSV (one row per observation; the recording read line by line, every table
written to a temporary file and all renamed in once all are complete):
  steps.csv          run, step, loss, log10_loss, lr, grad_norm (the total gradient
                     norm before clipping, where w.step was given it; nan: not known)
  update_ratios.csv  run, step, param, update_ratio_log10   (steps that measured them)
  layers.csv         run, step, layer, kind, then every LAYER_FIGURES name (per
                     snapshot, per layer): mean, std, saturation_pct, dead, units,
                     grad_mean, grad_std, ..., then name: the layer's module path
                     (watch(); empty for the lecture's stack, whose `layer` is its
                     position), last so a reader by position reads as before
  weights.csv        run, step, name, shape, then every WEIGHT_FIGURES name:
                     grad_mean, grad_std, grad_data_ratio, ...
  events.csv         run, step, kind, text
`run` counts runs in the recording from 1 (a restart begins the next).
A sweep's recording (several runs side by side) adds a first column `sweep`,
the run's swept values ("gain=5/3 batchnorm=off"), and `run` counts each
sweep run's restarts on its own.
Floats are written as Python writes them (shortest exact form; nan, inf).
"""

from __future__ import annotations

import csv
import io
import math
import operator
import os
from pathlib import Path
from typing import Iterable, Iterator

from traintop.engine.atomic import WriteError, fsync_dir, temp_beside
from traintop.engine.export.source import Source, first_and_all, target_dir, unmake
from traintop.engine.feed.messages import Event, Message, RunStarted, Steps, Sweep
from traintop.engine.results import LAYER_FIGURES, WEIGHT_FIGURES
from traintop.engine.step_block import StepBlock

TABLES = {
    "steps.csv": ("run", "step", "loss", "log10_loss", "lr", "grad_norm"),
    "update_ratios.csv": ("run", "step", "param", "update_ratio_log10"),
    "layers.csv": ("run", "step", "layer", "kind", *LAYER_FIGURES, "name"),
    "weights.csv": ("run", "step", "name", "shape", *WEIGHT_FIGURES),
    "events.csv": ("run", "step", "kind", "text"),
}


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
    norms = [math.nan] * n if block.grad_norm is None else block.grad_norm.tolist()
    yield "steps.csv", "".join([f"{prefix}{s},{x!r},{g!r},{r!r},{m!r}\r\n" for s, x, g, r, m
                                in zip(steps, loss, log10, block.lr.tolist(), norms)])
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
        yield "steps.csv", csv_text.rows(((*head, r.step, r.loss, r.log10_loss, r.lr,
                                           r.grad_norm),))
        yield "update_ratios.csv", csv_text.rows((*head, r.step, n, x)
                                                 for n, x in zip(names, r.update_ratio_log10))
        if r.stats is not None:
            yield from _snapshot_text(r.stats, head, csv_text)


def _snapshot_text(s, head: tuple, csv_text: _CsvText) -> Iterator[tuple[str, str]]:
    yield "layers.csv", csv_text.rows(
        (*head, s.step, l.index, l.kind, *(getattr(l, f) for f in LAYER_FIGURES), l.name)
        for l in s.layers)
    yield "weights.csv", csv_text.rows(
        (*head, s.step, w.name, "x".join(map(str, w.shape)),
         *(getattr(w, f) for f in WEIGHT_FIGURES)) for w in s.weights)


def write_csv(source: Source, directory: str | Path) -> list[Path]:
    """The tables above in `directory` (created); returns the files written.

    `source`: a recording file (read as it is written out: memory stays
    bounded however long the run), a Recording or messages. Every table is
    written to a temporary file beside its target and all are renamed in
    only when all are complete: a failure (a corrupt line, a full disk)
    leaves no table half-written and the folder's previous tables as they were.
    """
    sweep, messages = first_and_all(source)
    directory, made = target_dir(directory, "--csv")
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
            unmake(made)


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
