"""What watch() costs: step time of a model unwatched and watched, measured
side by side.

    python tools/bench_watch.py                        # the tiny MLP (issue 23)
    python tools/bench_watch.py --model gpt            # the 6-block GPT (issue 11)
    python tools/bench_watch.py --device cuda --rounds 7

Variants run in alternating rounds (none, every=..., none, ...) so a noisy
machine slows them alike; each figure is the median over rounds of the mean
step time of a round, and its overhead is against the bare loop's median.

--model mlp (default): 32-128-128-10 ReLU MLP, batch 64, SGD, one thread,
CPU time: unarmed (every=100000), every=100, every=10, and under
torch.compile the compiled loop bare and unarmed, with the graph breaks and
recompiles counted on the unarmed steps. Targets (issue 23): unarmed <= 2%,
every=10 <= 20%, no graph break or recompile when compiled.
--model gpt: tests/real_models.py's GPT; targets (issue 11): every=10 <= 5%,
every=1 <= 30%.
--against DIR: another checkout of traintop (a git worktree of an older
commit, say) loaded into this same process beside this one, its watch() in
the same alternating rounds, and the two compared round by round (the
median of their paired differences). On a shared machine two processes run
one after the other differ by more than most changes do; rounds side by
side in one process see the same load.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from real_models import GPT, GPTConfig, gpt_batch, gpt_optimizer  # noqa: E402

from traintop import watch  # noqa: E402


def load_checkout(root: Path):
    """watch() of the traintop checkout at `root`, imported beside this one:
    its folders mapped under the package name as setup.py maps them, in a
    temporary folder of links, while this tree's modules step aside."""
    ours = {k: m for k, m in sys.modules.items() if k == "traintop" or k.startswith("traintop.")}
    for k in ours:
        del sys.modules[k]
    link = Path(tempfile.mkdtemp()) / "traintop"
    link.mkdir()
    for item in (root / "traintop").iterdir():
        (link / item.name).symlink_to(item)
    for sub in ("engine", "data", "tui"):
        (link / sub).symlink_to(root / sub)
    sys.path.insert(0, str(link.parent))
    try:
        from traintop import watch as theirs
    finally:
        sys.path.remove(str(link.parent))
        for k in [k for k in sys.modules if k == "traintop" or k.startswith("traintop.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    return theirs


def setup_gpt(args, dev):
    cfg = GPTConfig(block_size=args.block, n_layer=6, n_head=4, n_embd=args.embd)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev)
    opt = gpt_optimizer(model, lr=3e-4)
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(dev) for t in gpt_batch(g, cfg, args.batch)) for _ in range(8)]
    params = sum(p.numel() for p in model.parameters())
    title = (f"GPT 6 blocks, n_embd {args.embd}, T {args.block}, batch {args.batch}, "
             f"{params / 1e6:.2f}M params")
    return model, opt, batches, (lambda m, b: m(*b)), title


