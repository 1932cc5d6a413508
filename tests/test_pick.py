"""Which layers a crowded plot draws (tui/pick.py), and where its legend goes."""

from __future__ import annotations

import pytest

from traintop.tui.pick import MAX_DRAWN, fitting, headroom, pick, sets, short_labels, shorten


def test_few_keys_are_all_drawn():
    assert pick(list("abc"), {}) == (["a", "b", "c"], "all")


def test_default_is_worst_then_first_and_last_in_order():
    keys = [f"h.{k}" for k in range(12)]
    chosen, what = pick(keys, {"h.5": "warn", "h.7": "error", "h.0": "info"})
    assert chosen == ["h.0", "h.5", "h.7", "h.11"] and what == "worst, first, last: 4 of 12"
    assert pick(keys, {})[0] == ["h.0", "h.11"]
    # Filled: spread evenly to the limit, worst still in.
    filled, _ = pick(keys, {"h.5": "error"}, most=5, fill=True)
    assert len(filled) == 5 and {"h.0", "h.5", "h.11"} <= set(filled)


def test_pages_cover_every_key_then_come_back():
    keys = list(range(12))
    n = sets(len(keys))
    assert n == 1 + 3
    seen = [k for page in range(1, n) for k in pick(keys, {}, page)[0]]
    assert seen == keys
    assert pick(keys, {}, n) == pick(keys, {}, 0)            # p wraps to the default
    assert pick(keys, {}, -1) == pick(keys, {}, n - 1)       # P goes back from it
    assert all(len(pick(keys, {}, p)[0]) <= MAX_DRAWN for p in range(n))


@pytest.mark.parametrize("name, width, expected", [
    ("transformer.h.11.mlp.gelu", 30, "transformer.h.11.mlp.gelu"),
    ("transformer.h.11.mlp.gelu", 14, "…h.11.mlp.gelu"),
    ("abc", 1, "c"),
])
def test_shorten_from_the_left(name, width, expected):
    assert shorten(name, width) == expected and len(shorten(name, width)) <= width


@pytest.mark.parametrize("rows, legend", [(20, 5), (12, 3), (30, 1)])
def test_headroom_keeps_data_under_the_legend(rows, legend):
    lo, hi = -4.0, -2.0
    top = headroom(lo, hi, rows, legend)
    # Row of the highest data point, counted from the top of the canvas.
    row_of_hi = (top - hi) / (top - lo) * rows
    assert row_of_hi >= legend
    assert fitting(rows) <= max(1, (rows - 2) // 2)


def test_short_labels_drop_the_shared_ending_first():
    names = [f"transformer.h.{k}.mlp.gelu" for k in (0, 5, 11)]
    assert short_labels(names, 30) == names                      # room: whole
    # the shared start (transformer.) goes too, the index keeps its parent's name
    assert short_labels(names, 8) == ["h.0", "h.5", "h.11"]
    assert short_labels(names, 4) == ["h.0", "h.5", "h.11"]      # still told apart


def test_an_lstms_gates_stay_apart_in_a_narrow_label():
    """At 80x24 every gate read `…_gate`: the leaf's words go to initials last."""
    from traintop.tui.pick import short_labels
    names = ["emb", "rnn"] + [f"rnn.l{k}.{g}_gate" for k in (0, 1)
                              for g in ("input", "forget", "cell", "output")]
    for width in (6, 8, 10, 12):
        labels = short_labels(names, width)
        assert len(set(labels)) == len(labels) and all(len(l) <= width for l in labels)
    assert short_labels(names, 6)[2:] == ["l0.ig", "l0.fg", "l0.cg", "l0.og",
                                          "l1.ig", "l1.fg", "l1.cg", "l1.og"]


def test_a_name_with_no_like_keeps_its_leaf():
    """The saturation pane of an LSTM picked to `rnn` and one gate: the trailing
    parts a lone longer name "shares" are no shared ending (it read `rnn.l1`)."""
    assert short_labels(["rnn", "rnn.l1.output_gate"], 30) == ["rnn", "rnn.l1.output_gate"]
    assert short_labels(["rnn", "rnn.l1.output_gate"], 12) == ["rnn", "output_gate"]
    assert short_labels(["rnn", "rnn.l1.output_gate"], 8) == ["rnn", "r.l1.og"]
    # a shared ending of two or more still goes first (the title says it)
    assert short_labels(["a.fc.relu", "b.fc.relu", "c"], 4) == ["a", "b", "c"]
