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

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    return 0
