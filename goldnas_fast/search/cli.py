"""``goldnas-fast search``: GOLD-NAS, DARTS, random search or regularized evolution, with checkpoints."""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from goldnas_fast.errors import UserError

ALGOS = ("goldnas", "darts", "random", "evolution")
SPACES = ("nb201", "goldnas")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="nb201", help=f"search space: {', '.join(SPACES)} (default nb201)")
    p.add_argument("--algo", default="goldnas", help=f"algorithm: {', '.join(ALGOS)} (default goldnas)")
    p.add_argument("--data", default=None,
                   help="CIFAR-10: official python-batches folder, .npz file or folder of .npz shards "
                        "(default: the small real sample embedded in the package)")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs (GOLD-NAS stops earlier when its stop rule fires; default: 100, "
                        "or 30 on the embedded sample; DARTS: 50)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on nb201, 96 on goldnas")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default runs/search-SPACE-ALGO-sSEED-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (starts it if --out holds no run yet)")
    net = p.add_argument_group("supernet")
    net.add_argument("--C", type=int, default=None, help="initial channels (nb201 default 16, goldnas 36)")
    net.add_argument("--N", type=int, default=None, help="nb201: cells per stage (default 5; 2 on the embedded sample)")
    net.add_argument("--layers", type=int, default=14, help="goldnas space: number of cells (default 14)")
    net.add_argument("--ops", default=None, help="goldnas space: comma-separated operator set "
                                                 "(default skip_connect,sep_conv_3x3)")
    net.add_argument("--backend", default="fused", choices=["fused", "reference"])
    net.add_argument("--lean", action="store_true", help="recompute operators in backward (memory-lean)")
    gold = p.add_argument_group("GOLD-NAS (defaults of the documented implementation)")
    gold.add_argument("--lambda0", type=float, default=None,
                      help="lambda increment (default 1e-5; 1e-3 on the embedded sample, whose epochs are short)")
    gold.add_argument("--c0", type=float, default=2.0)
    gold.add_argument("--n0", type=int, default=4)
    gold.add_argument("--xi-min", type=float, default=0.01)
    gold.add_argument("--xi-max", type=float, default=0.05)
    gold.add_argument("--mu", type=float, default=0.0)
    gold.add_argument("--flops-min", type=float, default=None,
                      help="stop below this many MFLOPs (goldnas space default 240; nb201: none)")
    gold.add_argument("--resource", default="log", choices=["log", "flops"])
    gold.add_argument("--lr-weights", type=float, default=None, help="weights lr (GOLD-NAS 0.01, DARTS 0.025)")
    gold.add_argument("--lr-alpha", type=float, default=1.0)
    mt = p.add_argument_group("random / evolution (table queries)")
    mt.add_argument("--evaluations", type=int, default=100, help="architectures evaluated (default 100)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel under torchrun (torch.distributed, DDP; NCCL on GPU, gloo on CPU)")


def default_out(args: argparse.Namespace) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"search-{args.space}-{args.algo}-s{args.seed}-{stamp}"


def run(args: argparse.Namespace) -> int:
    if args.space not in SPACES:
        raise UserError(f"unknown --space {args.space!r}; expected one of {', '.join(SPACES)}")
    if args.algo not in ALGOS:
        raise UserError(f"unknown --algo {args.algo!r}; expected one of {', '.join(ALGOS)}")
    if args.resume and args.out is None:
        raise UserError("--resume needs --out naming the run to continue")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    for name in ("epochs", "batch_size", "max_train", "evaluations", "C", "N", "layers", "n0"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    from goldnas_fast.search.runner import run_search

    return run_search(args)
