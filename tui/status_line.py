"""The always-visible status line:
`step 12,345 · lr 0.1 · gain 5/3 · BatchNorm on · 812 steps/s · running`."""

from __future__ import annotations

from textual.widgets import Static

from tui.run_state import RunState


def status_text(state: RunState, read_only: bool = False) -> str:
    info, status = state.info, state.status
    if info is None:
        return "waiting for the run to start…"
    config = info.config
    lr = status.lr if status is not None else config["lr"]
    parts = [f"step {state.step:,}", f"lr {lr:g}", f"gain {config['gain']}",
             f"BatchNorm {'on' if config['batchnorm'] else 'off'}"]
    # Off-default init choices show only when changed, so the usual line
    # keeps its documented form.
    if not config.get("fan_in", True):
        parts.append("fan-in off")
    if config.get("activation", "tanh") != "tanh":
        parts.append(f"{config['activation']} activation")
    rate = status.steps_per_sec if status is not None else 0.0
    parts.append(f"{rate:,.0f} steps/s")
    parts.append(run_state_word(state))
    if read_only:
        parts.append("read-only")
    return " · ".join(parts)


def run_state_word(state: RunState) -> str:
    status = state.status
    if status is None:
        return "starting"
    if status.stopped:
        return f"stopped: {status.stopped}"
    if status.finished:
        return "finished"
    return "running" if status.running else "paused"


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $primary-background; }
    """

    _shown: str | None = None

    def show(self, state: RunState, read_only: bool = False) -> None:
        text = status_text(state, read_only)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)   # one fixed row: no layout pass
