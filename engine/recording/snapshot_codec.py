"""A stats snapshot in format 2, both ways, by the figures
traintop.engine.results declares (LAYER_FIGURES, WEIGHT_FIGURES).

    {"step": 100, "loss": 2.3, "lr": 0.1,
     "layers": [[index, kind, units, dead(, name, family, per_unit)], ...],
     "lf": packed floats, V2_LAYER_FLOATS wide, one row per layer,
     "lx": packed floats, one column per name of "lxn" (figures declared since),
     "weights": [[name, shape], ...], "wf": V2_WEIGHT_FLOATS wide, "wx"/"wxn" likewise,
     "u": update ratios, "range": (lo, hi) of every histogram, "hists": their counts}

The columns of "lf", "wf" and the row are the layout format 2 was first
written with, fixed so that every recording (and every traintop) reads them
alike. A figure declared since travels by name in "lx"/"wx": a reader that
does not know it skips it, and a recording written before it reads back
without it (the field's default, NaN).
"""

from __future__ import annotations

from traintop.engine.recording.json_numbers import num, number
from traintop.engine.recording.packing import (density_of, histogram_counts, pack_counts,
                                               pack_floats, unpack_counts, unpack_floats)
from traintop.engine.results import (LAYER_FIGURES, WEIGHT_FIGURES, Histogram, LayerStats,
                                     StatsSnapshot, WeightStats)

V2_LAYER_FLOATS = ("mean", "std", "saturation_pct", "grad_mean", "grad_std")
V2_LAYER_ROW = ("units", "dead")        # after index and kind in a layer's row
V2_WEIGHT_FLOATS = ("grad_mean", "grad_std", "grad_data_ratio")
# watch()'s layers add these to the row (module path, family, observations per unit)
_ROW_TAIL = ("name", "family", "per_unit")

LAYER_EXTRA = tuple(f for f in LAYER_FIGURES if f not in V2_LAYER_FLOATS + V2_LAYER_ROW)
WEIGHT_EXTRA = tuple(f for f in WEIGHT_FIGURES if f not in V2_WEIGHT_FLOATS)


def _hists(snapshot: StatsSnapshot) -> list[tuple[tuple, Histogram]]:
    """Every histogram of a snapshot with a key naming its slot, in file order."""
    return ([(("a", x.index), x.hist) for x in snapshot.layers]
            + [(("g", x.index), x.grad_hist) for x in snapshot.layers]
            + [(("w", x.name), x.hist) for x in snapshot.weights])


def _columns(items, names: tuple[str, ...]) -> str:
    """The named figures of every item, one row each, packed."""
    return pack_floats([getattr(x, f) for x in items for f in names], len(names))


def _measured(items, names: tuple[str, ...]) -> tuple[str, ...]:
    """The figures some item holds a number for: one no item measured (a
    snapshot read from a file older than the figure, rewritten) stays
    unwritten, and reads back as the same default."""
    return tuple(f for f in names if any(getattr(x, f) == getattr(x, f) for x in items))


def _hist_entry(key, h: Histogram, totals: dict) -> list:
    """A histogram's entry of "hists": [total, packed counts], its counts
    searched back from its densities, or the densities where no counts
    reproduce them."""
    found = histogram_counts(h.lo, h.hi, h.density, totals.get(key))
    if found is None:   # densities no counts reproduce: kept as they are
        return [pack_floats(h.density)]
    totals[key] = found[0]
    return [found[0], pack_counts(found[1])]


def pack_snapshot(s: StatsSnapshot, totals: dict) -> dict:
    """`totals`: each histogram's item count last time, which finds its counts at once."""
    if isinstance(s, PackedSnapshot):
        return s.packed(totals)
    hists = [_hist_entry(key, h, totals) for key, h in _hists(s)]
    layers, weights = s.layers, s.weights
    doc = {"step": s.step, "loss": num(s.loss), "lr": num(s.lr),
           "layers": [[x.index, x.kind, *(getattr(x, f) for f in V2_LAYER_ROW)]
                      + ([getattr(x, f) for f in _ROW_TAIL] if x.name or x.family or x.per_unit
                         else []) for x in layers],
           "lf": _columns(layers, V2_LAYER_FLOATS)}
    extra = _measured(layers, LAYER_EXTRA)
    if extra:
        doc["lx"], doc["lxn"] = _columns(layers, extra), list(extra)
    doc["weights"] = [[x.name, list(x.shape)] for x in weights]
    doc["wf"] = _columns(weights, V2_WEIGHT_FLOATS)
    extra = _measured(weights, WEIGHT_EXTRA)
    if extra:
        doc["wx"], doc["wxn"] = _columns(weights, extra), list(extra)
    doc.update({"u": pack_floats(s.update_ratio_log10),
                "range": pack_floats([v for _, h in _hists(s) for v in (h.lo, h.hi)], 2),
                "hists": hists})
    return doc


class PackedSnapshot(StatsSnapshot):
    """A StatsSnapshot made as its line's payload, straight from a measured
    step's arrays (watch()'s: no per-layer or per-histogram object is built on
    the training's thread); its layers and weights are read back from that
    payload when first asked for, as a reader of the file gets them."""

    def __init__(self, step: int, loss: float, lr: float, update_ratio_log10: tuple,
                 doc: dict, hists: list):
        for name, value in (("step", step), ("loss", loss), ("lr", lr),
                            ("update_ratio_log10", update_ratio_log10),
                            ("_doc", doc), ("_hist_entries", hists)):
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        if name not in ("layers", "weights"):
            raise AttributeError(name)
        read = unpack_snapshot(self.packed({}))
        object.__setattr__(self, "layers", read.layers)
        object.__setattr__(self, "weights", read.weights)
        return self.__dict__[name]

    def packed(self, totals: dict) -> dict:
        hists = []
        for key, total, counts in self._hist_entries:
            if isinstance(total, Histogram):    # densities: their counts searched for
                hists.append(_hist_entry(key, total, totals))
            else:
                totals[key] = total
                hists.append([total, pack_counts(counts)])
        return {**self._doc, "hists": hists}


