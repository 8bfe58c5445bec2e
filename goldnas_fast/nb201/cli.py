"""``goldnas-fast nb201``: print the NAS-Bench-201 table entry of an architecture (or the best one).

Examples::

    goldnas-fast nb201 1835
    goldnas-fast nb201 '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
    goldnas-fast nb201 --best cifar10-test-200 --json
"""
from __future__ import annotations

import argparse
import json
import math

from goldnas_fast.errors import UserError

__all__ = ["add_arguments", "run", "LEGEND"]

LEGEND = """\
legend (the table's column names; docs/method/nasbench201.md explains them):
  c10, c100, in16      CIFAR-10, CIFAR-100, ImageNet16-120; accuracies are top-1, in %
  _200, _12            after the 200-epoch schedule (mean over the benchmark's seeds) or the
                       12-epoch one (low fidelity: the best CIFAR-10 test accuracy is 89.16)
  c10_test             trained on all 50k training images, tested on the 10k test images: the
                       "CIFAR-10 test accuracy" that papers report
  c10_valid            trained on 25k training images, evaluated on the other 25k;
                       c10_trainsplit_test: that same model on the 10k test images
  c100/in16 valid, test
                       the two halves of CIFAR-100's test set, of ImageNet16-120's valid set
  _nats                from the NATS-Bench topology search space (the same space and training,
                       another set of seeds); the only source of c100 and in16 at 200 epochs
  params_m, flops_m    counted by goldnas_fast: millions of parameters and of multiply-accumulates
                       (10 classes, 32x32 input); params_m_c10 = params_m_table: the table's own
                       parameter count (differs for 204 architectures)
  unique_str           isomorphism class: architectures with equal strings compute the same function
  naswot_v1_score      NASWOT training-free score (NaN for 341 architectures)"""
"""What each column (family) of ``goldnas-fast nb201`` means, printed under the table and in ``--help``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keeps the legend's layout
    parser.epilog = LEGEND
    parser.add_argument("arch", nargs="?", help="official index (0..15624) or arch string |op~0|+|op~0|op~1|+|...|")
    parser.add_argument("--best", metavar="METRIC", help="show the architecture with the highest METRIC instead "
                        "(e.g. cifar10-test-200, cifar10-valid-12)")
    parser.add_argument("--isomorphic", action="store_true", help="also list the isomorphic indices")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from goldnas_fast.nb201.benchmark import Benchmark

    if (args.arch is None) == (args.best is None):
        raise UserError("give exactly one of ARCH or --best METRIC")
    bench = Benchmark()
    try:
        if args.best is not None:
            arch: int | str = bench.best(args.best)[0]
        else:
            arch = int(args.arch) if args.arch.lstrip("-").isdigit() else args.arch
        entry = bench.query(arch)
        if args.isomorphic:
            entry["isomorphic"] = bench.isomorphic(arch)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        # NaN (missing NASWOT score) is not valid JSON: write null
        print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in entry.items()}))
    else:
        width = max(map(len, entry))
        for key, value in entry.items():
            print(f"{key:<{width}}  {value}")
        print()
        print(LEGEND)
    return 0
