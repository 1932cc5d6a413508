"""Health findings mark the layers and parameters they name in the panes."""

from __future__ import annotations

from traintop.engine.health.rules import Finding
from traintop.tui.health_marks import badge, layer_marks, param_marks


def finding(rule, severity, where):
    return Finding(rule=rule, severity=severity, where=where, value=1.0, healthy="",
                   message="", step=1)


def test_layer_marks_take_the_worst_severity():
    findings = [finding("tanh-saturation", "warn", "layer 5 (Tanh)"),
                finding("dead-neurons", "error", "layer 5 (Tanh)"),
                finding("activation-shrink", "warn", "layers 2-8"),
                finding("tanh-saturation", "info", "layer 11 (Tanh)")]
    assert layer_marks(findings, [2, 5, 8, 11, 14]) == {5: "error", 2: "warn", 8: "warn"}
    assert layer_marks(None, [2]) == {}


def test_param_marks():
    names = ["C", "0.weight", "10.weight"]
    assert param_marks([finding("grad-data-outlier", "warn", "weight 10.weight (100, 27)")],
                       names) == {"10.weight": "warn"}
    assert param_marks([finding("update-ratio-low", "error", "all weights")], names) == \
        {"C": "error", "0.weight": "error", "10.weight": "error"}
    assert param_marks([finding("grad-data-outlier", "info", "weight C (27, 10)")], names) == {}
    assert (badge("warn"), badge("error"), badge(None)) == ("!", "!!", "")
