"""The recordings a PATH names, and what to call each (`traintop replay PATH ...`).

A PATH is a recording or a folder; a folder names every recording under it,
at any depth (a Ray Tune experiment: one trial directory per run; a torchrun
job of `watch(..., writer_rank=None)`: one file per rank). A file under a
folder is a recording when its first line is a traintop header; other
`.jsonl` files beside it are not runs and are left out.

A run's label says what differs between the runs shown together: the rank
(the header's meta, written by watch() under torch.distributed), the
trial's config values that differ (the header's meta "config", or the
params.json Ray Tune writes in each trial directory), and where those do
not tell every run apart, the shortest part of the path that does.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from traintop.data.errors import InputError
from traintop.engine.recording.lines import is_gzip

SUFFIXES = (".jsonl", ".jsonl.gz")
HEADER_START = b'{"format":"traintop-stream"'
HEADER_BYTES = 1 << 20    # a header line is a few KiB; a longer first line is no header
PARAMS = "params.json"     # Ray Tune's trial config, one per trial directory


@dataclass(frozen=True)
class Found:
    """One recording: where it is, its header's meta, the trial it belongs to."""

    path: Path
    meta: dict = field(default_factory=dict)
    trial: str | None = None     # the trial directory's name (Ray Tune), if any
    config: dict = field(default_factory=dict)   # the trial's config values


def is_folder_args(paths: list[str]) -> bool:
    """Several PATHs, or one folder: the many-runs view. One file: the single-run one."""
    return len(paths) > 1 or any(Path(p).is_dir() for p in paths)


def header_of(path: Path) -> dict | None:
    """The recording's header line as JSON; None where the file is not a
    recording, or not yet one (empty, or its first line still being written)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError:
        return None
    if is_gzip(path):
        try:
            raw = zlib.decompressobj(wbits=31).decompress(raw, HEADER_BYTES)
        except zlib.error:
            return None
    if not raw.startswith(HEADER_START):
        return None
    line, newline, _ = raw.partition(b"\n")
    if not newline:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def natural(path: Path) -> list:
    """Sort key: rank2 before rank10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(path))]


def candidates(paths: list[str], missing_ok: bool = False) -> list[Path]:
    """Every file the PATHs name: a file itself, a folder's `.jsonl(.gz)` files
    at any depth, in natural order; a missing PATH is an InputError unless
    `missing_ok` (attach: its writer may not have started)."""
    out: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = []
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                found += [Path(folder, f) for f in files if f.endswith(SUFFIXES)]
            out += sorted(found, key=natural)
        elif path.exists() or missing_ok:
            out.append(path)
        else:
            raise InputError(f"{text}: no such file or folder")
    return out


def trial_of(path: Path, roots: list[Path]) -> tuple[str | None, dict]:
    """The Ray Tune trial holding `path`: the nearest params.json in its
    folder or one above it, up to the PATH it was found under."""
    tops = {r.resolve() for r in roots}
    folder = path.parent.resolve()
    while True:
        params = folder / PARAMS
        if params.is_file():
            try:
                config = json.loads(params.read_text())
            except (OSError, ValueError):
                config = None
            if isinstance(config, dict):
                return folder.name, config
        if folder in tops or folder.parent == folder:
            return None, {}
        folder = folder.parent


def found(path: Path, header: dict, roots: list[Path]) -> Found:
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    trial, config = trial_of(path, roots)
    if isinstance(meta.get("config"), dict):      # watch(meta={"config": ...}) says it itself
        config = {**config, **meta["config"]}
    if isinstance(meta.get("trial"), str):
        trial = meta["trial"]
    return Found(path, meta, trial, config)


def discover(paths: list[str], known: set[Path] = frozenset(),
             missing_ok: bool = False) -> tuple[list[Found], list[Path]]:
    """The recordings under the PATHs not in `known`, and the files left out
    (not a recording, or not yet one: a follower looks at those again)."""
    roots = [Path(p) for p in paths]
    runs, left = [], []
    for path in candidates(paths, missing_ok):
        if path in known:
            continue
        header = header_of(path)
        if header is None:
            left.append(path)
        else:
            runs.append(found(path, header, roots))
    return runs, left


def value_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def labels(runs: list[Found]) -> list[str]:
    """What differs between the runs: rank, config values, else a path part."""
    parts: list[list[str]] = [[] for _ in runs]
    ranks = [r.meta.get("rank") for r in runs]
    if len({str(r) for r in ranks}) > 1:
        for p, rank in zip(parts, ranks):
            if rank is not None:
                p.append(f"rank={rank}")
    keys = list(dict.fromkeys(k for r in runs for k in r.config))
    for key in keys:
        values = [value_text(r.config[key]) if key in r.config else None for r in runs]
        if len(set(values)) > 1:
            for p, value in zip(parts, values):
                if value is not None:
                    p.append(f"{key}={value}")
    out = [" ".join(p) for p in parts]
    groups: dict[str, list[int]] = {}
    for k, label in enumerate(out):
        groups.setdefault(label, []).append(k)
    for label, members in groups.items():
        if len(members) == 1 and label:
            continue
        where = path_parts([runs[k].path for k in members])
        for k, part in zip(members, where):
            out[k] = f"{label} {part}" if label else part
    return out


def path_parts(paths: list[Path]) -> list[str]:
    """The shortest part of each path that tells it from the others: the
    folders and name left once what every path shares at its start and end
    is taken off (`runs/seed1/run.jsonl`, `runs/seed2/run.jsonl`: seed1, seed2)."""
    comps = [list(Path(os.path.abspath(p)).parts) for p in paths]
    for c in comps:
        c[-1] = strip_suffix(c[-1])
    shortest = min(len(c) for c in comps)
    lead = 0
    while lead < shortest - 1 and len({c[lead] for c in comps}) == 1:
        lead += 1
    trail = 0
    while (trail < shortest - lead - 1 and len(comps) > 1
           and len({c[-1 - trail] for c in comps}) == 1):
        trail += 1
    return ["/".join(c[lead:len(c) - trail]) for c in comps]


def strip_suffix(name: str) -> str:
    for suffix in SUFFIXES[::-1]:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name
