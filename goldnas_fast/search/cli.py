"""``goldnas-fast search``: GOLD-NAS, DARTS, random search or regularized evolution, with checkpoints.

Every option defaults to unset; the defaults live in the algorithms' config dataclasses
(:mod:`goldnas_fast.search.config` and the algorithm modules), which the help texts quote.
"""
from __future__ import annotations

import argparse

from goldnas_fast.errors import UserError
from goldnas_fast.search.registry import ALGORITHMS, DEFAULT_ALGORITHM

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from goldnas_fast.search.config import SAMPLE_EPOCHS, SearchConfig, SupernetConfig
    from goldnas_fast.search.controller import GoldNasConfig
    from goldnas_fast.search.darts import DartsConfig, DartsSearchConfig
    from goldnas_fast.search.multitrial import MultiTrialConfig
    from goldnas_fast.search.onelevel import SAMPLE_LAMBDA0, OneLevelConfig
    from goldnas_fast.spaces import SPACES, space_class
    from goldnas_fast.spaces.goldnas.adapter import FLOPS_MIN
    from goldnas_fast.spaces.goldnas.ops import DEFAULT_OPS
    from goldnas_fast.spaces.nb201.adapter import SAMPLE_N, NB201Space

    gold, one = GoldNasConfig(), OneLevelConfig()
    def per_space(key: str) -> str:
        return ", ".join(f"{space_class(name).supernet_defaults.get(key)} on {name}" for name in SPACES)

    p.add_argument("--space", help=f"search space: {', '.join(SPACES)} (default {SearchConfig.space})")
    p.add_argument("--algo", help=f"algorithm: {', '.join(ALGORITHMS)} (default {DEFAULT_ALGORITHM})")
    p.add_argument("--data", help="CIFAR-10: official python-batches folder, .npz file or folder of .npz shards "
                                  "(default: the small real sample embedded in the package)")
    p.add_argument("--max-train", type=int, help="use only the first N training images")
    p.add_argument("--epochs", type=int,
                   help=f"maximum epochs (GOLD-NAS stops earlier when its stop rule fires; default: 100, or "
                        f"{SAMPLE_EPOCHS} on the embedded sample; DARTS: {DartsSearchConfig.default_epochs})")
    p.add_argument("--batch-size", type=int,
                   help=f"global batch size (default {per_space('batch_size')})")
    p.add_argument("--device", help=f"cpu or cuda[:i] (default {SearchConfig.device})")
    p.add_argument("--seed", type=int,
                   help=f"run seed: weights, data order, augmentation (default {SearchConfig.seed})")
    p.add_argument("--out", help="run directory (default runs/search-SPACE-ALGO-sSEED-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (starts it if --out holds no run yet)")
    net = p.add_argument_group("supernet")
    net.add_argument("--C", type=int,
                     help=f"initial channels of the supernet (default {per_space('C')})")
    net.add_argument("--N", type=int,
                     help=f"nb201: cells per stage (default {NB201Space.supernet_defaults['N']}; "
                          f"{SAMPLE_N} on the embedded sample)")
    net.add_argument("--layers", type=int, help=f"goldnas space: number of cells (default {SupernetConfig.layers})")
    net.add_argument("--ops", help=f"goldnas space: comma-separated operator set (default {','.join(DEFAULT_OPS)})")
    net.add_argument("--backend", choices=["fused", "reference"],
                     help=f"cell backend (default {SupernetConfig.backend})")
    net.add_argument("--lean", action="store_true", default=None,
                     help="recompute operators in backward (memory-lean)")
    net.add_argument("--precision", metavar="fp32|tf32|bf16",
                     help=f"default {SupernetConfig.precision} (a faster default needs searches of the same quality, "
                          "measured on a GPU); tf32 (TF32 matmuls and cuDNN convolutions) or bf16 (autocast; float32 "
                          "weights, gates and optimizer states); part of the run's configuration")
    net.add_argument("--cuda-graphs", action="store_true", default=None,
                     help="replay each training step from a captured CUDA graph, re-captured after each pruning "
                          "event and learning-rate change (--device cuda; default off until measured)")
    g = p.add_argument_group("GOLD-NAS (defaults of the documented implementation)")
    g.add_argument("--lambda0", type=float,
                   help=f"lambda increment (default {gold.lambda0:g}; {SAMPLE_LAMBDA0:g} on the embedded sample, "
                        "whose epochs are short)")
    g.add_argument("--c0", type=float, help=f"factor of the lambda schedule, > 1 (default {gold.c0:g})")
    g.add_argument("--n0", type=int,
                   help=f"pruning rounds per epoch; pruning fewer grows lambda (default {gold.n0})")
    g.add_argument("--xi-min", type=float,
                   help=f"prune every pair whose normalized gate is at most this (default {gold.xi_min:g})")
    g.add_argument("--xi-max", type=float,
                   help=f"prune the weakest pair if its normalized gate is at most this (default {gold.xi_max:g})")
    g.add_argument("--mu", type=float,
                   help=f"weight of a pair's FLOPs (M) in its resource cost 1 + mu * FLOPs (default {gold.mu:g})")
    g.add_argument("--flops-min", type=float,
                   help=f"stop below this many MFLOPs (goldnas space default {FLOPS_MIN:g}; nb201: none)")
    g.add_argument("--resource", choices=["log", "flops"], help=f"resource term (default {one.resource})")
    g.add_argument("--lr-weights", type=float,
                   help=f"weights lr (GOLD-NAS {one.lr_weights:g}, DARTS {DartsConfig.lr_max:g})")
    g.add_argument("--lr-alpha", type=float, help=f"learning rate of the gate logits (default {one.lr_alpha:g})")
    mt = p.add_argument_group("random / evolution (table queries)")
    mt.add_argument("--evaluations", type=int,
                    help=f"architectures evaluated (default {MultiTrialConfig.evaluations})")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar and no per-epoch lines (without a terminal on stderr there is no bar "
                        "anyway, only one line per epoch)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel under torchrun (torch.distributed, DDP; NCCL on GPU, gloo on CPU)")


def run(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise UserError("--resume needs --out naming the run to continue")
    from goldnas_fast.search.runner import run_search

    return run_search(args)
