"""Command-line options shared by `traintop`, `traintop run` and friends."""

from __future__ import annotations

import argparse
import math

from traintop.data.errors import InputError
from traintop.engine.config import DEFAULT_ENGINE, ENGINES, STAGE_FIXED, STAGES, TrainConfig
from traintop.engine.sweep.spec import SweepRun, parse_sweep
from traintop.engine.training.checkpoint_header import read_header

# option dest -> TrainConfig field (same name unless listed)
CONFIG_OPTIONS = ("n_embd", "n_hidden", "depth", "block_size", "batchnorm", "activation",
                  "gain", "fan_in", "init",
                  "bias", "last_layer_scale", "steps", "lr", "lr_decay_step", "lr_after",
                  "batch_size", "seed", "split_seed", "stats_every", "stage")


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (the usage block is what
    --help prints), as every other bad input is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(option: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
        return value
    parse.__name__ = option
    return parse


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def add_train_options(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--data", metavar="PATH",
                   help="text file, one word per line (default: embedded US names of 2017)")
    g.add_argument("--steps", type=_count(0), help=f"steps of the run (default {d.steps:,})")
    g.add_argument("--stage", choices=STAGES,
                   help="train the lecture's first network instead (one hidden layer of 200 "
                        "tanh units, embedding 10) at this stage of its repair: original "
                        "(first loss ~27), fix-softmax (W2 x0.01, b2 x0), fix-tanh (W1 x0.2, "
                        "b1 x0.01), kaiming (W1 x(5/3)/sqrt(30)), batchnorm; the stage sets "
                        "the network and init, so --gain, --batchnorm, --depth and the like "
                        "do not apply")
    g.add_argument("--batchnorm", action=argparse.BooleanOptionalAction,
                   help="BatchNorm1d after every Linear (default on)")
    g.add_argument("--activation", choices=("tanh", "linear"),
                   help="block nonlinearity; linear drops the Tanh layers (default tanh)")
    g.add_argument("--gain", help="init gain of hidden Linear weights, e.g. 5/3 (default 5/3)")
    g.add_argument("--fan-in", dest="fan_in", action=argparse.BooleanOptionalAction,
                   help="divide initial weights by sqrt(fan_in) (default on)")
    g.add_argument("--bias", action=argparse.BooleanOptionalAction,
                   help="Linear biases (default: on without BatchNorm, off with it)")
    g.add_argument("--last-layer-scale", type=positive_float("--last-layer-scale"),
                   help=f"scale of the output layer at init (default {d.last_layer_scale})")
    g.add_argument("--init", choices=("default", "zeros"),
                   help="default: the lecture's init; zeros: every weight and bias 0 "
                        "(the lecture's exercise 1)")
    g.add_argument("--sweep", action="append", metavar="KEY=V1,V2",
                   help="train one run per value side by side; repeat for the product "
                        "(e.g. --sweep gain=1,5/3 --sweep batchnorm=on,off); keys: gain, "
                        "batchnorm, fan_in, bias, last_layer_scale, lr, init, stage "
                        "(stage=original,fix-softmax,fix-tanh,kaiming,batchnorm ends on the "
                        "lecture's loss log); at most 16 runs")
    g.add_argument("--lr", type=positive_float("--lr"), help=f"learning rate (default {d.lr})")
    g.add_argument("--lr-decay-step", type=_count(0),
                   help=f"the step from which the lr is divided by --lr / --lr-after "
                        f"(default {d.lr_decay_step:,})")
    g.add_argument("--lr-after", type=positive_float("--lr-after"),
                   help="learning rate from the decay step on (default: a tenth of --lr, "
                        "the lecture's 0.1 -> 0.01); a live change (] / [) is kept, scaled")
    g.add_argument("--batch-size", type=_count(1), help=f"batch size (default {d.batch_size})")
    g.add_argument("--seed", type=_count(0), help=f"torch seed (default {d.seed})")
    g.add_argument("--split-seed", type=_count(0), help=f"shuffle seed (default {d.split_seed})")
    g.add_argument("--stats-every", type=_count(1),
                   help=f"full diagnostics every K steps (default {d.stats_every})")
    g.add_argument("--n-embd", type=_count(1), help=f"embedding width (default {d.n_embd})")
    g.add_argument("--n-hidden", type=_count(1), help=f"hidden width (default {d.n_hidden})")
    g.add_argument("--depth", type=_count(1), help=f"hidden blocks (default {d.depth})")
    g.add_argument("--block-size", type=_count(1), help=f"context length (default {d.block_size})")
    h = parser.add_argument_group("machine")
    h.add_argument("--threads", type=_count(1),
                   help="intra-op threads (default: chosen by model size)")
    h.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    h.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help="auto (default): the fast engine at once while the compiled one "
                        "compiles in the background, then compiled (fast where it cannot "
                        "compile); exact: autograd in the lecture's op order, reproduces "
                        "its figures bit for bit; fast: hand-written forward/backward, "
                        "equal to exact to ~1e-6 but not bit for bit; compiled: the fast "
                        "step as torch.compile'd graphs, compiled before the first step "
                        "(~30 s cold, seconds once inductor's disk cache has it)")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The defaults (or `base`), overridden by every option the user gave."""
    changes = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k, None) is not None}
    return (base or TrainConfig()).with_changes(**changes)


def config_for(args: argparse.Namespace) -> TrainConfig:
    """The run's config: a resumed checkpoint's (read torch-free) or the defaults,
    overridden by every option the user gave."""
    base = None
    if getattr(args, "resume", None):
        base = TrainConfig.from_dict(read_header(args.resume)["config"])
    return config_from_args(args, base)


def sweep_for(args: argparse.Namespace, config: TrainConfig) -> tuple[SweepRun, ...]:
    """The runs of the --sweep options over `config` (none without them);
    InputError, one line, for a bad one."""
    runs = parse_sweep(getattr(args, "sweep", None) or (), config)
    given = [k for k in STAGE_FIXED if getattr(args, k, None) is not None]
    if given and any(run.config.stage is not None for run in runs):
        raise InputError(f"--{given[0].replace('_', '-')}: does not apply to the lecture's first "
                         "network (each --sweep stage= sets its network and init)")
    return runs


def check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch  # only for a CUDA device: the app's UI process stays torch-free on cpu

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here")
        return device
    raise InputError(f"--device: {device!r} is not cpu or cuda")
