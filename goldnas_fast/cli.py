"""The ``goldnas-fast`` command line: ``search``, ``train`` and ``nb201`` subcommands.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`goldnas_fast.errors.UserError`) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from goldnas_fast.errors import UserError

SUBCOMMANDS = {
    "search": ("goldnas_fast.search.cli", "run a GOLD-NAS, DARTS, random or evolution search"),
    "train": ("goldnas_fast.train.cli", "train an architecture with a documented protocol"),
    "nb201": ("goldnas_fast.nb201.cli", "print the NAS-Bench-201 table entry of an architecture"),
    "experiment": ("goldnas_fast.experiment.cli", "run the NAS-Bench-201 study of RESULTS.md and write its tables"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goldnas-fast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as exc:
        print(f"goldnas-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"goldnas-fast {args.command}: interrupted; the last completed epoch's checkpoint is kept "
              "(resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # also the entry of ``torchrun -m goldnas_fast.cli``
    # Under torchrun, record() hands a failing rank's traceback to the launcher's error summary.
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
