"""Panes are registered once (tui/panes.py) and the app follows the registry:
every pane is composed in its tab, marked by the state parts it follows,
reached by its tab's key and described in the help; a pane only this test
registers shows up the same way, with no edit of the app.
"""

from __future__ import annotations

import pytest
from textual.widgets import Markdown, Static, TabbedContent

from traintop.engine.viewer.run_state import ALL_PANES
from traintop.tui import keys, panes
from traintop.tui.app import TraintopApp
from traintop.tui.help_screen import HelpScreen, help_text
from traintop.tui.panes import AT_ONCE, OVERVIEW, RUN, SWEEP, TABS, TEXT_CLOCK, Pane
from tui_fakes import FakeSource, async_test, until
from tui_fixed_run import fixed_run
from tui_sweep_runs import formula_sweep

SWEEP_PART = "sweep"   # what SweepState.apply adds: a sweep started, a view switched


class ExtraPane(Static):
    """A text pane as a new one would be: its own class, show(state)."""

    shown = 0

    def show(self, state) -> None:
        self.shown += 1
        self.update(f"events seen: {len(state.events)}")


EXTRA = Pane("extra", lambda s: ExtraPane("extra", id="extra-pane"), frozenset({"events"}),
             AT_ONCE, "health", "health-right", "the test's own pane")


@pytest.fixture
def extra_pane():
    panes.register(EXTRA)
    try:
        yield EXTRA
    finally:
        panes.unregister(EXTRA.name)


def test_the_engine_parts_and_the_registry_agree():
    """RunState.apply's names (engine/viewer/run_state.py, Textual-free) are
    each followed by a pane, and no pane follows a name the state never says."""
    followed = set().union(*(p.follows for p in panes.panes()))
    assert followed <= set(ALL_PANES) | {SWEEP_PART}
    assert set(ALL_PANES) - followed == {"status"}   # the status line's, not a pane's


def test_entries_are_whole():
    names = [p.name for p in panes.panes()]
    assert len(names) == len(set(names))
    tab_names = {t.name for t in TABS}
    for p in panes.panes():
        assert p.tab in tab_names | {OVERVIEW}, p.name
        assert p.view in (RUN, SWEEP) and (p.view == SWEEP) == (p.tab == OVERVIEW), p.name
        assert p.help.strip(), p.name
        assert not (p.picks and not p.plot), p.name   # p pages plots only


def test_keys_follow_the_registry():
    bound = {b.key: b.action for b in keys.BINDINGS}
    for k, tab in enumerate(TABS):
        assert bound[str(k + 1)] == f"tab('{tab.name}')"
    assert keys.STEERING_KEYS == {b.key for b in keys.BINDINGS
                                  if b.action.split("(")[0] in keys.STEERING_ACTIONS}
    assert TraintopApp.BINDINGS is keys.BINDINGS


def test_every_pane_is_described_in_help():
    text = help_text()
    for p in panes.panes():
        assert p.help.strip() in text, p.name
    assert f"| 1-{len(TABS)} | switch tab: {', '.join(t.name for t in TABS)} |" in text


def test_a_registered_pane_is_built_and_described(extra_pane):
    app = TraintopApp(FakeSource([]))
    assert isinstance(app.panes["extra"], ExtraPane) and app.extra is app.panes["extra"]
    assert "the test's own pane" in help_text()
    assert [p.name for p in app.registered][-1] == "extra"


async def visit(pilot, app, tab) -> None:
    await pilot.press(keys.tab_key(tab.name))
    await until(pilot, lambda: app.query_one(TabbedContent).active == tab.id,
                what=f"tab {tab.name}")
    await pilot.pause(0.2)   # a lazy tab mounts its panes


@async_test
async def test_every_pane_is_composed_reached_and_marked(extra_pane):
    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue and app.state.status is not None,
                    what="the run to load")
        for tab in TABS:
            await visit(pilot, app, tab)
            for p in app.registered:
                if p.tab != tab.name:
                    continue
                widget = app.panes[p.name]
                # composed into its tab, and shown by the tab's key
                assert widget.is_mounted, p.name
                assert any(a.id == tab.id for a in widget.ancestors), p.name
                assert widget.is_on_screen or widget.styles.display == "none", p.name
        extra = app.panes["extra"]
        assert extra.parent.id == "health-right"
        extra.shown = 0
        for p in app.registered:
            if p.view != RUN:
                continue
            await check_marked(app, p)
        assert extra.shown >= 1 and "events seen" in str(extra.content)
        # the help screen of the app shows the extra pane's words
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert "the test's own pane" in app.screen.query_one(Markdown).source


async def check_marked(app, p: Pane) -> None:
    """Marking each part `p` follows marks `p`; a part it does not follow leaves it be."""
    widget = app.panes[p.name]
    for part in sorted(p.follows):
        if p.plot:
            widget.dirty = False
            app.mark({part})
            assert widget.dirty, (p.name, part)
        elif p.redraw == TEXT_CLOCK:
            app._text_dirty.clear()
            app.mark({part})
            assert p.name in app._text_dirty, (p.name, part)
        else:
            calls = []
            original = widget.show
            widget.show = lambda state, _o=original: (calls.append(state), _o(state))
            try:
                app.mark({part})
            finally:
                del widget.show
            assert calls == [app.state], (p.name, part)
    if p.plot:
        widget.dirty = False
        app.mark({"status"})   # the status line's part: no pane follows it
        assert not widget.dirty, p.name


@async_test
async def test_the_overview_holds_the_sweep_panes():
    app = TraintopApp(FakeSource(formula_sweep(100, ("1", "3"))))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.sweep.is_sweep and not app.source.queue,
                    what="the sweep")
        await pilot.pause(0.2)
        for p in app.registered:
            widget = app.panes[p.name]
            if p.tab != OVERVIEW:
                continue
            assert any(a.id == "overview" for a in widget.ancestors), p.name
            assert widget.is_on_screen, p.name
            if p.plot:
                widget.dirty = False
            app.mark({SWEEP_PART}, SWEEP)   # a view switched: every overview pane
            assert widget.dirty if p.plot else p.name in app._text_dirty, p.name
        await pilot.press("v")   # a run in full: the tabs; o: the overview again
        await pilot.pause(0.1)
        assert not app.sweep_loss.is_on_screen
        await pilot.press("o")
        await pilot.pause(0.1)
        assert app.sweep_loss.is_on_screen


@async_test
async def test_p_pages_the_picking_panes_and_j_scrolls_the_tabs_table():
    app = TraintopApp(FakeSource(fixed_run()))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.source.queue, what="the run to load")
        await pilot.press("p")
        await pilot.pause(0.1)
        for p in app.registered:
            if p.plot and p.view == RUN:
                assert app.panes[p.name].page == (1 if p.picks else 0), p.name
        scrolling = [p for p in app.registered if p.scrolls]
        assert {p.tab for p in scrolling} == {"weights", "health"}
