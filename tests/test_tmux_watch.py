"""A watch()ed GPT for real, in a tmux terminal: `traintop attach` follows it
while it trains (rate, running, then finished), every tab draws, and
`traintop replay` opens the recording at 80x24; never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from helpers import ROOT
from helpers.tmux import TMUX_TEST, Tmux

STATUS = re.compile(r"attach · step ([\d,]+) · lr 0\.001 · GPT \+ AdamW · ([\d,.]+) steps/s · "
                    r"(running|finished)")
WRITER = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from real_models import GPT, GPTConfig, gpt_batch, gpt_optimizer
from traintop import watch
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = GPTConfig(n_layer=6)
model = GPT(cfg); opt = gpt_optimizer(model)
g = torch.Generator().manual_seed(0)
with watch(model, {path!r}, optimizer=opt, every=5) as w:
    for step in range(30):
        loss = model(*gpt_batch(g, cfg))
        opt.zero_grad(); loss.backward(); opt.step(); w.step(loss)
        time.sleep(0.1)
"""

pytestmark = TMUX_TEST


def wait_for(tmux: Tmux, pattern, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux.screen()
        match = pattern.search(screen) if hasattr(pattern, "search") else (
            pattern if pattern in screen else None)
        if match:
            return match
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; screen:\n{tmux.screen()}")


def test_attach_and_replay_a_watched_gpt_in_tmux(tmp_path):
    path = tmp_path / "gpt.jsonl"
    tmux = Tmux(tmp_path)
    app = f"cd {ROOT} && {sys.executable} -m traintop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(
        tests=str(ROOT / "tests"), path=str(path))], cwd=tmp_path)
    try:
        tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40", "sh", "-c",
             f"{app} attach {path}; echo attach exited $?; sleep 60")
        running = wait_for(tmux, STATUS, "the live status")
        if running.group(3) == "running":
            assert float(running.group(2).replace(",", "")) > 0     # a rate, not 0
        assert writer.wait(timeout=240) == 0
        wait_for(tmux, re.compile(r"step 30 · .* · finished"), "the writer's end")
        for tab, title in (("2", "activation distribution"), ("3", "weight gradient"),
                           ("4", "─ health ─"), ("1", "log10 loss")):
            tmux.keys(tab)
            wait_for(tmux, title, f"tab {tab}")
        tmux.keys("p")
        time.sleep(0.5)
        screen = tmux.screen()
        assert "Traceback" not in screen and "gain" not in screen, screen
        tmux.keys("q")
        wait_for(tmux, "attach exited 0", "attach to quit")
        tmux("kill-server")
        replay = Tmux(tmp_path)
        replay("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", "sh", "-c",
               f"{app} replay {path}; sleep 60")
        try:
            wait_for(replay, "replay · snapshot", "the replay")
            for tab in "2341":
                replay.keys(tab)
                time.sleep(0.6)
                assert "Traceback" not in replay.screen()
            assert "GPT + AdamW" in replay.screen()
        finally:
            subprocess.run(["tmux", "-L", replay.socket, "kill-server"], capture_output=True)
    finally:
        writer.kill()
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