def packed_snapshot(step: int, loss: float, lr: float, layer_rows: list[list],
                    layer_figures: dict[str, list[float]], weight_rows: list[list],
                    weight_figures: dict[str, list[float]], update: tuple,
                    hists: list[tuple]) -> PackedSnapshot:
    """pack_snapshot's payload from the figures themselves: layer_rows as its
    "layers", layer_figures every float of LAYER_FIGURES by name (a list over
    the layers), weights likewise; hists (key, lo, hi, total, counts or
    None, density or None) in file order, lo and hi as the Histogram's."""
    doc = {"step": step, "loss": num(loss), "lr": num(lr), "layers": layer_rows,
           "lf": _figure_columns(layer_figures, V2_LAYER_FLOATS)}
    extra = tuple(f for f in LAYER_EXTRA if any(v == v for v in layer_figures[f]))
    if extra:
        doc["lx"], doc["lxn"] = _figure_columns(layer_figures, extra), list(extra)
    doc["weights"] = weight_rows
    doc["wf"] = _figure_columns(weight_figures, V2_WEIGHT_FLOATS)
    extra = tuple(f for f in WEIGHT_EXTRA if any(v == v for v in weight_figures[f]))
    if extra:
        doc["wx"], doc["wxn"] = _figure_columns(weight_figures, extra), list(extra)
    doc["u"] = pack_floats(update)
    doc["range"] = pack_floats([v for _, lo, hi, *_ in hists for v in (lo, hi)], 2)
    entries = [(key, total, counts) if counts is not None
               else (key, Histogram(lo, hi, tuple(density)), None)
               for key, lo, hi, total, counts, density in hists]
    return PackedSnapshot(step, loss, lr, update, doc, entries)


def _figure_columns(figures: dict[str, list[float]], names: tuple[str, ...]) -> str:
    """_columns of figures given by name: rows of `names`, packed."""
    columns = [figures[f] for f in names]
    return pack_floats([v for row in zip(*columns) for v in row], len(names))


def _figures(d: dict, fixed: tuple[str, ...], packed: str, extra: str, declared: dict,
             rows: int) -> list[dict]:
    """Per row, {figure: value} of every declared figure the file holds."""
    columns = dict(zip(fixed, unpack_floats(d[packed], len(fixed)).T.tolist()))
    names = d.get(extra + "n")
    if names is not None:
        names = [str(x) for x in names]
        columns.update(zip(names, unpack_floats(d[extra], len(names)).T.tolist()))
    for name, values in columns.items():
        if len(values) != rows:
            raise ValueError("snapshot figures and names differ in length")
    known = [(name, kind) for name, kind in declared.items() if name in columns]
    return [{name: kind(columns[name][k]) for name, kind in known} for k in range(rows)]


def unpack_snapshot(d: dict) -> StatsSnapshot:
    layers, weights = d["layers"], d["weights"]
    ranges = unpack_floats(d["range"], 2).tolist()
    packed = d["hists"]
    if not len(ranges) == len(packed) == 2 * len(layers) + len(weights):
        raise ValueError("snapshot figures and names differ in length")
    hists = []
    for (lo, hi), entry in zip(ranges, packed):
        if len(entry) == 2:
            density = density_of(lo, hi, int(entry[0]), unpack_counts(entry[1]))
        else:
            density = unpack_floats(entry[0]).ravel().tolist()
        hists.append(Histogram(lo, hi, tuple(density)))
    n = len(layers)
    lf = _figures(d, V2_LAYER_FLOATS, "lf", "lx", LAYER_FIGURES, n)
    wf = _figures(d, V2_WEIGHT_FLOATS, "wf", "wx", WEIGHT_FIGURES, len(weights))
    return StatsSnapshot(
        step=int(d["step"]), loss=number(d["loss"]), lr=number(d["lr"]),
        layers=tuple(_layer(row, f, hists[k], hists[n + k])
                     for k, (row, f) in enumerate(zip(layers, lf))),
        weights=tuple(WeightStats(name=str(name), shape=tuple(int(x) for x in shape),
                                  hist=hists[2 * n + j], **f)
                      for j, ((name, shape), f) in enumerate(zip(weights, wf))),
        update_ratio_log10=tuple(unpack_floats(d["u"]).ravel().tolist()))


def _layer(row: list, figures: dict, hist: Histogram, grad_hist: Histogram) -> LayerStats:
    index, kind, *rest = row
    row_figures = {f: LAYER_FIGURES[f](v) for f, v in zip(V2_LAYER_ROW, rest)}
    if len(rest) < len(V2_LAYER_ROW):
        raise ValueError(f"a layer's row of {len(row)} fields")
    tail = rest[len(V2_LAYER_ROW):len(V2_LAYER_ROW) + len(_ROW_TAIL)]
    name, family, per_unit = tail if len(tail) == len(_ROW_TAIL) else ("", "", 0)
    return LayerStats(index=int(index), kind=str(kind), hist=hist, grad_hist=grad_hist,
                      name=str(name), family=str(family), per_unit=int(per_unit),
                      **row_figures, **figures)
