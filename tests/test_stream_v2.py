"""Recording format 2: packed payloads round-trip bit for bit; version 1 still opens."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from traintop.commands import cli
from traintop.engine.feed.messages import RunStarted, Steps
from traintop.engine.recording.packing import (density_of, histogram_counts, pack_counts,
                                               pack_floats, unpack_counts, unpack_floats)
from traintop.engine.recording.opener import load

FIXTURES = Path(__file__).parent / "fixtures"


def _bits(values) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def test_float_arrays_round_trip_bit_for_bit():
    f32 = [float(np.float32(x)) for x in (0.1, -3.25, 1e-30, 7e37)]
    odd = [0.1, -0.0, math.inf, -math.inf, 1e300, 5e-324]      # need float64
    for values in (f32, odd, f32 + odd, []):
        packed = pack_floats(values)
        assert packed[0] == ("f" if values == f32 else "d") or not values
        back = unpack_floats(packed).ravel().tolist()
        assert _bits(back) == _bits(values)
    nan = unpack_floats(pack_floats([math.nan, 1.5])).ravel().tolist()
    assert math.isnan(nan[0]) and nan[1] == 1.5
    rows = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    assert np.array_equal(unpack_floats(pack_floats(rows.ravel(), 3), 3), rows)
    with pytest.raises(ValueError, match="bad packed floats"):
        unpack_floats("f!!!")
    with pytest.raises(ValueError, match="length"):
        unpack_floats("fAAA=", 1)


def test_rounded_series_keep_float32_precision():
    values = [0.1, -2.123456789012345]
    back = unpack_floats(pack_floats(values, round32=True)).ravel().tolist()
    assert back == [float(np.float32(v)) for v in values]
    assert all(abs(b - v) <= abs(v) * 2 ** -24 for b, v in zip(back, values))
    assert unpack_floats(pack_floats([1e300], round32=True))[0, 0] == 1e300   # no overflow


@pytest.mark.parametrize("shape", [(32, 100), (27, 10), (1000, 7)])
def test_histogram_densities_come_back_from_counts_exactly(shape):
    torch.manual_seed(0)
    t = torch.randn(shape).tanh() if shape[0] == 32 else torch.randn(shape) * 1e-3
    counts = torch.histc(t, bins=100)
    lo, hi = t.min().item(), t.max().item()
    dens, edges = torch.histogram(t.double(), bins=100, range=(lo, hi), density=True)
    # the engines' own formula (traintop.engine.steps.stats._histogram)
    width = (hi - lo) / 100
    density = [c / (t.numel() * width) for c in counts.tolist()]
    assert np.allclose(density, dens.numpy(), rtol=1e-5)    # it is torch's density
    total, found = histogram_counts(lo, hi, density)        # no hint: found from the shares
    assert found.tolist() == counts.tolist() and total == t.numel()
    back = density_of(lo, hi, total, unpack_counts(pack_counts(found)))
    assert _bits(back) == _bits(density)


def test_densities_no_counts_explain_are_refused():
    assert histogram_counts(0.0, 1.0, [0.5, 1 / math.pi, 0.1]) is None
    assert histogram_counts(0.0, 1.0, [math.nan, 1.0]) is None
    assert histogram_counts(1.0, 1.0, [1.0]) is None


def test_version_1_recording_still_opens(capsys):
    path = FIXTURES / "v1_small.jsonl"
    assert json.loads(path.read_text().splitlines()[0])["version"] == 1
    capsys.readouterr()
    assert cli.main(["replay", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    then = json.loads((FIXTURES / "v1_small.json").read_text())
    # Every figure of the summary made when the file was written, unchanged;
    # later versions add fields (a layer's name and family).
    assert contains(doc, then)


def test_version_2_recording_from_before_later_figures_still_opens(capsys):
    """v2_small.jsonl was written (traintop run --engine fast --steps 120
    --stats-every 50 --n-hidden 8 --depth 2 --record) before any figure was
    added to the declaration: it replays to the summary made then."""
    path = FIXTURES / "v2_small.jsonl"
    assert json.loads(path.read_text().splitlines()[0])["version"] == 2
    capsys.readouterr()
    assert cli.main(["replay", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert contains(doc, json.loads((FIXTURES / "v2_small.json").read_text()))


def contains(new, old) -> bool:
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and contains(new[k], v)
                                             for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(
            contains(a, b) for a, b in zip(new, old))
    return new == old


def test_version_2_holds_version_1s_results(tmp_path):
    """The v1 fixture rewritten as v2 reads back the same messages; the
    lecture engine measures in float32, so nothing is rounded."""
    from traintop.engine.recording.writer import StreamWriter

    old = load(FIXTURES / "v1_small.jsonl")
    first, *rest = old.messages
    path = tmp_path / "v2.jsonl"
    writer = StreamWriter(path, first.info, old.meta)
    for m in rest:
        writer.write(m)
    writer.close()
    new = load(path)
    assert json.loads(path.read_text().splitlines()[0])["version"] == 2
    assert new.messages == old.messages and new.meta == old.meta
    assert path.stat().st_size * 3 < (FIXTURES / "v1_small.jsonl").stat().st_size


def test_fast_engine_snapshot_rows_are_exact(tmp_path):
    """The fast engine's ratios are float64: the per-step series keeps float32
    precision, snapshot rows and each block's last row stay exact."""
    from traintop.data.dataset import load_dataset
    from traintop.engine.config import TrainConfig
    from traintop.engine.recording.recorder import Recorder
    from traintop.engine.training.trainer import Trainer

    config = TrainConfig(steps=150, stats_every=40, n_hidden=12, depth=2)
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed),
                      engine="fast")
    results = []
    path = tmp_path / "fast.jsonl"
    with Recorder(path) as rec:
        rec.consume(RunStarted(trainer.info()))
        trainer.run(on_step=lambda r: (results.append(r), rec.step(r)))
    blocks = [m.results for m in load(path).messages if isinstance(m, Steps)]
    read = [r for block in blocks for r in block]
    block_ends = {block[-1].step for block in blocks}
    assert [r.step for r in read] == [r.step for r in results]
    rounded = 0
    for got, want in zip(read, results):
        assert got.loss == want.loss and got.lr == want.lr and got.stats == want.stats
        if want.stats is not None or want.step in block_ends:
            assert got.update_ratio_log10 == want.update_ratio_log10
        else:
            rounded += got.update_ratio_log10 != want.update_ratio_log10
            assert got.update_ratio_log10 == tuple(
                float(np.float32(v)) for v in want.update_ratio_log10)
    assert rounded > 0 and read[-1] == results[-1]   # the rule above was exercised


