"""A new health error flashes the status line once and marks its layers."""

from __future__ import annotations


import pytest

from traintop.engine.config import TrainConfig
from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource, async_test, recorded_run, until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")




@async_test
async def test_new_error_flashes_once_and_marks_saturated_layers():
    # Gain 3 without BatchNorm saturates every Tanh layer: tanh-saturation errors.
    messages = recorded_run(TrainConfig(n_hidden=30, steps=1000, stats_every=20,
                                        batchnorm=False, gain="3"), steps=100)
    source = FakeSource(messages)
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue)
        await until(pilot, lambda: app.status_line.has_class("alert"))
        errors = [f for f in app.state.findings() if f.severity == "error"]
        assert any(f.rule == "tanh-saturation" for f in errors)
        await until(pilot, lambda: not app.status_line.has_class("alert"), timeout=6)
        # The same findings persist: no second flash on later redraws.
        app.alert_new_errors()
        assert not app.status_line.has_class("alert")


def test_saturation_labels_carry_the_marks():
    from types import SimpleNamespace

    from traintop.engine.health.rules import Finding
    from traintop.tui.saturation_pane import SaturationPane

    layer = lambda i, pct: SimpleNamespace(index=i, name="", saturation_pct=pct, dead=0, units=30,
                                           fam="tanh", label=f"L{i}")
    stats = SimpleNamespace(step=20, layers=[layer(1, 45.0), layer(3, 3.0)])
    finding = Finding(rule="tanh-saturation", severity="error", where="layer 1 (Tanh)",
                      value=45.0, healthy="<= 25%", message="", step=20)
    state = SimpleNamespace(stats=stats, findings=lambda: [finding])
    pane = SaturationPane.__new__(SaturationPane)
    pane.page, pane.canvas_rows, pane.label_width = 0, lambda: 20, lambda share: 40
    pane.take(state)
    assert pane.marks == {1: "error"}
