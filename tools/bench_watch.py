"""What watch() costs: step time of a 6-block nanoGPT-style GPT, unwatched and
under watch(every=10) and watch(every=1), measured side by side.

    python tools/bench_watch.py                 # CPU, defaults below
    python tools/bench_watch.py --device cuda --rounds 7

Variants run in alternating rounds (none, every=10, every=1, none, ...) so a
noisy machine slows them alike; each figure is the median over rounds of the
mean step time of a round. Targets (issue 11): every=10 <= 5% of step time,
every=1 <= 30%. The GPT is tests/real_models.py's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from real_models import GPT, GPTConfig, gpt_batch, gpt_optimizer  # noqa: E402

from traintop import watch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="steps per variant per round")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--embd", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="cpu: this process's CPU time (default on CPU: other load on a "
                        "shared machine does not count); wall: elapsed time (default on GPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cfg = GPTConfig(block_size=args.block, n_layer=6, n_head=4, n_embd=args.embd)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev)
    opt = gpt_optimizer(model, lr=3e-4)
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(dev) for t in gpt_batch(g, cfg, args.batch)) for _ in range(8)]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    clock_name = args.clock or ("cpu" if dev.type == "cpu" else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter

    def run(w, steps: int) -> float:
        sync()
        start = clock()
        for k in range(steps):
            loss = model(*batches[k % len(batches)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
        sync()
        return (clock() - start) / steps

    variants = {"none": None, "every=10": 10, "every=1": 1}
    times: dict[str, list[float]] = {name: [] for name in variants}
    run(None, 10)                                              # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, every in variants.items():
                # A fresh watcher per round (its hooks gone after close()), so the
                # unwatched rounds carry no hooks at all; its step 1 (always
                # measured) runs untimed, so a round times exactly steps/every
                # snapshots, as a long run has.
                w = None if every is None else watch(
                    model, Path(tmp) / f"{r}-{every}.jsonl", optimizer=opt, every=every)
                run(w, 1)
                times[name].append(run(w, args.steps))
                if w is not None:
                    w.close()
    base = statistics.median(times["none"])
    params = sum(p.numel() for p in model.parameters())
    print(f"GPT 6 blocks, n_embd {args.embd}, T {args.block}, batch {args.batch}, "
          f"{params / 1e6:.2f}M params, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps, "
          f"{clock_name} time")
    for name, ts in times.items():
        med = statistics.median(ts)
        extra = "" if name == "none" else f"  overhead {100 * (med / base - 1):+.1f}%"
        print(f"  {name:9s} {med * 1e3:8.2f} ms/step{extra}")


if __name__ == "__main__":
    main()