def test_export_reads_both_versions(tmp_path, capsys):
    from traintop.engine.recording.writer import StreamWriter

    old_path = FIXTURES / "v1_small.jsonl"
    old = load(old_path)
    new_path = tmp_path / "v2.jsonl"
    writer = StreamWriter(new_path, old.messages[0].info, old.meta)
    for m in old.messages[1:]:
        writer.write(m)
    writer.close()
    tables = {}
    for name, path in (("v1", old_path), ("v2", new_path)):
        assert cli.main(["export", str(path), "--csv", str(tmp_path / name)]) == 0
        tables[name] = {p.name: p.read_text() for p in sorted((tmp_path / name).iterdir())}
    assert tables["v1"] == tables["v2"] and "steps.csv" in tables["v1"]
    assert len(tables["v1"]["steps.csv"].splitlines()) == 121      # header + 120 steps


def test_figures_added_later_travel_by_name_beside_the_first_columns(tmp_path):
    """A snapshot keeps the first figures where format 2 first put them ("lf"
    five wide, "wf" three wide: what every traintop reads), and figures added
    since by name ("lx" with "lxn"); a name this traintop does not declare (a
    newer writer's) is skipped, not misread."""
    from traintop.engine.recording.encode import dumps
    from traintop.engine.recording.snapshot_codec import LAYER_EXTRA, pack_snapshot, unpack_snapshot

    snapshot = next(r.stats for m in load(FIXTURES / "v2_small.jsonl").messages
                    if isinstance(m, Steps) for r in m.results if r.stats is not None)
    layers = tuple(dataclasses.replace(l, absmax=0.5 + k) for k, l in enumerate(snapshot.layers))
    snapshot = dataclasses.replace(snapshot, layers=layers)
    doc = json.loads(dumps(pack_snapshot(snapshot, {})))
    assert unpack_floats(doc["lf"], 5).shape == (len(layers), 5)
    assert unpack_floats(doc["wf"], 3).shape == (len(snapshot.weights), 3)
    assert "absmax" in LAYER_EXTRA and doc["lxn"][:1] == ["absmax"]
    assert unpack_snapshot(doc) == snapshot
    future = np.column_stack([unpack_floats(doc["lx"], len(doc["lxn"])),
                              np.full(len(layers), 7.0)])
    newer = {**doc, "lxn": doc["lxn"] + ["from_the_future"],
             "lx": pack_floats(future.ravel(), len(doc["lxn"]) + 1)}
    assert unpack_snapshot(newer) == snapshot
    older = {k: v for k, v in doc.items() if k not in ("lx", "lxn")}
    assert [math.isnan(l.absmax) for l in unpack_snapshot(older).layers] == [True] * len(layers)
