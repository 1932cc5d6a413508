"""Measure recordings at the scale of real runs against issue 15's targets (by hand, not in tests).

    traintop run --engine fast --steps 200000 --record full.jsonl     # the lecture's run, once
    python tools/bench_recording.py full.jsonl [--v1 full_v1.jsonl] [--size 120x40] [--gpt]

1. bytes: the recording, and the same file gzipped (level 6, as gzip(1));
   with --v1, the same for a version-1 recording of the same run;
2. `traintop replay RUN --json`: wall seconds (a fresh process, start-up
   included) and its peak RSS;
3. `traintop replay RUN` in a real terminal (tmux, --size): seconds until
   the first frame (the status line shows the replay and the panes their
   first snapshot) and until the end of
   the recording is on screen (the status line shows the last step and
   "end of recording"), and the app's peak RSS (VmHWM) once there;
4. --gpt: watch(every=1) on a 6-block GPT of the nanoGPT kind, bytes per
   stats snapshot in the recording (and what version 1's JSON of the same
   snapshot takes).

Prints one JSON document. Needs tmux for 3.

Where the gzipped bytes go, and other lossless layouts of the per-step
ratios: tools/recording_layouts.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"replay · [^\n]*?· step ([\d,]+) ·")   # the status line's step
# the steps the panes name: the gradient histogram's title, the saturation bars' caption
PANE_STEP = re.compile(r"activations · step ([\d,]+)|step ([\d,]+) · dN")


def sizes(path: Path) -> dict:
    out = {"bytes": path.stat().st_size}
    if not str(path).endswith(".gz"):
        z = gzip.compress(path.read_bytes(), compresslevel=6)
        out["gzip_bytes"] = len(z)
    return out


def replay_json(path: Path) -> dict:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
    # child would report this (large) process's peak.
    probe = ("import re, sys; from traintop.commands import cli; "
             "code = cli.main(['replay', sys.argv[1], '--json']); "
             "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
             "print(hwm, file=sys.stderr); sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    return {"seconds": round(seconds, 2),
            "rss_mb": round(int(done.stderr.split()[-1]) / 1024, 1),
            "steps": json.loads(done.stdout)["steps"]}


def _tmux(*args: str, server: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True,
                          check=True).stdout


def replay_app(path: Path, last_step: int, size: str, timeout: float = 60.0) -> dict:
    cols, rows = size.split("x")
    server = f"bench-recording-{os.getpid()}"
    command = f"exec {sys.executable} -m traintop replay {path}"
    start = time.perf_counter()
    _tmux("-f", "/dev/null", "new-session", "-d", "-s", "r", "-x", cols, "-y", rows, command,
          server=server)
    first = end = None
    pid = int(_tmux("list-panes", "-t", "r", "-F", "#{pane_pid}", server=server).split()[0])
    try:
        while time.perf_counter() - start < timeout:
            screen = _tmux("capture-pane", "-p", "-t", "r", server=server)
            now = time.perf_counter() - start
            # the first frame: the status line and the panes' first snapshot
            # drawn (the gradient histogram's title names its step)
            drawn = [a or b for a, b in PANE_STEP.findall(screen)]
            if first is None and "replay · " in screen and STEP.search(screen) and drawn:
                first = now
            m = STEP.search(screen)
            # the end: the status line at the last step, and every pane that
            # names a step (the histograms, the saturation bars) there too
            if (m and int(m.group(1).replace(",", "")) == last_step
                    and "end of recording" in screen and drawn
                    and all(int(x.replace(",", "")) == last_step for x in drawn)):
                end = now
                break
            time.sleep(0.02)
        time.sleep(2.0)   # the app settled at the end: its peak memory
        status = Path(f"/proc/{pid}/status").read_text()
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        screen = _tmux("capture-pane", "-p", "-t", "r", server=server)
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
    return {"size": size, "first_frame_s": round(first, 2) if first else None,
            "end_on_screen_s": round(end, 2) if end else None, "rss_mb": round(hwm / 1024, 1),
            "status_line": screen.rstrip().splitlines()[-1].strip() if screen.strip() else ""}


def last_step_of(path: Path) -> int:
    from traintop.engine.feed.messages import Steps
    from traintop.engine.recording.opener import read

    last = 0
    for m in read(path):
        if isinstance(m, Steps):
            last = m.results[-1].step
    return last


# ----- watch() on a 6-block GPT of the nanoGPT kind -------------------------------------
def gpt_snapshot_bytes(steps: int = 20) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional as F

    from traintop.engine.feed.messages import Steps
    from traintop.engine.recording.encode import plain as _plain
    from traintop.engine.recording.opener import read
    from traintop.engine.watch import watch

    vocab, block, n_embd, n_head, n_layer, batch = 65, 32, 64, 4, 6, 16

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2)
                       for t in self.c_attn(x).split(n_embd, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # (B, nh, T, hs)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(n_embd), Attention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                     nn.Linear(4 * n_embd, n_embd))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
            self.h = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            self.lm_head.weight = self.wte.weight            # tied embeddings

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for b in self.h:
                x = b(x)
            return self.lm_head(self.ln_f(x))                  # (B, T, vocab)

    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    out = Path(tempfile.mkdtemp()) / "gpt.jsonl"
    with watch(model, out, optimizer=opt, every=1) as w:
        for _ in range(steps):
            idx = torch.randint(0, vocab, (batch, block + 1))
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    snapshots = [r.stats for m in read(out) if isinstance(m, Steps)
                 for r in m.results if r.stats is not None]
    total = out.stat().st_size
    header = len(out.read_bytes().split(b"\n", 1)[0]) + 1
    v1 = sum(len(json.dumps(_plain(s), separators=(",", ":"))) for s in snapshots)
    shutil.rmtree(out.parent)
    # every=1: each line holds steps that all carry a snapshot, so the file
    # less its header is what the snapshots cost (their steps' loss and lr included)
    return {"snapshots": len(snapshots), "layers": len(snapshots[0].layers),
            "weights": len(snapshots[0].weights),
            "bytes_per_snapshot": round((total - header) / len(snapshots)),
            "v1_json_bytes_per_snapshot": round(v1 / len(snapshots))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="a recording of the lecture's run")
    parser.add_argument("--v1", type=Path, help="a version-1 recording of the same run")
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--gpt", action="store_true")
    parser.add_argument("--no-app", action="store_true", help="skip the tmux measurement")
    args = parser.parse_args()
    doc: dict = {"machine": f"{os.cpu_count()} CPUs", "recording": str(args.path)}
    doc["size"] = sizes(args.path)
    if args.v1:
        doc["v1_size"] = sizes(args.v1)
    doc["replay_json"] = replay_json(args.path)
    if not args.no_app:
        doc["replay_app"] = replay_app(args.path, doc["replay_json"]["steps"], args.size)
    if args.gpt:
        doc["gpt_watch"] = gpt_snapshot_bytes()
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