def setup_mlp(args, dev):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 32, generator=g).to(dev),
                torch.randint(0, 10, (64,), generator=g).to(dev)) for _ in range(8)]
    return (model, opt, batches, (lambda m, b: F.cross_entropy(m(b[0]), b[1])),
            "MLP 32-128-128-10 (ReLU), batch 64, SGD")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("mlp", "gpt"), default="mlp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=None, help="default: mlp 21, gpt 5")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per variant per round (default: mlp 200, gpt 50)")
    p.add_argument("--batch", type=int, default=16, help="gpt only")
    p.add_argument("--block", type=int, default=64, help="gpt only")
    p.add_argument("--embd", type=int, default=128, help="gpt only")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: mlp 1, gpt torch's default)")
    p.add_argument("--no-compile", action="store_true", help="mlp: skip the torch.compile rows")
    p.add_argument("--against", type=Path, default=None, metavar="DIR",
                   help="another traintop checkout: its watch() in the same rounds, paired")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="cpu: this process's CPU time (default on CPU: other load on a "
                        "shared machine does not count); wall: elapsed time (default on GPU)")
    args = p.parse_args()
    mlp = args.model == "mlp"
    rounds = args.rounds or (21 if mlp else 5)
    steps = args.steps or (200 if mlp else 50)
    threads = args.threads if args.threads is not None else (1 if mlp else 0)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(args.device)
    model, opt, batches, loss_of, title = (setup_mlp if mlp else setup_gpt)(args, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    clock_name = args.clock or ("cpu" if dev.type == "cpu" else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter

    def run(m, w, n: int) -> float:
        sync()
        start = clock()
        for k in range(n):
            loss = loss_of(m, batches[k % len(batches)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
        sync()
        return (clock() - start) / n

    # (name, model called, every or None, the bare row it is compared with)
    variants = ([("none", model, None, None), ("every=100000", model, 100000, "none"),
                 ("every=100", model, 100, "none"), ("every=10", model, 10, "none")] if mlp
                else [("none", model, None, None), ("every=10", model, 10, "none"),
                      ("every=1", model, 1, "none")])
    watches = {}
    if args.against is not None:
        # each variant's twin right after it (their order swapped every other round)
        theirs = load_checkout(args.against.resolve())
        variants = variants[:1] + [v for name, m, every, base in variants[1:] for v in (
            (name, m, every, base), (f"{name} against", m, every, base))]
        watches = {name: theirs for name, *_ in variants if name.endswith(" against")}
    compiled = None
    if mlp and not args.no_compile:
        compiled = torch.compile(model)
        variants += [("compiled", compiled, None, None),
                     ("compiled every=100000", compiled, 100000, "compiled")]
    times: dict[str, list[float]] = {name: [] for name, *_ in variants}
    run(model, None, 20)                                       # warm-up
    breaks = recompiles = 0
    if compiled is not None:
        from torch._dynamo.utils import counters
        # compiled on a measured step's neighbour, as a run would: step 1 is measured
        # (eagerly), the compile comes with the first unmeasured step
        with tempfile.TemporaryDirectory() as tmp:
            w = watch(compiled, Path(tmp) / "warm.jsonl", optimizer=opt, every=100000)
            run(compiled, w, 3)
            w.close()
        run(compiled, None, 20)
        frames = dict(counters["frames"])
        graph_breaks = sum(counters["graph_break"].values())
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = variants
            if watches and r % 2:
                paired = 1 + 2 * len(watches)       # then the compiled rows, unpaired
                order = variants[:1] + [v for k in range(1, paired, 2)
                                        for v in (variants[k + 1], variants[k])]
                order += variants[paired:]
            for name, m, every, _ in order:
                # A fresh watcher per round (its hooks gone after close()), so the
                # unwatched rounds carry no hooks at all; its step 1 (always
                # measured) runs and is written untimed, so a round times exactly
                # steps/every snapshots, as a long run has.
                w = None if every is None else watches.get(name, watch)(
                    m, Path(tmp) / f"{r}-{name}.jsonl", optimizer=opt, every=every)
                run(m, w, 1)
                if w is not None:
                    w.flush()
                gc.collect()      # every round from the same heap (the last round's watchers gone)
                times[name].append(run(m, w, steps))
                if w is not None:
                    w.close()
    if compiled is not None:
        recompiles = counters["frames"]["total"] - frames.get("total", 0)
        breaks = sum(counters["graph_break"].values()) - graph_breaks
    print(f"{title}, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {rounds} rounds x {steps} steps, "
          f"{clock_name} time, median of alternating rounds")
    for name, _, _, base in variants:
        med = statistics.median(times[name])
        extra = "" if base is None else \
            f"  overhead {100 * (med / statistics.median(times[base]) - 1):+.1f}%"
        print(f"  {name:22s} {med * 1e6:9.1f} us/step{extra}")
    for name in watches:
        ours = name[:-len(" against")]
        paired = sorted((a - b) / statistics.median(times["none"])
                        for a, b in zip(times[ours], times[name]))
        q = len(paired) // 4
        print(f"  {ours}: this tree minus --against, paired rounds: median "
              f"{100 * statistics.median(paired):+.1f} points (quartiles "
              f"{100 * paired[q]:+.1f} .. {100 * paired[-1 - q]:+.1f})")
    if compiled is not None:
        print(f"  torch.compile over the timed rounds (measured steps run eagerly): "
              f"{recompiles} frames compiled again, {breaks} graph breaks")


if __name__ == "__main__":
    main()
